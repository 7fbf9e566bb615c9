"""The final fine-tune of the chosen subnet as a plain model (optionally distilled from the original), then its
accuracy on the validation split and, for reporting only, on the test split.

Training checkpoints every epoch into ``<run>/finetune`` (resumable); the result is saved as ``model.pt``
(:func:`slimnas.save_exported`), whose BatchNorm statistics are re-estimated exactly on training images first,
with the input spec and class names of the data.

Every model is scored the same way: as deployed, in eval mode with the BatchNorm statistics it is saved with,
on the same validation (and test) images. The chosen model is saved with recalibrated statistics, so its
score is that of ``model.pt``; the original is scored as given and, beside it, after the same recalibration
(:func:`original_accuracy`): where the two differ, the checkpoint's statistics do not fit its weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from torch import nn

from ..data import Datasets
from ..data.transforms import InputSpec
from ..evaluate import Evaluator, accuracy, recalibrate_bn
from ..export import export_subnet
from ..models import load_exported, save_exported
from ..fileio import atomic_write_text
from ..subnet import Subnet
from ..train import Trainer, make_strategy
from ..train.strategies.distill import Distill, DistillOptions
from .config import FinetuneConfig, FitnessConfig

MODEL = "model.pt"
RESULT = "finetune/result.json"


def finetune(net, chosen: Subnet, data: Datasets, teacher: Optional[nn.Module], config: FinetuneConfig,
             fitness: FitnessConfig, out: Path, arch: Optional[str], num_classes: int, device=None, seed: int = 0) -> dict:
    """Fine-tune ``chosen`` stand-alone, write ``model.pt`` and ``finetune/result.json``; returns the result."""
    model = export_subnet(net, chosen).cpu()
    if config.distill and teacher is not None:
        strategy = Distill(model, DistillOptions(config.alpha, config.temperature), teacher=teacher)
    else:
        strategy = make_strategy("plain", model)
    trainer = Trainer(model, strategy, data, config.train, run_dir=out / "finetune", device=device)
    trainer.fit(resume=True)
    model = trainer.model.cpu().eval()
    val = Evaluator(data.calib, data.val, calib_images=fitness.calib_images, val_images=fitness.val_images,
                    batch_size=fitness.batch_size, seed=seed)
    recalibrate_bn(model, val.calib)
    result = {"val_top1": accuracy(model, val.val).top1, "val_images": len(data.val) if fitness.val_images is None
              else min(fitness.val_images, len(data.val)), "steps": trainer.step, "distilled": isinstance(strategy, Distill)}
    if data.test is not None:
        test = Evaluator(data.calib, data.test, calib_images=1, batch_size=fitness.batch_size, seed=seed)
        result.update(test_top1=accuracy(model, test.val).top1, test_images=len(data.test))
    result["calib_images"] = min(fitness.calib_images, len(data.calib))
    save_exported(model, out / MODEL, chosen, arch, num_classes, inputs=InputSpec(int(net.input_shape[-1]), data.mean, data.std),
                  classes=data.classes)
    atomic_write_text(out / RESULT, json.dumps(result, indent=1))
    return result


def load_finetuned(out: Path) -> Optional[tuple[nn.Module, dict]]:
    if not ((out / MODEL).is_file() and (out / RESULT).is_file()):
        return None
    return load_exported(out / MODEL), json.loads((out / RESULT).read_text())


def original_accuracy(model: nn.Module, data: Datasets, fitness: FitnessConfig, seed: int = 0) -> dict:
    """The original model's accuracy on the same validation images (and the test split, if any) as the chosen
    model's: as given (eval mode, its own BatchNorm statistics), and after re-estimating those statistics on the
    same training images the chosen model's were re-estimated on (``*_recalibrated``)."""
    model = model.cpu().eval()
    val = Evaluator(data.calib, data.val, calib_images=fitness.calib_images, val_images=fitness.val_images,
                    batch_size=fitness.batch_size, seed=seed)
    out = {"val_top1": val.evaluate_model(model, recalibrate=False).top1,
           "val_top1_recalibrated": val.evaluate_model(model, recalibrate=True).top1,
           "calib_images": min(fitness.calib_images, len(data.calib))}
    if data.test is not None:
        test = Evaluator(data.calib, data.test, calib_images=1, batch_size=fitness.batch_size, seed=seed)
        test.calib = val.calib  # the same recalibration images
        out["test_top1"] = test.evaluate_model(model, recalibrate=False).top1
        out["test_top1_recalibrated"] = test.evaluate_model(model, recalibrate=True).top1
    return out
