"""`slimnas slim` end to end on a tiny config through the real command line, then resume, search and export."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

import slimnas
from slimnas.pipeline import load_config, prepare
from tests.nets import TinyNet

from .conftest import ROOT
from .slim_helpers import slimnas as cli
from .slim_helpers import write_config

OUTPUTS = ["pareto.csv", "pareto.png", "subnet.json", "model.pt", "model.onnx", "report.md", "config.yaml", "verify.csv",
           "search_state.json"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny config run through the command line, killed with SIGKILL once the search has started, then rerun.

    The first invocation runs in the run's parent folder with relative paths, the rerun (and every later use of
    the run folder) from the repository with absolute ones: a run folder works from any directory."""
    root = tmp_path_factory.mktemp("slim")
    config = write_config(root)
    out = root / "run"
    args = ["slim", "--config", str(config), "--out", str(out), "--no-progress"]
    relative = ["slim", "--config", config.name, "--out", out.name, "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "slimnas", *relative], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 240
    while not (out / "fitness.jsonl").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    assert not (out / "subnet.json").exists(), "the run must be killed during the search"
    r = cli(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r


def test_killed_run_resumes_without_redoing_finished_stages(run):
    out, r = run
    for stage in ("base", "supernet"):
        assert f"[{stage}]" in r.stdout and "finished before, skipped" in r.stdout.split(f"[{stage}]")[1].splitlines()[0]
    assert "timing the original" not in r.stdout, "the reference measurement is reused"
    assert "[search] evolutionary search\n" in r.stdout


def test_slim_writes_every_output(run):
    out, r = run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert (out / "latency" / "table" / "calibration.json").is_file(), "no shipped table fits TinyNet: one is profiled"
    assert f"Outputs in {out}" in r.stdout.strip().splitlines()[-1]
    report = (out / "report.md").read_text()
    for fragment in ("latency budget", "quietest round's median (p10–p90 of all samples)",
                     "repeat error: even vs odd rounds", "predicted latency",
                     "FLOPs", "params", "validation top-1", "test top-1", "Wall time per stage", "cpu_model",
                     "slimnas slim --config", "to match the original's measured latency",
                     "model.engine: TensorRT is not installed (pip install slimnas[trt])",
                     "## The pick", "of the latency budget** by measurement", "Why: ", "(supernet estimate ± SE)",
                     "| budget share |"):
        assert fragment in report, fragment
    assert load_config(out / "config.yaml").constraints == ("latency<=0.8x",)


def test_chosen_subnet_meets_the_budget_by_measurement(run):
    out, _ = run
    v = pd.read_csv(out / "verify.csv")
    chosen = v[v["chosen"]]
    assert len(chosen) == 1
    row = chosen.iloc[0]
    assert row["ratio_to_original"] <= 0.8, "a relative budget holds for the paired ratio to the original"
    assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    same_run = v[(v["round"] == row["round"]) & (v["model"] == "original")].iloc[0]
    assert row["budget_ms"] == pytest.approx(0.8 * same_run["median_ms"])
    candidates = v[v["model"] == "candidate"]
    assert candidates["predicted_ms"].notna().all() and candidates["error_pct"].notna().all()
    subnet = slimnas.Subnet.from_json((out / "subnet.json").read_text())
    assert subnet.hash == row["hash"]


def test_model_pt_loads_into_the_original_class_and_onnx_agrees(run):
    out, _ = run
    raw = torch.load(out / "model.pt", weights_only=True)
    assert set(raw) == {"state_dict", "slimnas"}
    model = slimnas.load_exported(out / "model.pt")
    assert type(model) is TinyNet
    subnet = slimnas.Subnet.from_json((out / "subnet.json").read_text())
    assert raw["slimnas"]["subnet"] == subnet.to_dict()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = model(x).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert np.abs(got - want).max() <= 1e-4
    original = slimnas.convert(TinyNet(10), 32, ratios=(0.25, 0.5, 0.75, 1.0))
    assert sum(p.numel() for p in model.parameters()) < original.params(original.space.max())


def test_rerun_skips_finished_stages(run):
    out, _ = run
    before = json.loads((out / "stages.json").read_text())
    first_model = (out / "model.pt").read_bytes()
    for name in ("model.pt", "model.onnx", "exports.json", "report.md", "pareto.png"):
        (out / name).unlink()
    shutil.rmtree(out / "finetune")
    # saved as a search stopped by its time limit saves itself: the finished stage is not searched on (that would
    # change the history verification read), though the search alone would carry on
    state = json.loads((out / "search_state.json").read_text())
    history = (out / "search_history.csv").read_text()
    (out / "search_state.json").write_text(json.dumps({**state, "stopped": None, "generation": state["generation"] - 1}))
    r = cli("slim", "--config", str(out.parent / "tiny.yaml"), "--out", str(out), "--no-progress")
    (out / "search_state.json").write_text(json.dumps(state))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming after generation" not in r.stdout + r.stderr and (out / "search_history.csv").read_text() == history
    for stage in ("latency", "base", "supernet", "search", "verify"):
        assert f"[{stage}]" in r.stdout and "finished before, skipped" in r.stdout.split(f"[{stage}]")[1].splitlines()[0]
    assert "timing the original" not in r.stdout, "the reference measurement is reused"
    after = json.loads((out / "stages.json").read_text())
    for stage in ("base", "supernet", "search", "verify"):
        assert after[stage]["reused"] and after[stage]["wall_s"] == before[stage]["wall_s"]
    assert not after["finetune"]["reused"]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert (out / "model.pt").read_bytes() != b"" and len(first_model) > 0


def test_search_and_export_verbs_on_the_supernet_run(run, tmp_path):
    out, _ = run
    table = out / "latency" / "table"
    r = cli("search", str(out / "supernet"), "--table", str(table), "--constraint", "flops<=0.9x",
            "--population", "4", "--generations", "1", "--calib-images", "32", "--val-images", "32", "--rounds", "2",
            "--out", str(tmp_path / "s"), "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("pareto.csv", "pareto.png", "subnet.json", "search_state.json"):
        assert (tmp_path / "s" / name).is_file(), name
    from slimnas.cli import main

    assert main(["export", str(out / "supernet"), "--subnet", str(tmp_path / "s" / "subnet.json"), "--out",
                 str(tmp_path / "e")]) == 0
    model = slimnas.load_exported(tmp_path / "e" / "model.pt")
    assert type(model) is TinyNet and (tmp_path / "e" / "model.onnx").is_file()


def test_export_asked_for_tensorrt_without_it_is_one_line(run, tmp_path, capsys):
    import importlib.util

    from slimnas.cli import main

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    out, _ = run
    assert main(["export", str(out), "--out", str(tmp_path / "f"), "--tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install slimnas[trt]" in err


def test_a_trained_supernet_run_is_reused_with_its_model_data_and_space(run, tmp_path):
    out, _ = run
    config = load_config(out / "config.yaml", [{"supernet": {"run": str(out / "supernet")}, "model": {"name": "resnet18"},
                                               "constraints": ["latency<=0.9x"]}])
    plan = prepare(config, tmp_path / "reuse")
    assert not (tmp_path / "reuse").exists(), "prepare writes nothing"
    assert plan.config.model.name == "tests.nets:tiny_net" and plan.config.base is None
    assert plan.config.supernet.strategy == "cafenet" and plan.config.space.ratios == (0.25, 0.5, 0.75, 1.0)
    assert plan.run is not None and plan.net is plan.run[1]
    assert plan.reference["original"]["median_ms"] > plan.reference["smallest"]["median_ms"] > 0
    assert plan.budget[0].limit == pytest.approx(0.9 * plan.reference["original"]["median_ms"])
    shutil.rmtree(plan.measured_in, ignore_errors=True)


@pytest.mark.parametrize("verb", ["slim", "demo", "search", "export"])
def test_help_shows_examples(verb, capsys):
    from slimnas.cli import main

    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"slimnas {verb}" in text.split("examples:")[1]


def test_a_second_search_runs_under_the_corrected_budget_and_resumes_under_the_same(run):
    """verify.research: the search again, in research/, under the latency budget replaced by the corrected limit,
    sharing the first search's scores; a rerun with another correction resumes under the saved one."""
    from slimnas.pipeline.config import VerifyConfig
    from slimnas.pipeline.fitness import SupernetFitness
    from slimnas.pipeline.slim import RESEARCH, _search_again
    from slimnas.pipeline.verify import should_search_again
    from slimnas.train.run import load_run

    out, _ = run
    work = out.parent / "research_copy"
    shutil.copytree(out, work)
    for done in work.glob(f"{RESEARCH}*"):  # the run's own searches again (research/, research-2/ ...)
        shutil.rmtree(done)
    plan = prepare(load_config(work / "config.yaml"), work)
    history = pd.read_csv(work / "search_history.csv")
    first = history[history["feasible"].astype(bool)]
    limit = float(first["latency_ms"].median())  # tighter than the first search's budget
    _, net, strategy, data = load_run(work / "supernet", "cpu")
    fit = SupernetFitness(net, strategy, data, plan.config.fitness, work / "fitness.jsonl", seed=plan.config.seed)
    scored = len(fit.records)
    from slimnas.pipeline.device import open_predictor
    from slimnas.pipeline.prepare import anchor

    t = plan.targets[0]
    predictor, _ = anchor(open_predictor(t.table, net, t.backend), net, t.reference)
    again = _search_again(plan, net, strategy, data, predictor, fit, {"latency_ms": limit}, progress=False)
    assert json.loads((work / RESEARCH / "limits.json").read_text()) == {"latency_ms": limit}
    feasible = again.history[again.history["feasible"].astype(bool)]
    assert len(feasible) and (feasible["latency_ms"] <= limit + 1e-9).all()
    assert (again.history["latency_ms"] <= limit + 1e-9).mean() > (first["latency_ms"] <= limit).mean()
    assert len(fit.records) >= scored, "the first search's scores are shared, not lost"
    rerun = _search_again(plan, net, strategy, data, predictor, fit, {"latency_ms": limit * 0.9}, progress=False)
    assert rerun.evaluations == again.evaluations, "resumed (finished) under the saved limit, not searched afresh"
    # a second search again (verify.fill_search after verify.research) has a folder of its own and its own limit
    # (a looser limit than the first: a tighter one can fall below the smallest subnet, as the table is timed anew)
    second = _search_again(plan, net, strategy, data, predictor, fit, {"latency_ms": limit * 1.05}, progress=False, n=2)
    assert json.loads((work / f"{RESEARCH}-2" / "limits.json").read_text()) == {"latency_ms": limit * 1.05}
    assert (second.history[second.history["feasible"].astype(bool)]["latency_ms"] <= limit * 1.05 + 1e-9).all()
    cfg = VerifyConfig()
    assert should_search_again([1.14], 0, cfg) and should_search_again([0.9, None], 0, cfg)
    assert not should_search_again([1.02], 0, cfg) and not should_search_again([1.14], 1, cfg)
    assert not should_search_again([None], 0, cfg) and not should_search_again([1.5], 0, VerifyConfig(research=0))


def test_a_verification_round_off_the_budgets_machine_state_is_timed_again(run, caplog):
    """verify.state_ms: a round whose original times off the machine state the budget is meant in waits and is timed
    again while verify.state_wait_s allows, and verify.csv and report.md say how far off each round was."""
    import logging
    from dataclasses import replace

    from slimnas.pipeline.fitness import SupernetFitness
    from slimnas.pipeline.report import _state_lines
    from slimnas.pipeline.verify import verify
    from slimnas.search.result import SearchResult
    from slimnas.train.run import load_run

    out, _ = run
    work = out.parent / "state_copy"
    shutil.copytree(out, work)
    plan = prepare(load_config(work / "config.yaml"), work)
    history = pd.read_csv(work / "search_history.csv")
    result = SearchResult(history, history.iloc[:0], len(history), 0.0, "generations")
    _, net, strategy, data = load_run(work / "supernet", "cpu")
    fit = SupernetFitness(net, strategy, data, plan.config.fitness, work / "fitness.jsonl", seed=plan.config.seed)
    first = pd.read_csv(out / "verify.csv")
    original_ms = float(first[first["model"] == "original"]["median_ms"].iloc[0])
    assert first["state_off_pct"].isna().all(), "no state given (the default): no gate, nothing recorded"

    def rounds(state_ms, tol):
        cfg = replace(plan.config.verify, rounds=1, state_ms=state_ms, state_tol=tol, state_wait_s=10.0, state_poll_s=0.2)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="slimnas"):
            table = verify(net, fit, result, plan.constraints, plan.targets, cfg, work).table
        return table[table["model"] == "original"], caplog.text

    # the machine "twice as slow" as the state given: off by about +100%, timed again until the wait is spent
    orig, text = rounds(original_ms / 2, 0.01)
    assert (orig["state_off_pct"] > 50).all() and "timing the round again in 0 s" in text
    assert "no time left to wait (verify.state_wait_s), taking it as it is" in text
    assert "round 1 " in _state_lines(orig)[0]
    # within the tolerance, or quieter than the state given: timed once
    for state_ms, tol in ((original_ms, 0.9), (2 * original_ms, 0.01)):
        orig, text = rounds(state_ms, tol)
        assert len(orig) == 1 and np.isfinite(orig["state_off_pct"]).all() and "timing the round again" not in text
