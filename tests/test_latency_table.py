"""Append-only logs (the latency table's ``entries.csv``, the search's ``fitness.jsonl``): readers never write,
a torn last line is ignored by readers and repaired by the next append."""
from __future__ import annotations

import os
import stat

import pytest
import torch

import slimnas
from slimnas.data import DataConfig, load_data
from slimnas.latency import LatencyTable
from slimnas.latency.table import COLUMNS, ENTRIES
from slimnas.pipeline import FitnessConfig
from slimnas.pipeline.fitness import SupernetFitness
from slimnas.train import make_strategy
from tests.conftest import calibrate
from tests.nets import TinyNet

FINGERPRINT = {"model": "tiny", "input_shape": [3, 16, 16], "space_hash": "x", "cpu_model": "c", "cores": 2}


def _row(i: int) -> dict:
    return {"kind": "unit", "signature": f"conv-k1x1-{i}", "cin": 8, "cout": 8 + i, "median_ms": 0.5 + i,
            "p10_ms": 0.4, "p90_ms": 0.6, "n": 30, "inner": 1, "spread_pct": 1.0, "source": "measured",
            "probe_ms": 1.0, "time": 1.0 + i}


def _snapshot(path):
    st = path.stat()
    return path.read_bytes(), st.st_size, st.st_mtime_ns


def _table(tmp_path, rows: int = 3) -> LatencyTable:
    table = LatencyTable.create_or_resume(tmp_path / "t", FINGERPRINT)
    for i in range(rows):
        table.append(_row(i))
    return table


def test_reading_a_read_only_table_with_a_torn_line_writes_nothing(tmp_path):
    table = _table(tmp_path)
    entries = table.path / ENTRIES
    with open(entries, "a") as f:
        f.write("unit,conv-k1x1-9,8,1")  # a line a kill cut short
    before = _snapshot(entries)
    for p in (entries, table.path / "fingerprint.json"):
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    table.path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        loaded = LatencyTable.load(table.path)  # a shipped, read-only table (root ignores the bits: bytes tell)
        assert len(loaded.rows) == 3 and list(loaded.rows["signature"]) == [f"conv-k1x1-{i}" for i in range(3)]
        assert _snapshot(entries) == before, "the reader changed the file it read"
        if os.geteuid() != 0:
            with pytest.raises(PermissionError):
                open(entries, "a")
    finally:
        table.path.chmod(0o755)
        entries.chmod(0o644)


def test_a_reader_does_not_cut_a_line_being_appended(tmp_path):
    table = _table(tmp_path)
    entries = table.path / ENTRIES
    line = ",".join(str(_row(7)[c]) for c in COLUMNS) + "\n"
    with open(entries, "a") as writer:  # another process in the middle of its append
        writer.write(line[:20])
        writer.flush()
        assert len(LatencyTable.load(table.path).rows) == 3  # the half line is not a row (yet)
        writer.write(line[20:])
    rows = LatencyTable.load(table.path).rows
    assert len(rows) == 4 and rows["signature"].iloc[-1] == "conv-k1x1-7" and float(rows["median_ms"].iloc[-1]) == 7.5


def test_the_next_append_repairs_a_torn_line(tmp_path):
    table = _table(tmp_path)
    entries = table.path / ENTRIES
    with open(entries, "a") as f:
        f.write("unit,conv-k1x1-9,8,1")
    resumed = LatencyTable.create_or_resume(table.path, FINGERPRINT)
    resumed.append(_row(5))
    text = entries.read_text()
    assert "conv-k1x1-9" not in text and text.endswith("\n")
    rows = LatencyTable.load(table.path).rows
    assert list(rows["signature"]) == [f"conv-k1x1-{i}" for i in (0, 1, 2, 5)] and rows["cout"].astype(int).tolist()[-1] == 13
    assert len(resumed.rows) == 4


def test_a_torn_header_is_written_again(tmp_path):
    table = LatencyTable.create_or_resume(tmp_path / "t", FINGERPRINT)
    (table.path / ENTRIES).write_text("kind,signa")  # killed while writing the very first line
    assert len(LatencyTable.load(table.path).rows) == 0
    table = LatencyTable.create_or_resume(table.path, FINGERPRINT)
    table.append(_row(0))
    rows = LatencyTable.load(table.path).rows
    assert len(rows) == 1 and rows["signature"].iloc[0] == "conv-k1x1-0"


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits", image_size=16, train_subset=256, val_subset=64))


def test_fitness_log_reader_keeps_a_torn_line_and_the_next_score_repairs_it(digits, tmp_path):
    torch.manual_seed(0)
    net = slimnas.convert(calibrate(TinyNet(10), (3, 16, 16)), 16, ratios=(0.5, 1.0))
    strategy = make_strategy("cafenet", net, k=1, free_ratio=0.3)
    path = tmp_path / "fitness.jsonl"
    config = FitnessConfig(calib_images=32, val_images=32)
    first = SupernetFitness(net, strategy, digits, config, path)
    acc = first(net.space.min())
    with open(path, "a") as f:
        f.write('{"hash": "cut-by-a-ki')
    before = _snapshot(path)
    again = SupernetFitness(net, strategy, digits, config, path)
    assert _snapshot(path) == before, "reading the fitness log changed it"
    assert list(again.records) == [net.space.min().hash] and again(net.space.min()) == acc
    again(net.space.max())  # a new score: appended after the torn line is cut off
    text = path.read_text()
    assert "cut-by-a-ki" not in text and text.endswith("\n") and len(text.splitlines()) == 2
    assert set(SupernetFitness(net, strategy, digits, config, path).records) == {net.space.min().hash, net.space.max().hash}


def test_append_line_cuts_a_torn_tail_longer_than_its_read_block(tmp_path):
    from slimnas.fileio import append_line, read_complete_lines

    log = tmp_path / "log.txt"
    log.write_text("head\nfirst\n" + "x" * 150_000)  # a torn line spanning several 64 KiB blocks
    assert read_complete_lines(log) == "head\nfirst\n"
    append_line(log, "second\n", header="head\n")
    assert log.read_text() == "head\nfirst\nsecond\n"
    log.write_text("y" * 70_000)  # not one whole line: the header is written again
    append_line(log, "second\n", header="head\n")
    assert log.read_text() == "head\nsecond\n"
