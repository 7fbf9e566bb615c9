"""tools/train_base.py on the built-in digits: --help, kill -9 then --resume, the JSON it writes, a refused rerun."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
import torchvision

from tests.conftest import ROOT

TOOL = ROOT / "tools" / "train_base.py"


def run_tool(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return [sys.executable, str(TOOL), *args], dict(env=env, cwd=ROOT, **kw)


def test_help_has_examples():
    cmd, kw = run_tool("--help")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    assert res.returncode == 0 and "examples:" in res.stdout and "--resume" in res.stdout


def test_kill_9_then_resume_writes_checkpoint_and_recipe(tmp_path):
    out = tmp_path / "base"
    args = ("--out", str(out), "--data", "digits", "--epochs", "3", "--steps-per-epoch", "2", "--batch-size", "16",
            "--eval-images", "0", "--workers", "0", "--no-progress")
    cmd, kw = run_tool(*args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    ck_path = out.with_suffix(".run") / "checkpoint.pt"
    deadline = time.time() + 90
    while not ck_path.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 1 <= torch.load(ck_path, weights_only=True)["epoch"] < 3, "the run must be killed mid-way"
    assert not out.with_suffix(".json").exists() and (out.with_suffix(".run") / "recipe.json").is_file()

    cmd, kw = run_tool(*args, "--resume")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["epoch"] for r in result["log"]] == [1, 2, 3], "the log covers the epochs before the kill too"
    assert [r["step"] for r in result["log"]] == [2, 4, 6] and result["steps_done"] == 6
    assert 0.0 <= result["test_top1"] <= 1.0 and result["test_images"] > 0
    assert result["recipe"]["lr"] == 0.05 and result["recipe"]["epochs"] == 3 and "digits" in result["data"]
    model = torchvision.models.mobilenet_v2(num_classes=10)
    model.load_state_dict(torch.load(out.with_suffix(".pth"), weights_only=True))

    before = out.with_suffix(".json").read_bytes(), (out.with_suffix(".run") / "recipe.json").read_bytes()
    cmd, kw = run_tool(*args)  # the same folder without --resume: refused, nothing rewritten
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert res.returncode == 2 and "--resume" in res.stderr and res.stderr.count("\n") == 1
    assert (out.with_suffix(".json").read_bytes(), (out.with_suffix(".run") / "recipe.json").read_bytes()) == before


def test_saved_checkpoint_has_bn_statistics_that_fit_its_weights(tmp_path):
    """The checkpoint's BatchNorm statistics are re-estimated on training images before saving: recalibrating
    again changes nothing, and the JSON scores it as saved (eval mode) beside the training's running statistics."""
    from slimnas.data import DataConfig, load_data
    from slimnas.evaluate import Evaluator, batch_norms, recalibrate_bn
    from tests.nets import TinyNet

    out = tmp_path / "base"
    cmd, kw = run_tool("--out", str(out), "--data", "digits", "--model", "tests.nets:tiny_net", "--epochs", "1",
                       "--steps-per-epoch", "3", "--batch-size", "16", "--eval-images", "40", "--bn-images", "96",
                       "--workers", "0", "--no-progress")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert "val_top1_bn_recalibrated" in result["log"][0] and "val_top1_model" not in result["log"][0]
    assert result["bn_images"] == 96 and 0.0 <= result["test_top1_running_stats"] <= 1.0
    assert 0.0 <= result["val_top1"] <= 1.0 and 0.0 <= result["test_top1"] <= 1.0
    model = TinyNet(10)
    model.load_state_dict(torch.load(out.with_suffix(".pth"), weights_only=True))
    saved = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in batch_norms(model)]
    data = load_data(DataConfig("digits", image_size=32))
    recalibrate_bn(model, Evaluator(data.calib, data.val, calib_images=96, val_images=1).calib)
    for (mean, var), bn in zip(saved, batch_norms(model)):
        assert torch.allclose(mean, bn.running_mean, atol=1e-5) and torch.allclose(var, bn.running_var, atol=1e-4)
