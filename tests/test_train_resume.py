"""kill -9 during training, then --resume: same steps, same learning rates, same final weights."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import ROOT


def cli(out, *extra):
    return [sys.executable, "-m", "slimnas", "train", "tests.nets:tiny_net", "--input-size", "16", "--out", str(out),
            "--epochs", "4", "--steps-per-epoch", "6", "--batch-size", "32", "--strategy", "sandwich",
            "--eval-images", "0", "--no-progress", "--lr", "0.1", *extra]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def rows(path):
    with open(path) as f:
        return [(int(r["step"]), float(r["lr"]), float(r["loss"])) for r in csv.DictReader(f)]


def test_kill_9_then_resume_matches_uninterrupted(tmp_path):
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    proc = subprocess.Popen(cli(killed), env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 50
    while not (killed / "checkpoint.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    ck = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert 1 <= ck["epoch"] < 4, "the run must be killed mid-way"

    subprocess.run(cli(killed, "--resume"), env=env(), cwd=ROOT, check=True, capture_output=True)
    subprocess.run(cli(ref), env=env(), cwd=ROOT, check=True, capture_output=True)

    a, b = rows(killed / "steps.csv"), rows(ref / "steps.csv")
    assert [r[0] for r in a] == list(range(1, 25)) == [r[0] for r in b]
    assert [r[1] for r in a] == [r[1] for r in b]  # the same schedule
    for (_, _, la), (_, _, lb) in zip(a, b):
        assert abs(la - lb) < 1e-4
    ka = torch.load(killed / "checkpoint.pt", weights_only=True)
    kb = torch.load(ref / "checkpoint.pt", weights_only=True)
    assert ka["step"] == kb["step"] == 24 and ka["epoch"] == 4
    for k, v in kb["model"].items():
        assert torch.allclose(ka["model"][k].float(), v.float(), atol=1e-5), k


def test_resume_refuses_changed_schedule_and_existing_run(tmp_path):
    out = tmp_path / "run"
    args = cli(out)
    args[args.index("--epochs") + 1] = "1"
    subprocess.run(args, env=env(), cwd=ROOT, check=True, capture_output=True)
    again = subprocess.run(args, env=env(), cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
