"""Dynamic BatchNorm (1d and 2d): parameters and running statistics sliced by the active channels."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import DynamicMixin, count, grown, register, take


class _DynamicBatchNorm(DynamicMixin):
    """Shared by the 1d and 2d variants. Running statistics of the active channels are updated in place."""

    @classmethod
    def wrap(cls, bn: nn.modules.batchnorm._BatchNorm):
        new = cls.__new__(cls)
        new.__dict__.update(bn.__dict__)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sel = self.active_out
        if sel is None:
            return super().forward(x)
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        mean = take(self.running_mean, 0, sel) if track else None
        var = take(self.running_var, 0, sel) if track else None
        out = F.batch_norm(
            x, mean, var, take(self.weight, 0, sel), take(self.bias, 0, sel), use_batch_stats, factor, self.eps
        )
        if isinstance(sel, torch.Tensor) and self.training and mean is not None:
            with torch.no_grad():  # a gather made copies: write the updated statistics back
                self.running_mean.index_copy_(0, sel, mean)
                self.running_var.index_copy_(0, sel, var)
        return out

    def _plain(self) -> type:
        raise NotImplementedError  # pragma: no cover

    def export(self) -> nn.Module:
        sel = self.active_out
        n = count(sel, self.num_features)
        bn = self._plain()(
            n, eps=self.eps, momentum=self.momentum, affine=self.affine,
            track_running_stats=self.track_running_stats, device=self.weight.device, dtype=self.weight.dtype,
        )
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                src = getattr(self, name)
                if src is not None:
                    getattr(bn, name).copy_(take(src, 0, sel))
            if self.num_batches_tracked is not None:
                bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn

    def grow(self, in_pos: Optional[torch.Tensor], out_pos: Optional[torch.Tensor], in_size: int, out_size: int) -> None:
        if out_pos is None:
            return
        self.weight = nn.Parameter(grown(self.weight.data, 0, out_size, out_pos, nn.init.ones_))
        self.bias = nn.Parameter(grown(self.bias.data, 0, out_size, out_pos, nn.init.zeros_))
        if self.running_mean is not None:
            self.running_mean = grown(self.running_mean, 0, out_size, out_pos, nn.init.zeros_)
            self.running_var = grown(self.running_var, 0, out_size, out_pos, nn.init.ones_)
        self.num_features = out_size

    @torch.no_grad()
    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        if out_perm is None:
            return
        for name in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(self, name)
            if t is not None:
                t.copy_(t[out_perm])


@register(nn.BatchNorm2d)
class DynamicBatchNorm2d(_DynamicBatchNorm, nn.BatchNorm2d):
    def _plain(self) -> type:
        return nn.BatchNorm2d


@register(nn.BatchNorm1d)
class DynamicBatchNorm1d(_DynamicBatchNorm, nn.BatchNorm1d):
    def _plain(self) -> type:
        return nn.BatchNorm1d
