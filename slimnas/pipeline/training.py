"""The training stages of a slim run: the base model (when there is no checkpoint) and the supernet.

Both write into sub-folders of the run with the :class:`~slimnas.train.Trainer`'s epoch checkpoints, so a
killed run resumes from its last finished epoch; a finished stage is recognised by its output file.
"""
from __future__ import annotations

import logging
import json
from pathlib import Path
from typing import Optional

import torch

from .. import paths
from ..data import Datasets
from ..evaluate import Evaluator
from ..fileio import atomic_torch_save, atomic_write_text
from ..models import load_model
from ..train import Trainer, make_strategy
from ..train.strategies import STRATEGIES
from ..train.run import RunSpec, load_run, train
from .config import SlimConfig

logger = logging.getLogger(__name__)

BASE_WEIGHTS = "base/model.pth"
SUPERNET = "supernet"
SUPERNET_DONE = "supernet/space_final.json"


def train_base(config: SlimConfig, data: Datasets, out: Path) -> Path:
    """Train the model from scratch (``config.base``) into ``out/base``; returns its state_dict file."""
    path = out / BASE_WEIGHTS
    if path.is_file():
        return path
    torch.manual_seed(config.seed)
    model = load_model(config.model.name, num_classes=config.model.num_classes or data.num_classes)
    trainer = Trainer(model, make_strategy("plain", model), data, config.base, run_dir=path.parent, device=config.device)
    trainer.fit(resume=True)
    ev = Evaluator(data.calib, data.val, calib_images=1, device=trainer.device, seed=config.seed)
    top1 = ev.evaluate_model(trainer.model, recalibrate=False).top1
    atomic_write_text(path.parent / "result.json", json.dumps({"val_top1": top1, "steps": trainer.step}, indent=1))
    atomic_torch_save({k: v.cpu() for k, v in trainer.model.state_dict().items()}, path)
    logger.info(f"base model: validation top-1 {top1:.4f} after {trainer.step} steps")
    return path


def base_accuracy(out: Path) -> Optional[float]:
    f = out / "base" / "result.json"
    return float(json.loads(f.read_text())["val_top1"]) if f.is_file() else None


def supernet_spec(config: SlimConfig, weights: Optional[str], num_classes: int) -> RunSpec:
    """The supernet's training run; the original model is its frozen teacher (``supernet.teacher``) when it has
    trained weights, given or from the base stage (a random initialisation has nothing to teach)."""
    s = config.supernet
    trained = weights is not None or str(config.model.name).endswith(paths.CHECKPOINT_SUFFIXES)
    takes = hasattr(STRATEGIES.get(s.strategy), "Options") and hasattr(STRATEGIES[s.strategy].Options, "teacher")
    options = {**({"teacher": s.teacher if trained else "none"} if takes else {}), **s.options}
    return RunSpec(model=config.model.name, weights=weights, num_classes=num_classes, input_size=config.model.input_size,
                   space=config.space, data=config.data, strategy=s.strategy, strategy_options=options,
                   bins=s.bins, train=s.train, device=config.device)


def train_supernet(config: SlimConfig, weights: Optional[str], num_classes: int, out: Path):
    """Train the supernet into ``out/supernet`` (or finish it); returns (net, strategy, data) of the trained run."""
    run_dir = out / SUPERNET
    if not (out / SUPERNET_DONE).is_file():
        # prepare() has said it once already when there are no weights
        trainer = train(supernet_spec(config, weights, num_classes), run_dir, resume=True)
        return trainer.model, trainer.strategy, trainer.data
    _, net, strategy, data = load_run(run_dir, config.device)
    return net, strategy, data
