"""The fine-tune every method gets (same steps, same recipe, distilled from the base for all or for none), and the
reported numbers.

Fine-tuning writes a per-epoch checkpoint into its folder, so a killed run resumes. The test top-1 is scored
after re-estimating BatchNorm statistics on training images, for every model alike (the base included).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from slimnas.data import Datasets
from slimnas.evaluate import Evaluator
from slimnas.train import TrainConfig, Trainer, make_strategy
from slimnas.train.strategies.distill import Distill, DistillOptions


def finetune(model: nn.Module, data: Datasets, config: TrainConfig, run_dir: Union[str, Path],
             device: torch.device, teacher: Optional[nn.Module] = None) -> nn.Module:
    """Train ``model`` for ``config``'s steps (resuming from ``run_dir``): against the labels, and against a
    frozen copy of ``teacher``'s softened outputs when one is given (:class:`slimnas.train.strategies.distill.Distill`,
    alpha 0.5, temperature 4, the defaults of ``slimnas slim``'s fine-tune)."""
    if teacher is not None:
        strategy = Distill(model, DistillOptions(), teacher=copy.deepcopy(teacher))
    else:
        strategy = make_strategy("plain", model)
    trainer = Trainer(model, strategy, data, config, run_dir=run_dir, device=device)
    trainer.fit(resume=True)
    return trainer.model.cpu().eval()


def flops_params(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[float, float]:
    """Multiply-accumulates (thop's convention, as slimnas reports FLOPs) and parameters, per image."""
    import thop

    m = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        macs, params = thop.profile(m, inputs=(torch.randn((1,) + tuple(input_shape)),), verbose=False)
    return float(macs), float(sum(p.numel() for p in model.parameters()))


def test_evaluator(data: Datasets, calib_images: int, device: torch.device) -> Evaluator:
    """Scores on the test split (reporting only), BN re-estimated on ``calib_images`` training images."""
    return Evaluator(data.calib, data.test, calib_images=calib_images, val_images=None, device=device)


def deployed_scores(model: nn.Module, folder: Path, evaluator: Evaluator, data: Datasets, calibration_images: int,
                    device: torch.device) -> dict:
    """``model`` as deployed at batch 1 (``folder/model.onnx``) and as its INT8 graph (``folder/model.int8.onnx``:
    onnxruntime static QDQ with :data:`slimnas.quantize.SETTINGS`, calibrated on ``calibration_images`` training
    images), each run by onnxruntime on ``evaluator``'s test images.

    BatchNorm statistics are first re-estimated on ``evaluator``'s calibration batches, as for the torch test score,
    so the FP32 graph scores what the torch model does and the INT8 graph's difference is the quantization's."""
    from slimnas.evaluate import recalibrate_bn
    from slimnas.export import export_onnx
    from slimnas.fileio import atomic_path
    from slimnas.pipeline.exports import calibration_batches, onnx_top1
    from slimnas.quantize import SETTINGS, quantize_onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).to(device)
    recalibrate_bn(m, evaluator.calib)
    m = m.cpu().eval()
    x = evaluator.calib[0][:1].cpu()
    fp32 = export_onnx(m, folder / "model.onnx", tuple(x.shape[1:]))
    int8 = folder / "model.int8.onnx"
    with atomic_path(int8, suffix=".tmp.onnx") as tmp:
        tmp.write_bytes(quantize_onnx(fp32, calibration_batches(data, calibration_images, batch=1)))
    test = torch.utils.data.TensorDataset(torch.cat([x.cpu() for x, _ in evaluator.val]),
                                          torch.cat([y.cpu() for _, y in evaluator.val]))
    a, b = onnx_top1(fp32, test, batch=1), onnx_top1(int8, test, batch=1)
    return {"onnx_fp32_test_top1": a["top1"], "int8_test_top1": b["top1"], "onnx_test_images": b["images"],
            "int8_onnx": str(int8), "int8_calibration_images": calibration_images, "quantization": SETTINGS.describe(),
            "accuracy_from": "onnxruntime (CPU provider, batch 1) on the test split"}
