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

    def grow(self, in_pos: Optional[torch.Tensor], out_pos: Optional[torch.Tensor], in_size: int, out_size: int) -> None:
        """Widen to ``in_size``/``out_size`` channels; ``*_pos`` are where the stored channels go (None: unchanged).

        New channels get fresh incoming weights and zero outgoing weights, so the wider layer computes the
        same function as before.
        """
        raise NotImplementedError  # pragma: no cover

    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        """Reorder stored channels in place (the same permutation every layer of a group applies)."""
        raise NotImplementedError  # pragma: no cover


def grown(t: torch.Tensor, dim: int, size: int, pos: torch.Tensor, fill: Callable[[torch.Tensor], None]) -> torch.Tensor:
    """A copy of ``t`` widened to ``size`` along ``dim``: old values at ``pos``, ``fill`` initialises the rest."""
    shape = list(t.shape)
    shape[dim] = size
    out = torch.empty(shape, dtype=t.dtype, device=t.device)
    fill(out)
    out.index_copy_(dim, pos.to(t.device), t)
    return out
