"""The contract of a dynamic layer: slice stored weights to the active channels, hand back a plain layer.

A dynamic layer *is* the torch layer it replaces (a subclass, so state_dict keys and ``isinstance`` checks
in user code are unchanged) holding the widest weights. ``set_active`` picks the input and output channels;
``export`` returns a plain torch layer of exactly those channels, so ONNX and TensorRT never see a dynamic
module. A new layer type is one file with a class registered here under the torch type it replaces.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

# Which stored channels a dimension uses: None = all of them in stored order, an int c = the first c
# (a view, no copy), a tensor = these positions (a gather).
Active = Optional[Union[int, torch.Tensor]]

DYNAMIC: dict[type, type] = {}


def register(torch_type: type) -> Callable[[type], type]:
    """Class decorator: the dynamic layer that replaces ``torch_type`` in a supernet."""

    def deco(cls: type) -> type:
        DYNAMIC[torch_type] = cls
        return cls

    return deco


def take(t: Optional[torch.Tensor], dim: int, sel: Active) -> Optional[torch.Tensor]:
    """The active part of ``t`` along ``dim``."""
    if t is None or sel is None:
        return t
    if isinstance(sel, int):
        return t.narrow(dim, 0, sel)
    return t.index_select(dim, sel)


def count(sel: Active, full: int) -> int:
    if sel is None:
        return full
    return sel if isinstance(sel, int) else int(sel.numel())


class DynamicMixin:
    """State shared by dynamic layers: the active input and output channels."""

    active_in: Active = None
    active_out: Active = None

    def set_active(self, active_in: Active, active_out: Active) -> None:
        self.active_in = active_in
        self.active_out = active_out

    @property
    def is_full(self) -> bool:
        return self.active_in is None and self.active_out is None

    def export(self) -> nn.Module:  # pragma: no cover - each layer defines it
        raise NotImplementedError

    depthwise = False  # a depthwise conv slices its input and output by the same group

    @staticmethod
    def init_new_rows(t: torch.Tensor) -> None:
        """Initialise the incoming weights of broadened channels."""
        nn.init.kaiming_normal_(t, mode="fan_out")

    def resized(self, in_size: Optional[int], out_size: Optional[int]) -> None:
        """Update the layer's size attributes after :meth:`grow` (None: that side is unchanged)."""
        raise NotImplementedError  # pragma: no cover

    def grow(self, in_pos: Optional[torch.Tensor], out_pos: Optional[torch.Tensor], in_size: int, out_size: int) -> None:
        """Widen to ``in_size``/``out_size`` channels; ``*_pos`` are where the stored channels go (None: unchanged).

        New channels get fresh incoming weights and zero outgoing weights, so the wider layer computes the
        same function as before. This is the weight-matrix version (conv, linear); BatchNorm overrides it.
        """
        w = self.weight.data
        if out_pos is not None:
            w = grown(w, 0, out_size, out_pos, self.init_new_rows)
            if self.bias is not None:
                self.bias = nn.Parameter(grown(self.bias.data, 0, out_size, out_pos, nn.init.zeros_))
        if in_pos is not None and not self.depthwise:
            w = grown(w, 1, in_size, in_pos, nn.init.zeros_)  # outgoing weights of the new channels: zero
        self.weight = nn.Parameter(w)
        self.resized(in_size if in_pos is not None else None, out_size if out_pos is not None else None)

    @torch.no_grad()
    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        """Reorder stored channels in place (the same permutation every layer of a group applies)."""
        if out_perm is not None:
            self.weight.copy_(self.weight[out_perm])
            if self.bias is not None:
                self.bias.copy_(self.bias[out_perm])
        if in_perm is not None and not self.depthwise:
            self.weight.copy_(self.weight[:, in_perm])


def grown(t: torch.Tensor, dim: int, size: int, pos: torch.Tensor, fill: Callable[[torch.Tensor], None]) -> torch.Tensor:
    """A copy of ``t`` widened to ``size`` along ``dim``: old values at ``pos``, ``fill`` initialises the rest."""
    shape = list(t.shape)
    shape[dim] = size
    out = torch.empty(shape, dtype=t.dtype, device=t.device)
    fill(out)
    out.index_copy_(dim, pos.to(t.device), t)
    return out
