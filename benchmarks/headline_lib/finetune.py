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
from slimnas.train import Trainer, TrainConfig, make_strategy
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
