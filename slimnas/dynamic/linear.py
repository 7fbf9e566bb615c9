"""Dynamic ``nn.Linear``."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import DynamicMixin, count, grown, register, take


@register(nn.Linear)
class DynamicLinear(DynamicMixin, nn.Linear):
    """A linear layer whose input features and output features can be sliced."""

    @classmethod
    def wrap(cls, linear: nn.Linear) -> "DynamicLinear":
        new = cls.__new__(cls)
        new.__dict__.update(linear.__dict__)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_full:
            return super().forward(x)
        w = take(take(self.weight, 0, self.active_out), 1, self.active_in)
        return F.linear(x, w, take(self.bias, 0, self.active_out))

    def export(self) -> nn.Linear:
        w = take(take(self.weight, 0, self.active_out), 1, self.active_in)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=self.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if self.bias is not None:
                lin.bias.copy_(take(self.bias, 0, self.active_out))
        return lin

    def grow(self, in_pos: Optional[torch.Tensor], out_pos: Optional[torch.Tensor], in_size: int, out_size: int) -> None:
        w = self.weight.data
        if out_pos is not None:
            w = grown(w, 0, out_size, out_pos, lambda t: nn.init.normal_(t, 0.0, 0.01))
            if self.bias is not None:
                self.bias = nn.Parameter(grown(self.bias.data, 0, out_size, out_pos, nn.init.zeros_))
            self.out_features = out_size
        if in_pos is not None:
            w = grown(w, 1, in_size, in_pos, nn.init.zeros_)
            self.in_features = in_size
        self.weight = nn.Parameter(w)

    @torch.no_grad()
    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        if out_perm is not None:
            self.weight.copy_(self.weight[out_perm])
            if self.bias is not None:
                self.bias.copy_(self.bias[out_perm])
        if in_perm is not None:
            self.weight.copy_(self.weight[:, in_perm])
