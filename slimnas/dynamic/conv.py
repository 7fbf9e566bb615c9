"""Dynamic ``nn.Conv2d``: ordinary (groups=1), depthwise and grouped convolutions.

A grouped conv with as many outputs as inputs slices like a depthwise one (input and output are one channel
group) but in whole groups of ``group_width`` channels: the group count follows the width. With
``fixed_groups`` set (``SpaceConfig.conv_groups="narrow"``) it keeps its group count instead and every conv group
narrows: the active channels are the same number from each group, and each filter keeps as many inputs.

An elastic kernel (``SpaceConfig.kernel_sizes``, issue 16) stores the largest kernel of its choices; a smaller one
is the centre of it, with the padding that keeps the output's size (:meth:`DynamicConv2d.grow_kernel` makes the
stored kernel larger with a zero border, so the layer computes what it did).
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
        new.fixed_groups = 0  # > 0: a grouped conv that keeps this many groups, each narrowing
        new.active_kernel = None  # an elastic kernel's active size (None: the stored one)
        return new

    @property
    def is_full(self) -> bool:
        return self.active_in is None and self.active_out is None and self.active_kernel is None

    @torch.no_grad()
    def grow_kernel(self, size: int) -> None:
        """Store a ``size`` x ``size`` kernel: the present one in its centre, zeros around it, the padding grown so the
        output keeps its size (function-preserving: the border multiplies the zero padding or adds zero terms)."""
        k = self.kernel_size[0]
        if size == k:
            return
        off = (size - k) // 2
        w = self.weight.new_zeros(self.weight.shape[:2] + (size, size))
        w[:, :, off:off + k, off:off + k] = self.weight
        self.weight = nn.Parameter(w)
        self.kernel_size = (size, size)
        self.padding = tuple(d * (size - 1) // 2 for d in self.dilation)

    def _kernel(self) -> tuple[int, tuple[int, ...]]:
        """The active kernel size and its padding."""
        k = self.active_kernel or self.kernel_size[0]
        return k, tuple(d * (k - 1) // 2 for d in self.dilation) if self.active_kernel else self.padding

    def _weight(self) -> tuple[torch.Tensor, int]:
        """The active filters and the group count."""
        w = take(self.weight, 0, self.active_out)
        if self.active_kernel is not None and self.active_kernel != self.kernel_size[0]:
            off = (self.kernel_size[0] - self.active_kernel) // 2
            w = w[:, :, off:off + self.active_kernel, off:off + self.active_kernel]
        if not self.depthwise:
            return take(w, 1, self.active_in), 1
        if self.fixed_groups:  # the active channels are as many from each group: each filter keeps that many inputs
            return w.narrow(1, 0, w.shape[0] // self.fixed_groups), self.fixed_groups
        return w, w.shape[0] // self.group_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_full:
            return super().forward(x)
        w, groups = self._weight()
        b = take(self.bias, 0, self.active_out)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, w, b, self.stride, _pair(0), self.dilation, groups)
        return F.conv2d(x, w, b, self.stride, self._kernel()[1], self.dilation, groups)

    def export(self) -> nn.Conv2d:
        out_c = count(self.active_out, self.out_channels)
        in_c = out_c if self.depthwise else count(self.active_in, self.in_channels)
        w, groups = self._weight()
        k, padding = self._kernel()
        conv = nn.Conv2d(
            in_c, out_c, (k, k) if self.active_kernel else self.kernel_size, self.stride, padding, self.dilation,
            groups=groups, bias=self.bias is not None,
            padding_mode=self.padding_mode, device=self.weight.device, dtype=self.weight.dtype,
        )
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

    @torch.no_grad()
    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        """A grouped conv's filters also take the permutation inside their group: row ``r`` (old row ``o``) reads
        the inputs of its new group in their new order, which lie in ``o``'s old group. Whole-group permutations
        leave the inputs in place; orders inside the groups (``conv_groups="narrow"``) move them."""
        q = self.group_width
        if out_perm is None or not self.depthwise or q == 1:
            return super().permute(in_perm, out_perm)
        rows = torch.arange(out_perm.numel())
        new_inputs = out_perm[(rows // q * q)[:, None] + torch.arange(q)[None, :]]  # [row, q]: old channel numbers
        cols = new_inputs - (out_perm // q * q)[:, None]  # ... as positions inside the old row's group
        w = self.weight[out_perm]
        self.weight.copy_(torch.gather(w, 1, cols[:, :, None, None].expand_as(w)))
        if self.bias is not None:
            self.bias.copy_(self.bias[out_perm])
