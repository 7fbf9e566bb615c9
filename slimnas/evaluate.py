"""Score a subnet: re-estimate its BatchNorm statistics on a few training batches, then measure accuracy.

Search calls this thousands of times, so everything that can be cached is: the calibration and validation
batches are decoded and transformed once and kept as tensors on the device. Recalibration touches only the
channels the active subnet uses, and by default the supernet's statistics are restored afterwards, so scoring
one subnet never changes the score of another.

A score is an estimate with an error bar: :class:`EvalResult` keeps the per-image outcomes (correct or not, and
the cross-entropy), so a score carries its standard error and two subnets scored on the same images can be
compared paired (:func:`paired_difference`), which cancels the images' own difficulty from the comparison.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .dynamic import DynamicMixin
from .errors import SlimnasError
from .subnet import Subnet


ESTIMATORS = ("top1", "loss")  # per image: 1 if the top-1 prediction is right; minus the cross-entropy


@dataclass(frozen=True)
class EvalResult:
    top1: float  # fraction of correct top-1 predictions
    loss: float  # mean cross-entropy
    n: int  # images scored
    correct: Optional[np.ndarray] = field(default=None, compare=False, repr=False)  # bool per image, in order
    losses: Optional[np.ndarray] = field(default=None, compare=False, repr=False)  # cross-entropy per image

    def values(self, estimator: str = "top1") -> np.ndarray:
        """The per-image values whose mean is the score (higher is better): correct (0/1), or minus the loss."""
        if self.correct is None or self.losses is None:
            raise SlimnasError("this evaluation kept no per-image values")
        if estimator == "top1":
            return self.correct.astype(np.float64)
        if estimator == "loss":
            return -self.losses.astype(np.float64)
        raise SlimnasError(f"unknown estimator {estimator!r}; use one of: {', '.join(ESTIMATORS)}")

    def se(self, estimator: str = "top1") -> float:
        """Standard error of the score's mean over the images."""
        return standard_error(self.values(estimator))


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of ``values`` (0 for fewer than two)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of ``a - b`` over the same images, and its standard error (paired: per-image differences)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise SlimnasError(f"paired scores need the same images: {a.shape[0]} vs {b.shape[0]} values")
    d = a - b
    return float(d.mean()), standard_error(d)


def _batches(dataset: Dataset, batch_size: int, limit: Optional[int], seed: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    n = len(dataset)
    if n == 0:
        raise SlimnasError("the evaluation data set is empty")
    if limit is not None and limit < n:
        g = torch.Generator().manual_seed(seed)
        dataset = Subset(dataset, torch.randperm(n, generator=g)[:limit].tolist())
    out = []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        out.append((x.to(device), torch.as_tensor(y).to(device)))
    return out


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _active_positions(bn: nn.modules.batchnorm._BatchNorm) -> Union[slice, torch.Tensor]:
    sel = bn.active_out if isinstance(bn, DynamicMixin) else None
    if sel is None:
        return slice(None)
    if isinstance(sel, int):
        return slice(0, sel)
    return sel


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate the running statistics of the active channels of every BatchNorm from ``batches``.

    Statistics are the exact average over the batches (momentum ``None``); inactive channels are untouched.
    """
    bns = batch_norms(model)
    saved = [(bn.momentum, bn.num_batches_tracked.clone(), bn.training) for bn in bns]
    was_training = model.training
    model.eval()
    for bn in bns:
        pos = _active_positions(bn)
        bn.running_mean[pos] = 0.0
        bn.running_var[pos] = 1.0
        bn.num_batches_tracked.zero_()
        bn.momentum = None
        bn.train()
    try:
        for x in batches:
            model(x)
    finally:
        for bn, (momentum, tracked, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.num_batches_tracked.copy_(tracked)
            bn.train(training)
        model.train(was_training)


@contextlib.contextmanager
def bn_state_restored(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running statistics (and batch count) on exit."""
    bns = batch_norms(model)
    saved = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, (m, v, n) in zip(bns, saved):
                bn.running_mean.copy_(m)
                bn.running_var.copy_(v)
                bn.num_batches_tracked.copy_(n)


@torch.no_grad()
def accuracy(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> EvalResult:
    was_training = model.training
    model.eval()
    correct, losses = [], []
    try:
        for x, y in batches:
            out = model(x).float()
            correct.append((out.argmax(1) == y).cpu())
            losses.append(F.cross_entropy(out, y, reduction="none").cpu())
    finally:
        model.train(was_training)
    c = torch.cat(correct).numpy()
    l = torch.cat(losses).double().numpy()
    return EvalResult(float(c.mean()), float(l.mean()), len(c), c, l.astype(np.float32))


class Evaluator:
    """Scores subnets of one supernet (or plain models) on cached validation batches after BN recalibration.

    ``calib`` should be training images with the evaluation transform (``Datasets.calib``); ``val`` the
    validation split. ``calib_images`` / ``val_images`` cap how many are used (a seeded, fixed subset).
    """

    def __init__(self, calib: Dataset, val: Dataset, calib_images: int = 512, val_images: Optional[int] = None,
                 batch_size: int = 128, device: Union[str, torch.device] = "cpu", seed: int = 0):
        self.device = torch.device(device)
        self.calib = [x for x, _ in _batches(calib, batch_size, calib_images, seed, self.device)]
        self.val = _batches(val, batch_size, val_images, seed + 1, self.device)

    def evaluate_model(self, model: nn.Module, recalibrate: bool = True) -> EvalResult:
        """Accuracy of a plain model (or the active subnet), after recalibration (statistics restored after)."""
        with bn_state_restored(model):
            if recalibrate:
                recalibrate_bn(model, self.calib)
            return accuracy(model, self.val)

    def best_of(self, net, candidates: Sequence[Subnet], estimator: str = "top1") -> tuple[EvalResult, Subnet]:
        """Score each candidate (arrangements of one width choice); the best by ``estimator`` wins (top-1: ties
        go to the lower loss)."""
        def key(r: EvalResult) -> tuple:
            return (r.top1, -r.loss) if estimator == "top1" else (-r.loss, r.top1)

        best, best_sub = None, None
        for cand in candidates:
            r = self.evaluate(net, cand)
            if best is None or key(r) > key(best):
                best, best_sub = r, cand
        if best is None:
            raise SlimnasError("no candidate subnet to score")
        return best, best_sub

    def evaluate(self, net, subnet: Optional[Subnet] = None, recalibrate: bool = True) -> EvalResult:
        """Recalibrate ``subnet`` of the supernet ``net`` (default: the active one), then score it."""
        if subnet is None:
            return self.evaluate_model(net, recalibrate)
        with net.use(subnet):
            return self.evaluate_model(net, recalibrate)
