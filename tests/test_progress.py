"""Progress on long work: a bar on a terminal, plain periodic lines in a log (no carriage-return noise)."""
from __future__ import annotations

import io
import logging

from slimnas.progress import Progress
from slimnas.search import SearchConfig, evolve, parse_constraint, supernet_costs

from .search_helpers import SmoothAccuracy, tiny_supernet


def test_plain_lines_when_not_a_terminal(caplog):
    stream = io.StringIO()  # not a terminal, like a run's log file
    with caplog.at_level(logging.INFO, logger="slimnas.progress"):
        bar = Progress(total=10, desc="search", unit="subnet", every_s=0.0, stream=stream)
        for _ in range(10):
            bar.update(1)
        bar.set_postfix(best="0.75")
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert stream.getvalue() == "", "no tqdm bar is drawn into a file"
    assert len(lines) == 11 and lines[0].startswith("search: 1/10 subnet (10%)")
    assert lines[-1].startswith("search: 10/10 subnet (100%)") and "best=0.75" in lines[-1]
    assert all("\r" not in line for line in lines)


def test_periodic_not_per_update(caplog):
    with caplog.at_level(logging.INFO, logger="slimnas.progress"):
        bar = Progress(total=1000, desc="train", unit="step", every_s=3600.0, stream=io.StringIO())
        for _ in range(1000):
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("train: 1000/1000 step (100%)"), "one closing line, not 1000"


def test_search_log_holds_no_bar_updates(caplog, capfd):
    net = tiny_supernet()
    budget = [parse_constraint("flops<=0.55x").resolve(net.flops(net.space.original()))]
    with caplog.at_level(logging.INFO, logger="slimnas.progress"):
        evolve(net.space, SmoothAccuracy(net.space), supernet_costs(net), budget,
               SearchConfig(population=8, generations=2, seed=0), objective="flops", progress=True)
    err = capfd.readouterr().err
    assert "\r" not in err and "subnet/s]" not in err, "stderr is not a terminal here: no tqdm redraws"
    assert any(r.getMessage().startswith("search: ") for r in caplog.records)
