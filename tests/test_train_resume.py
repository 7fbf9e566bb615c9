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


def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
    out = tmp_path / "run"
    args = cli(out)
    args[args.index("--epochs") + 1] = "1"
    subprocess.run(args, env=env(), cwd=ROOT, check=True, capture_output=True)
    other = args + ["--resume"]
    other[other.index("--lr") + 1] = "0.2"
    other[other.index("--batch-size") + 1] = "16"
    r = subprocess.run(other, env=env(), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "holds a run with other settings (train.batch_size 32 there, 16 here; train.lr 0.1 there, 0.2 here)" in r.stderr
    same = subprocess.run(args + ["--resume", "--no-progress"], env=env(), cwd=ROOT, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr[-2000:]


def test_a_run_is_resumed_and_searched_from_another_directory(tmp_path):
    """Relative --weights and --out where the run started; an absolute --weights and other relative paths later."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    (start / "ck").mkdir(parents=True)
    elsewhere.mkdir()
    torch.manual_seed(0)
    from tests.nets import TinyNet

    torch.save(TinyNet(10).state_dict(), start / "ck" / "x.pth")
    first = cli("run", "--weights", "ck/x.pth")
    first[first.index("--epochs") + 1] = "1"
    subprocess.run(first, env=env(), cwd=start, check=True, capture_output=True)
    again = [a if a != "run" else "../start/run" for a in first]
    again[again.index("ck/x.pth")] = str(start / "ck" / "x.pth")
    r = subprocess.run(again + ["--resume"], env=env(), cwd=elsewhere, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "slimnas", "search", "../start/run", "--constraint", "flops<=0.9x",
                        "--population", "4", "--generations", "1", "--calib-images", "16", "--val-images", "16",
                        "--out", "s", "--no-progress"], env=env(), cwd=elsewhere, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (elsewhere / "s" / "subnet.json").is_file()
