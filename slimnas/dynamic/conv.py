"""Dynamic ``nn.Conv2d``: ordinary (groups=1) and depthwise convolutions."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .base import DynamicMixin, count, grown, register, take


@register(nn.Conv2d)
class DynamicConv2d(DynamicMixin, nn.Conv2d):
    """A conv whose input and output channels can be sliced. Depthwise convs slice both by the same group."""

    @classmethod
    def wrap(cls, conv: nn.Conv2d) -> "DynamicConv2d":
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)  # same parameters, buffers and hyper-parameters
        new.depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_full:
            return super().forward(x)
        w = take(self.weight, 0, self.active_out)
        if not self.depthwise:
            w = take(w, 1, self.active_in)
        b = take(self.bias, 0, self.active_out)
        groups = w.shape[0] if self.depthwise else 1
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, w, b, self.stride, _pair(0), self.dilation, groups)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)

    def export(self) -> nn.Conv2d:
        out_c = count(self.active_out, self.out_channels)
        in_c = out_c if self.depthwise else count(self.active_in, self.in_channels)
        conv = nn.Conv2d(
            in_c, out_c, self.kernel_size, self.stride, self.padding, self.dilation,
            groups=out_c if self.depthwise else 1, bias=self.bias is not None, padding_mode=self.padding_mode,
            device=self.weight.device, dtype=self.weight.dtype,
        )
        w = take(self.weight, 0, self.active_out)
        if not self.depthwise:
            w = take(w, 1, self.active_in)
        with torch.no_grad():
            conv.weight.copy_(w)
            if self.bias is not None:
                conv.bias.copy_(take(self.bias, 0, self.active_out))
        return conv

    def grow(self, in_pos: Optional[torch.Tensor], out_pos: Optional[torch.Tensor], in_size: int, out_size: int) -> None:
        w = self.weight.data
        if out_pos is not None:
            w = grown(w, 0, out_size, out_pos, lambda t: nn.init.kaiming_normal_(t, mode="fan_out"))
            if self.bias is not None:
                self.bias = nn.Parameter(grown(self.bias.data, 0, out_size, out_pos, nn.init.zeros_))
            self.out_channels = out_size
        if self.depthwise:
            self.in_channels = self.groups = self.out_channels
        elif in_pos is not None:
            w = grown(w, 1, in_size, in_pos, nn.init.zeros_)  # outgoing weights of new channels: zero
            self.in_channels = in_size
        self.weight = nn.Parameter(w)

    @torch.no_grad()
    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        if out_perm is not None:
            self.weight.copy_(self.weight[out_perm])
            if self.bias is not None:
                self.bias.copy_(self.bias[out_perm])
        if in_perm is not None and not self.depthwise:
            self.weight.copy_(self.weight[:, in_perm])
