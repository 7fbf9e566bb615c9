"""The profiler on real onnxruntime sessions: grid, table on disk, resume after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from slimnas import SlimnasError
from slimnas.latency import LatencyTable, create_backend, profile
from slimnas.latency.grid import adaptive
from slimnas.latency.units import candidate_pairs, units_of

from .latency_helpers import FAST, MODEL_ARGS, tiny_supernet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    profile(tiny_supernet(), create_backend("onnxruntime"), out, "tiny", FAST, model_args=MODEL_ARGS)
    return out


def test_units_cover_every_searchable_conv():
    net = tiny_supernet()
    units = units_of(net)
    convs = [n for n, s in net.graph.layers.items() if s.kind in ("conv", "dwconv", "gconv", "linear")]
    assert [u.layer for u in units] == [c.name for c in net.graph.calls if c.name in convs]
    stem = units[0]
    assert stem.sig.bn and stem.sig.act == "relu" and stem.absorbed == ("stem.1", "stem.2")
    pairs = candidate_pairs(stem, net)
    group = net.graph.groups[stem.out_layout.segs[0].space]
    want = set(net.space[group.name].choices) if group.name in net.space else {group.width}
    assert {b for _, b in pairs} == want and {a for a, _ in pairs} == {3}
    searchable = [u for u in units if net.graph.groups[u.out_layout.segs[0].space].name in net.space]
    u = searchable[0]
    assert {b for _, b in candidate_pairs(u, net)} == set(net.space[net.graph.groups[u.out_layout.segs[0].space].name].choices)


def test_table_has_every_pair_marked_and_fingerprinted(table_dir):
    table = LatencyTable.load(table_dir)
    net = tiny_supernet()
    units = table.units()
    assert set(units["source"]) <= {"measured", "interpolated"}
    have = set(zip(units["signature"], units["cin"].astype(int), units["cout"].astype(int)))
    for u in units_of(net):
        assert {(u.sig.key, a, b) for a, b in candidate_pairs(u, net)} <= have
    m = table.units("measured")
    assert (m["n"].astype(int) >= 30).all() and (m["p10_ms"] <= m["median_ms"]).all() and (m["median_ms"] <= m["p90_ms"]).all()
    fp = table.fingerprint
    for key in ("cpu_model", "cores", "os", "backend", "backend_version", "threads", "dtype", "batch", "input_shape",
                "created", "model", "space_hash", "probe_ms"):
        assert key in fp, key
    assert len(table.of_kind("probe")) >= 1 and len(table.of_kind("model")) == 3
    per_entry = m.groupby(["signature", "cin", "cout"]).size()
    assert (per_entry == FAST.passes).all() and fp["entries_measured"] == len(per_entry)
    assert table.calibration()["n"] == 3
    assert not list(Path(table_dir).glob("*.pkl"))


def test_grid_interpolates_smooth_and_refines_steps():
    axes = [[8, 16, 24, 32, 40], [8, 16, 24, 32, 40]]
    smooth = lambda p: 1.0 + axes[0][p[0]] * axes[1][p[1]]  # noqa: E731  (bilinear: interpolation is exact)
    calls = []
    got = adaptive(axes, lambda p: (calls.append(p), smooth(p))[1])
    assert len(got) == 25 and any(s == "interpolated" for _, s in got.values())
    assert all(abs(v - smooth(p)) < 1e-9 for p, (v, _) in got.items())
    assert len(calls) == len(set(calls)) < 25
    best = adaptive(axes, smooth, value=lambda p: 0.5 * smooth(p))  # same decisions, values from another timing
    assert {p: s for p, (_, s) in best.items()} == {p: s for p, (_, s) in got.items()}
    assert all(abs(v - 0.5 * smooth(p)) < 1e-9 for p, (v, _) in best.items())
    step = lambda p: smooth(p) * (2.0 if axes[1][p[1]] == 32 else 1.0)  # noqa: E731  (a cliff at out width 32)
    got = adaptive(axes, step)
    assert all(got[(i, 3)][1] == "measured" for i in range(5))
    assert all(abs(v - step(p)) < 1e-9 for p, (v, s) in got.items() if s == "measured")


def test_truncated_last_line_is_dropped(table_dir, tmp_path):
    import shutil

    copy = tmp_path / "t"
    shutil.copytree(table_dir, copy)
    entries = copy / "entries.csv"
    n = len(pd.read_csv(entries))
    with open(entries, "a") as f:
        f.write("unit,conv-half-written,8,")
    assert len(LatencyTable.load(copy).rows) == n
    assert entries.read_text().endswith("conv-half-written,8,")  # a reader never writes (the appender cuts it off)


def test_resume_refuses_a_table_for_something_else(table_dir):
    net = tiny_supernet(size=20)
    with pytest.raises(SlimnasError, match="input_shape"):
        profile(net, create_backend("onnxruntime"), table_dir, "tiny", FAST)


SCRIPT = """
import sys
from pathlib import Path
from slimnas.latency import ProfileConfig, TimingConfig, create_backend, profile
from slimnas.latency.e2e import E2EConfig
from tests.latency_helpers import tiny_supernet, MODEL_ARGS
slow = ProfileConfig(timing=TimingConfig(warmup_ms=2.0, samples=30, min_sample_ms={ms}), calibration_subnets=2, e2e=E2EConfig(rounds=2, samples_per_round=5))
profile(tiny_supernet(), create_backend("onnxruntime"), Path(sys.argv[1]), "tiny", slow, model_args=MODEL_ARGS)
"""


def _run(out: Path, ms: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", SCRIPT.format(ms=ms), str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _measured_units(out: Path) -> pd.DataFrame:
    rows = LatencyTable.load(out).units("measured")
    return rows.set_index(["signature", "cin", "cout"]).sort_index()


def test_kill_9_then_rerun_does_not_measure_finished_entries_again(tmp_path):
    out = tmp_path / "table"
    proc = _run(out, ms=1.0)
    entries = out / "entries.csv"
    deadline = time.time() + 40
    while time.time() < deadline:
        if entries.is_file() and entries.read_text().count("\nunit,") >= 4:
            break
        if proc.poll() is not None:
            pytest.fail(f"profiler ended before it could be killed: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = _measured_units(out)
    assert len(before) >= 4
    assert not LatencyTable.load(out).fingerprint.get("entries_measured")  # it did not finish

    proc = _run(out, ms=0.02)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-800:]
    table = LatencyTable.load(out)
    after = _measured_units(out)
    passes = after.groupby(level=[0, 1, 2]).size()
    assert (passes == 2).all()  # every entry timed in exactly two passes: none again after the kill
    kept = after.reset_index().merge(before.reset_index(), how="inner")
    assert len(kept) == len(before)  # finished timings are the very same rows (same times, values)
    last = table.fingerprint["last_run"]
    assert last["measured"] == len(after) - len(before)
    assert last["reused"] >= len(before)


def test_public_verbs_keep_the_callers_thread_count(table_dir, tmp_path):
    """Exporting, profiling, timing on the torch backend and validating set thread counts of their own; the
    caller's (which trains and searches afterwards) must be what it was."""
    import torch

    from slimnas.export import export_onnx
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.e2e import export_subnets
    from slimnas.latency.probe import time_probe
    from slimnas.latency.validate import validate

    before = torch.get_num_threads()
    want = 3 if before != 3 else 2
    torch.set_num_threads(want)
    try:
        net = tiny_supernet()
        export_subnets(net, [net.space.max()], tmp_path / "onnx")
        assert torch.get_num_threads() == want, "export_subnets (onnx)"
        export_subnets(net, [net.space.min()], tmp_path / "pt", fmt="torch")
        assert torch.get_num_threads() == want, "export_subnets (torch)"
        backend = create_backend("torch", BackendConfig(threads=1))
        assert torch.get_num_threads() == want, "create_backend('torch')"
        time_probe(backend, TimingConfig(warmup_ms=1, samples=3, min_sample_ms=0.01))
        assert torch.get_num_threads() == want, "torch backend timing"
        profile(net, create_backend("onnxruntime"), tmp_path / "table", "tiny", FAST, model_args=MODEL_ARGS)
        assert torch.get_num_threads() == want, "profile"
        validate(table_dir, net, samples=2, rounds=1)
        assert torch.get_num_threads() == want, "validate"
        export_onnx(torch.nn.Conv2d(3, 4, 3).eval(), tmp_path / "conv.onnx", (3, 8, 8))
        assert torch.get_num_threads() == want, "export_onnx"
    finally:
        torch.set_num_threads(before)


