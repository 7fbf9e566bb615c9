"""DistributedDataParallel with 2 CPU processes (gloo): the replicas' weights agree after training."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


@pytest.mark.parametrize("strategy", ["cafenet"])
def test_two_process_replicas_agree(tmp_path, strategy):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), strategy]
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
    fresh = slimnas.convert(TinyNet(10), 16).state_dict()
    moved = sum(not torch.allclose(fresh[k].float(), a[k].float()) for k in a if a[k].is_floating_point())
    assert moved > 5, "training must have changed the weights"
