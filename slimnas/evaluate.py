"""Score a subnet: re-estimate its BatchNorm statistics on a few training batches, then measure accuracy.

Search calls this thousands of times, so everything that can be cached is: the calibration and validation
batches are decoded and transformed once and kept as tensors on the device. Recalibration touches only the
channels the active subnet uses, and by default the supernet's statistics are restored afterwards, so scoring
one subnet never changes the score of another.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .dynamic import DynamicMixin
from .errors import SlimnasError
from .subnet import Subnet


@dataclass(frozen=True)
class EvalResult:
    top1: float  # fraction of correct top-1 predictions
    loss: float  # mean cross-entropy
    n: int  # images scored


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
    correct, loss, n = 0, 0.0, 0
    try:
        for x, y in batches:
            out = model(x).float()
            correct += int((out.argmax(1) == y).sum())
            loss += float(F.cross_entropy(out, y, reduction="sum"))
            n += len(y)
    finally:
        model.train(was_training)
    return EvalResult(correct / n, loss / n, n)


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

    def best_of(self, net, candidates: Sequence[Subnet]) -> tuple[EvalResult, Subnet]:
        """Score each candidate (arrangements of one width choice); the best top-1 (then lowest loss) wins."""
        best, best_sub = None, None
        for cand in candidates:
            r = self.evaluate(net, cand)
            if best is None or r.top1 > best.top1 or (r.top1 == best.top1 and r.loss < best.loss):
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