def test_profile_and_validate_on_the_torch_backend(tmp_path, capsys):
    """`slimnas profile --backend torch` times units and whole subnets with PyTorch and finishes; `latency
    validate` checks the table on the same backend."""
    import json

    import torch

    from slimnas.cli import main

    threads = torch.get_num_threads()
    out = tmp_path / "torch_table"
    argv = ["profile", "tests.nets:tiny_net", "--num-classes", "10", "--input-size", "16", "--ratios", "0.5,1.0",
            "--backend", "torch", "--threads", "1", "--calibration-subnets", "3", "--passes", "1", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == threads  # the torch backend set 1 thread only while it timed
    table = LatencyTable.load(out)
    fp = table.fingerprint
    assert fp["backend"] == "torch" and fp["backend_version"] == torch.__version__ and fp["threads"] == 1
    assert len(table.of_kind("model")) == 3 and table.calibration()["n"] == 3
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.onnx"))
    v = tmp_path / "v"
    assert main(["latency", "validate", "--table", str(out), "--samples", "2", "--rounds", "2", "--out", str(v)]) == 0
    result = json.loads((v / "validate.json").read_text())
    assert result["metrics"]["n"] == 2 and result["device"]["backend"] == "torch"
    assert all(m > 0 for m in result["probe_rounds_ms"][0])


def test_onnx_backend_refuses_torch_files_in_one_line(tmp_path):
    """A backend given the wrong form of a whole network fails at once with one line, never hangs."""
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.e2e import export_subnets, time_onnx_files

    net = tiny_supernet()
    paths = export_subnets(net, [net.space.max()], tmp_path, fmt="torch")
    with pytest.raises(SlimnasError, match="ONNX") as err:
        time_onnx_files(paths, "onnxruntime", BackendConfig(), TimingConfig(warmup_ms=1, samples=3))
    assert len(str(err.value).splitlines()) == 1


def _raw(values_ms, rounds=None):
    """A worker's output for models whose quietest rounds (and pooled medians) are ``values_ms``."""
    models = [{"best_round_ms": v, "median_ms": v * 1.1, "p10_ms": v, "p90_ms": v * 1.3, "n": 10,
               "round_medians_ms": rounds or [v, v * 1.2], "spread_pct": 20.0, "half_diff_pct": 1.0,
               "best_half_diff_pct": 0.5} for v in values_ms]
    return {"models": models, "probe_ms": [0.1, 0.1], "backend": "test"}


def test_combine_processes_cancels_speed_and_outvotes_one_model_off():
    """A process that ran everything 1.5x slower moves no ratio; a process in which one model alone came out 30%
    slow is outvoted by the others; the spread across processes is that model's error."""
    from slimnas.latency.e2e import combine_processes

    same = combine_processes([_raw([1.0, 0.5]), _raw([1.5, 0.75]), _raw([1.0, 0.5])])
    b, m = (x["best_round_ms"] for x in same["models"])
    assert m / b == pytest.approx(0.5)
    assert same["models"][1]["between_pct"] == pytest.approx(0.0, abs=1e-9)
    assert len(same["processes"]) == 3 and same["models"][0]["n"] == 30 and len(same["probe_ms"]) == 6
    off = combine_processes([_raw([1.0, 0.5]), _raw([1.0, 0.65]), _raw([1.0, 0.5])])
    b, m = (x["best_round_ms"] for x in off["models"])
    assert m / b == pytest.approx(0.5, rel=0.02)  # the 0.65 outvoted, not averaged in (that would be 0.55)
    assert off["models"][1]["between_pct"] > 5.0
    assert off["models"][1]["process_best_round_ms"] == [0.5, 0.65, 0.5]


def test_timing_in_several_processes_returns_each(tmp_path):
    """Real worker processes: processes=2 runs two, combines them and keeps both outputs."""
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.e2e import E2EConfig, export_subnets, time_onnx_files

    net = tiny_supernet()
    paths = export_subnets(net, [net.space.max(), net.space.min()], tmp_path)
    res = time_onnx_files(paths, "onnxruntime", BackendConfig(), TimingConfig(warmup_ms=1, samples=3),
                          E2EConfig(rounds=2, samples_per_round=3, processes=2))
    assert len(res["processes"]) == 2 and len(res["models"]) == 2
    for i, m in enumerate(res["models"]):
        each = [r["models"][i]["best_round_ms"] for r in res["processes"]]
        assert m["process_best_round_ms"] == each and m["between_pct"] >= 0
        assert len(m["round_medians_ms"]) == 4 and m["n"] == sum(r["models"][i]["n"] for r in res["processes"])
    with pytest.raises(SlimnasError, match="processes"):
        E2EConfig(processes=0)
