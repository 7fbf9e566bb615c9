"""The fine-tune every method gets (same steps, same recipe, no distillation), and the reported numbers.

Fine-tuning writes a per-epoch checkpoint into its folder, so a killed run resumes. The test top-1 is scored
after re-estimating BatchNorm statistics on training images, for every model alike (the base included).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Union

import torch
from torch import nn

from slimnas.data import Datasets
from slimnas.evaluate import Evaluator
from slimnas.train import Trainer, TrainConfig, make_strategy


def finetune(model: nn.Module, data: Datasets, config: TrainConfig, run_dir: Union[str, Path],
             device: torch.device) -> nn.Module:
    """Train ``model`` with the plain strategy for ``config``'s steps (resuming from ``run_dir``)."""
    trainer = Trainer(model, make_strategy("plain", model), data, config, run_dir=run_dir, device=device)
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
