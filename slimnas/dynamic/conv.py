"""Dynamic ``nn.Conv2d``: ordinary (groups=1), depthwise and grouped convolutions.

A grouped conv with as many outputs as inputs slices like a depthwise one (input and output are one channel
group) but in whole groups of ``group_width`` channels: the group count follows the width.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .base import DynamicMixin, count, register, take


@register(nn.Conv2d)
class DynamicConv2d(DynamicMixin, nn.Conv2d):
    """A conv whose input and output channels can be sliced. Depthwise convs slice both by the same group."""

    @classmethod
    def wrap(cls, conv: nn.Conv2d) -> "DynamicConv2d":
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)  # same parameters, buffers and hyper-parameters
        new.depthwise = conv.groups > 1 and conv.in_channels == conv.out_channels
        new.group_width = conv.in_channels // conv.groups  # 1 when depthwise
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_full:
            return super().forward(x)
        w = take(self.weight, 0, self.active_out)
        if not self.depthwise:
            w = take(w, 1, self.active_in)
        b = take(self.bias, 0, self.active_out)
        groups = w.shape[0] // self.group_width if self.depthwise else 1
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, w, b, self.stride, _pair(0), self.dilation, groups)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)

    def export(self) -> nn.Conv2d:
        out_c = count(self.active_out, self.out_channels)
        in_c = out_c if self.depthwise else count(self.active_in, self.in_channels)
        conv = nn.Conv2d(
            in_c, out_c, self.kernel_size, self.stride, self.padding, self.dilation,
            groups=out_c // self.group_width if self.depthwise else 1, bias=self.bias is not None,
            padding_mode=self.padding_mode, device=self.weight.device, dtype=self.weight.dtype,
        )
        w = take(self.weight, 0, self.active_out)
        if not self.depthwise:
            w = take(w, 1, self.active_in)
        with torch.no_grad():
            conv.weight.copy_(w)
            if self.bias is not None:
                conv.bias.copy_(take(self.bias, 0, self.active_out))
        return conv

    def resized(self, in_size: Optional[int], out_size: Optional[int]) -> None:
        if out_size is not None:
            self.out_channels = out_size
        if self.depthwise:
            self.in_channels = self.out_channels
            self.groups = self.out_channels // self.group_width
        elif in_size is not None:
            self.in_channels = in_size
