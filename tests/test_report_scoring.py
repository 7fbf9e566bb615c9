"""report.md compares like with like: every model scored as exported (eval mode, its saved BatchNorm statistics),
with the original's recalibrated score and a warning where its statistics do not fit its weights; latency
statistics labelled so that a median below the pooled p10 reads correctly."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from slimnas.data import DataConfig, load_data
from slimnas.evaluate import batch_norms, recalibrate_bn
from slimnas.pipeline.config import FitnessConfig
from slimnas.pipeline.finetune import original_accuracy
from slimnas.pipeline.report import render
from tests.nets import TinyNet

FITNESS = FitnessConfig(calib_images=256, val_images=None, batch_size=64)


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits", image_size=16, augment=False))


@pytest.fixture(scope="module")
def trained(digits):
    """TinyNet trained for real on the digits (a few hundred steps), BN statistics recalibrated to fit."""
    torch.manual_seed(0)
    model = TinyNet(10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(digits.train, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(4):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    recalibrate_bn(model, [torch.stack([digits.calib[i][0] for i in range(j, j + 64)]) for j in range(0, 256, 64)])
    return model.eval()


def summary(original: dict, verify=None) -> dict:
    chosen = {"hash": "abc", "median_ms": 0.720, "p10_ms": 0.721, "p90_ms": 0.777, "spread_pct": 3.0, "repeat_pct": 1.0,
              "predicted_now_ms": 0.7, "error_pct": -2.8, "budget_ms": None, "ratio_to_original": 0.6, "speedup": 1.67,
              "flops": 1e6, "params": 1e5, "supernet_top1": 0.8, "val_top1": 0.85, "test_top1": 0.84, "val_images": 144,
              "test_images": 359, "finetune_steps": 100, "distilled": True}
    o = {"median_ms": 1.2, "p10_ms": 1.21, "p90_ms": 1.3, "spread_pct": 2.0, "repeat_pct": 1.0, "flops": 2e6,
         "params": 2e5, **original}
    return {"command": "slimnas slim", "out": "runs/x", "budget": ["latency <= 0.8x"], "original": o, "chosen": chosen,
            "verify": verify, "search": {"evaluations": 10, "wall_s": 1.0, "stopped": "generations", "generations": 2,
                                         "pareto": 3},
            "stages": {}, "table": "t", "predictor": {"a": 1.0, "b": 0.0, "error_pct": 2.0}, "device": {}, "files": [],
            "skipped": [], "deploy": None}


def test_wrong_bn_statistics_are_shown_both_ways_with_a_warning(digits, trained):
    broken = TinyNet(10)
    broken.load_state_dict(trained.state_dict())
    for bn in batch_norms(broken):
        bn.reset_running_stats()  # weights fine, statistics wrong: what a checkpoint saved mid-training can hold
    o = original_accuracy(broken, digits, FITNESS)
    assert o["val_top1_recalibrated"] > o["val_top1"] + 0.1, o
    assert o["test_top1_recalibrated"] > o["test_top1"] + 0.1, o
    assert o["calib_images"] == 256
    report = render(summary(o))
    assert "Warning: the checkpoint's BN statistics do not fit its weights" in report
    assert f"| validation top-1 as exported (eval mode, saved BN statistics; 144 images) | {o['val_top1']:.4f} |" in report
    assert f"| validation top-1 after BN recalibration (256 training images) | {o['val_top1_recalibrated']:.4f} |" in report
    assert f"| test top-1 after BN recalibration | {o['test_top1_recalibrated']:.4f} |" in report
    assert f"{(0.85 - o['val_top1_recalibrated']) * 100:+.1f} points against it" in report


def test_fitting_statistics_show_one_figure_and_no_warning(digits, trained):
    o = original_accuracy(trained, digits, FITNESS)
    assert abs(o["val_top1_recalibrated"] - o["val_top1"]) <= 0.01 and o["val_top1"] > 0.5, o
    report = render(summary(o))
    assert "Warning" not in report and "after BN recalibration (" not in report
    assert "every model is scored as it is deployed, in eval mode" in report


def test_a_median_below_the_pooled_p10_is_labelled_as_such():
    v = pd.DataFrame([{"round": 1, "model": "candidate", "hash": "abc", "chosen": True, "meets_budget": True,
                       "accuracy": 0.8, "predicted_now_ms": 0.7, "median_ms": 0.720, "p10_ms": 0.721, "p90_ms": 0.777,
                       "repeat_pct": 1.0, "error_pct": -2.8, "ratio_to_original": 0.6}])
    report = render(summary({"val_top1": 0.9}, v))
    assert "**0.720** (all rounds' p10–p90: 0.721–0.777)" in report
    assert "| measured ms (quietest round's median) | p10–p90 ms (all rounds' samples) |" in report
    assert "| 0.720 | 0.721–0.777 |" in report
    assert "a quiet round's median can lie below that p10" in report


def test_the_report_says_how_to_feed_model_onnx(tmp_path):
    import slimnas
    from slimnas.data.transforms import InputSpec
    from slimnas.pipeline.report import ONNX_SNIPPET, deploy_info

    model = TinyNet(3).eval()
    slimnas.save_exported(model, tmp_path / "model.pt", None, "tests.nets:tiny_net", 3,
                          inputs=InputSpec(96, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), classes=["a", "b", "c"])
    report = render({**summary({"val_top1": 0.9}), "deploy": deploy_info(tmp_path)})
    assert "shorter side resized to 110 px (bilinear); centre crop 96x96" in report
    assert "mean 0.4850, 0.4560, 0.4060; std 0.2290, 0.2240, 0.2250" in report
    assert "logits of 3 classes, in this order: `a`, `b`, `c`" in report and ONNX_SNIPPET in report
