"""Typed options of a training run (validated here, at the edge)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

from ..errors import SlimnasError


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, loss, precision, checkpoints."""

    epochs: int = 1  # passes over the training set
    steps_per_epoch: Optional[int] = None  # cap the steps of an epoch (quick runs); None: the whole set
    batch_size: int = 64  # images per step per process
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw
    lr: float = 0.05  # peak learning rate (after warm-up)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 4e-5  # L2 for SGD, decoupled for AdamW; not applied to BN and biases
    warmup_fraction: float = 0.05  # share of all steps spent ramping the learning rate up linearly from 0
    min_lr_ratio: float = 0.0  # the cosine decays to lr * min_lr_ratio
    label_smoothing: float = 0.1  # cross-entropy label smoothing for hard labels
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    grad_clip: Optional[float] = None  # clip the global gradient norm to this value
    seed: int = 0  # seeds data order, augmentation and subnet sampling (per epoch, so resume is exact)
    num_workers: int = 0  # data-loader worker processes
    log_every: int = 1  # write a row to steps.csv every this many steps
    eval_images: Optional[int] = 1000  # validation images scored per reported subnet at each epoch end
    calib_images: int = 256  # training images used to recalibrate BN before each report
    progress: bool = True  # tqdm progress bar (rank 0, when there is a terminal)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SlimnasError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise SlimnasError(f"batch_size must be positive, got {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise SlimnasError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SlimnasError(f"lr (learning rate) must be positive, got {self.lr}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise SlimnasError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise SlimnasError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise SlimnasError(f"steps_per_epoch must be positive, got {self.steps_per_epoch}")
        if not 0.0 <= self.momentum < 1.0:
            raise SlimnasError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise SlimnasError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise SlimnasError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise SlimnasError(f"grad_clip must be positive (or null: no clipping), got {self.grad_clip}")
        if self.seed < 0 or self.num_workers < 0:
            raise SlimnasError(f"seed and num_workers must be >= 0, got {self.seed} and {self.num_workers}")
        if self.log_every < 1 or self.calib_images < 1:
            raise SlimnasError(f"log_every and calib_images must be at least 1, got {self.log_every} and {self.calib_images}")
        if self.eval_images is not None and self.eval_images < 0:
            raise SlimnasError(f"eval_images must be >= 0 (0: no evaluation), got {self.eval_images}")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate of ``step`` (0-based): linear warm-up, then cosine to ``lr * min_lr_ratio``."""
    warm = int(round(config.warmup_fraction * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    span = max(1, total - warm)
    t = min(1.0, (step - warm) / span)
    low = config.lr * config.min_lr_ratio
    return low + (config.lr - low) * 0.5 * (1.0 + math.cos(math.pi * t))
