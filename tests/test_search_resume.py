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
