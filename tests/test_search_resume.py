"""kill -9 during a search, then rerun: the same history and Pareto set as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from .conftest import ROOT
from .search_helpers import SmoothAccuracy
from .search_worker import CONFIG, mid_generation, problem, run


def worker(state, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.search_worker", str(state), *extra], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def saved(state):
    return json.loads(state.read_text()) if state.is_file() else {"generation": -1, "cache": []}


def test_kill_9_twice_then_rerun_matches_uninterrupted(tmp_path):
    net, _, _ = problem()
    reference = run(tmp_path / "reference.json", SmoothAccuracy(net.space))
    assert reference.stopped == "generations" and reference.evaluations > 3 * CONFIG.population

    state = tmp_path / "killed.json"
    # 1. killed from outside at whatever moment it has reached once generation 2 is saved
    proc = worker(state, "--sleep", "0.05")
    deadline = time.time() + 60
    while saved(state)["generation"] < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    first = saved(state)
    assert 2 <= first["generation"] < CONFIG.generations, "the search must be killed mid-way"

    # 2. resumed, then killed inside an accuracy call in the middle of a generation, with part of it scored
    proc = worker(state, "--kill-mid")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (out + err).decode()[-2000:]
    assert b"resuming after generation" in out
    second = saved(state)
    assert mid_generation(state) and second["generation"] < CONFIG.generations
    assert second["evaluations"] > first["evaluations"]

    # 3. rerun to completion (in this process): nothing already in the cache is scored again
    score = SmoothAccuracy(net.space)
    result = run(state, score)
    cached = {row["hash"] for row in second["cache"]}
    assert score.calls and not cached & set(score.calls)
    assert result.stopped == "generations" and result.evaluations == reference.evaluations
    assert result.history.equals(reference.history)
    assert result.pareto.equals(reference.pareto)
    assert result.best() == reference.best()


def test_slimnas_search_with_a_latency_budget_resumes_after_kill_9(tmp_path):
    """The relative latency budget is resolved against the original's timing of the first invocation on every
    rerun: re-timing it would move the limit and the saved search would be refused as one with other settings."""
    import torch

    import slimnas
    from slimnas.latency import BackendConfig, create_backend, profile
    from tests.latency_helpers import FAST
    from tests.nets import TinyNet

    ratios = (0.25, 0.5, 0.75, 1.0)
    table = tmp_path / "table"
    torch.manual_seed(0)
    profile(slimnas.convert(TinyNet(10), 32, ratios=ratios), create_backend("onnxruntime", BackendConfig()), table,
            model="tests.nets:tiny_net", config=FAST,
            model_args={"model": "tests.nets:tiny_net", "num_classes": 10, "ratios": list(ratios)})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "slimnas"]
    run = tmp_path / "run"
    subprocess.run(cmd + ["train", "tests.nets:tiny_net", "--input-size", "32", "--ratios", ",".join(map(str, ratios)),
                          "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--eval-images", "0",
                          "--no-progress", "--out", str(run)], env=env, cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "search"
    search = cmd + ["search", str(run), "--table", str(table), "--constraint", "latency<=0.9x", "--rounds", "2",
                    "--steady-pct", "60", "--population", "6", "--generations", "30", "--calib-images", "16",
                    "--val-images", "16", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(search, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out / "search_state.json").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, (stdout + stderr).decode()[-2000:]
    assert not (out / "pareto.csv").exists(), "the search must be killed mid-way"
    first = json.loads((out / "reference.json").read_text())["original"]["median_ms"]

    r = subprocess.run(search, env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "resuming after generation" in r.stdout and "timing the original" not in r.stdout
    assert "the original's timing of the first invocation is reused" in r.stdout
    assert json.loads((out / "reference.json").read_text())["original"]["median_ms"] == first
    for name in ("pareto.csv", "pareto.png", "subnet.json"):
        assert (out / name).is_file(), name
