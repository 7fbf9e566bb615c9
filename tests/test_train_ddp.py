"""DistributedDataParallel with 2 CPU processes (gloo): the replicas' weights agree after training."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimnas.train.distributed import state_digest
from tests.conftest import ROOT


@pytest.mark.parametrize("strategy,space", [("cafenet", ""), ("sandwich", "depth")])
def test_two_process_replicas_agree(tmp_path, strategy, space):
    """``depth``: elastic depth and kernels, whose dropped blocks leave parameters without gradients in some steps."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), strategy, *([space] if space else [])]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    start = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert start["step"] == 4
    moved = 0
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), f"replicas disagree on {k}"
        assert torch.equal(start["model"][k], a[k])
    from tests.nets import TinyNet
    import slimnas
    fresh = slimnas.convert(TinyNet(10), 16, **({"depth": True, "kernel_sizes": (3, 5)} if space else {})).state_dict()
    moved = sum(not torch.allclose(fresh[k].float(), a[k].float()) for k in a if a[k].is_floating_point())
    assert moved > 5, "training must have changed the weights"


def torchrun() -> str:
    exe = Path(sys.executable).with_name("torchrun")
    found = str(exe) if exe.is_file() else shutil.which("torchrun")
    if not found or not torch.distributed.is_available():
        pytest.skip("torchrun (torch.distributed) is not available")
    return found


def test_torchrun_cli_replicas_agree_and_match_the_checkpoint(tmp_path):
    """The real CLI under torchrun: 2 CPU processes (gloo), BS-NAS shrinking every step, FLOPs bins. The command
    destroys the process group it created before returning (tests/cli_under_torchrun.py exits 3 otherwise)."""
    out = tmp_path / "run"
    cmd = [torchrun(), "--standalone", "--nproc_per_node", "2", str(ROOT / "tests" / "cli_under_torchrun.py"),
           "train", "tests.nets:tiny_net",
           "--input-size", "16", "--data", "digits", "--out", str(out), "--epochs", "2", "--steps-per-epoch", "2",
           "--batch-size", "16", "--strategy", "bsnas", "--max-ratio", "1.5", "--bins", "flops:3",
           "--opt", "n_random=1", "--opt", "shrink_every=1", "--opt", "min_samples=2", "--opt", "confidence=0",
           "--opt", "score=loss",  # the residual score removed nothing in these 4 steps once grouped convs were on
           "--eval-images", "0", "--no-progress", "--device", "cpu", "--lr", "0.1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("trained 4 steps") == 1, "only rank 0 reports"
    rows = list(csv.DictReader(open(out / "replicas.csv")))
    assert [(r["epoch"], r["rank"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    assert rows[0]["digest"] == rows[1]["digest"] and rows[2]["digest"] == rows[3]["digest"]
    assert rows[0]["digest"] != rows[2]["digest"], "the second epoch must have changed the weights"
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4 and state_digest(ck["model"], ck["strategy"]) == rows[2]["digest"], \
        "the saved checkpoint must be what every rank holds"
    shrunk = list(csv.DictReader(open(out / "shrink.csv")))
    assert shrunk, "shrinking ran (and, being in the digest, ran alike on both ranks)"
    assert (out / "bins.csv").is_file() and (out / "bins.png").is_file()
