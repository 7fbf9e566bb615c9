"""Dynamic ``nn.Linear``."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import DynamicMixin, register, take


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

    @staticmethod
    def init_new_rows(t: torch.Tensor) -> None:
        nn.init.normal_(t, 0.0, 0.01)

    def resized(self, in_size: Optional[int], out_size: Optional[int]) -> None:
        if out_size is not None:
            self.out_features = out_size
        if in_size is not None:
            self.in_features = in_size
