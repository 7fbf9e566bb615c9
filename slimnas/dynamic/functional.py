"""Dynamic layers for modules that compute a layer functionally on their own parameters.

timm's ``BatchNormAct2d`` (a ``BatchNorm2d`` whose forward calls ``F.batch_norm`` and then an activation),
``Conv2dSame`` (pads, then ``F.conv2d``) or a user's module holding ``self.weight`` keep their own forward: the
dynamic version is a subclass of the user's class that runs that forward with its parameters and buffers
swapped for their active slices, and its size attributes (``num_features``, ``in_channels``, ``groups``...)
set to the active widths. Which attribute plays which role (weight, bias, running statistics) comes from the
traced op (:class:`slimnas.trace.LayerSpec`), so no wrapper class needs a rule of its own. ``export`` hands
back an instance of the user's class with narrower parameters.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator, Optional

import torch
from torch import nn

from .base import DynamicMixin, count, grown, take

# Size attributes a layer's forward may read, by kind and side.
_OUT_ATTRS = {"conv": ("out_channels",), "dwconv": ("out_channels", "in_channels"), "gconv": ("out_channels", "in_channels"),
              "linear": ("out_features",), "bn": ("num_features", "num_channels")}
_IN_ATTRS = {"conv": ("in_channels",), "linear": ("in_features",)}
_STATE = ("active_in", "active_out", "kind", "roles", "depthwise")


class FunctionalLayer(DynamicMixin):
    """Mixed into the user's module class (see :func:`wrap`); ``roles`` maps weight/bias/... to attributes."""

    kind: str = "bn"
    roles: dict[str, str] = {}
    user_class: type = nn.Module  # the class this dynamic class extends (what export builds)

    # -- slicing --------------------------------------------------------------------------------------------
    def _slices(self, in_sel, out_sel) -> dict[str, torch.Tensor]:
        out = {}
        for role, attr in self.roles.items():
            t = getattr(self, attr)
            if t is None:
                continue
            t = take(t, 0, out_sel)
            if role == "weight" and self.kind in ("conv", "linear"):
                t = take(t, 1, in_sel)
            out[attr] = t
        return out

    def _sizes(self, in_sel, out_sel) -> dict[str, object]:
        weight = getattr(self, self.roles["weight"])
        sizes: dict[str, object] = {}
        n_out = count(out_sel, weight.shape[0])
        for attr in _OUT_ATTRS[self.kind]:
            if hasattr(self, attr):
                sizes[attr] = n_out
        if self.kind in ("dwconv", "gconv"):  # the group count follows the width
            sizes["groups"] = n_out // weight.shape[1]
        if self.kind == "bn" and hasattr(self, "normalized_shape"):
            sizes["normalized_shape"] = (n_out,)
        for attr in _IN_ATTRS.get(self.kind, ()):
            if hasattr(self, attr):
                sizes[attr] = count(in_sel, weight.shape[1])
        return sizes

    @contextlib.contextmanager
    def _swapped(self, tensors: dict[str, torch.Tensor], sizes: dict[str, object]) -> Iterator[None]:
        saved_t = {}
        for attr, t in tensors.items():
            store = self._parameters if attr in self._parameters else self._buffers
            saved_t[attr] = (store, store[attr])
            store[attr] = t
        saved_s = {attr: getattr(self, attr) for attr in sizes}
        for attr, v in sizes.items():
            object.__setattr__(self, attr, v)
        try:
            yield
        finally:
            for attr, (store, t) in saved_t.items():
                store[attr] = t
            for attr, v in saved_s.items():
                object.__setattr__(self, attr, v)

    def forward(self, *args, **kwargs):
        if self.is_full:
            return super().forward(*args, **kwargs)
        sel_out = self.active_out
        tensors = self._slices(self.active_in, sel_out)
        with self._swapped(tensors, self._sizes(self.active_in, sel_out)):
            y = super().forward(*args, **kwargs)
        if isinstance(sel_out, torch.Tensor) and self.training:
            with torch.no_grad():  # a gather made copies: write updated running statistics back
                for role in ("running_mean", "running_var"):
                    attr = self.roles.get(role)
                    if attr is not None and getattr(self, attr) is not None:
                        getattr(self, attr).index_copy_(0, sel_out, tensors[attr])
        return y

    # -- export ---------------------------------------------------------------------------------------------
    def export(self) -> nn.Module:
        cls = self.user_class
        new = cls.__new__(cls)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _STATE})
        new._parameters = dict(self._parameters)
        new._buffers = dict(self._buffers)
        new._modules = dict(self._modules)
        with torch.no_grad():
            for attr, t in self._slices(self.active_in, self.active_out).items():
                if attr in self._parameters:
                    new._parameters[attr] = nn.Parameter(t.clone(), requires_grad=self._parameters[attr].requires_grad)
                else:
                    new._buffers[attr] = t.clone()
        for attr, v in self._sizes(self.active_in, self.active_out).items():
            object.__setattr__(new, attr, v)
        return new

    # -- reordering and broadening ----------------------------------------------------------------------------
    @torch.no_grad()
    def permute(self, in_perm: Optional[torch.Tensor], out_perm: Optional[torch.Tensor]) -> None:
        for role, attr in self.roles.items():
            t = getattr(self, attr)
            if t is None:
                continue
            if out_perm is not None:
                t.copy_(t[out_perm])
            if in_perm is not None and role == "weight" and self.kind in ("conv", "linear"):
                t.copy_(t[:, in_perm])

    def grow(self, in_pos: Optional[torch.Tensor], out_pos: Optional[torch.Tensor], in_size: int, out_size: int) -> None:
        fills = {"weight": nn.init.ones_ if self.kind == "bn" else self._init_rows, "bias": nn.init.zeros_,
                 "running_mean": nn.init.zeros_, "running_var": nn.init.ones_}
        for role, attr in self.roles.items():
            t = getattr(self, attr)
            if t is None:
                continue
            data = t.data
            if out_pos is not None:
                data = grown(data, 0, out_size, out_pos, fills[role])
            if in_pos is not None and role == "weight" and self.kind in ("conv", "linear"):
                data = grown(data, 1, in_size, in_pos, nn.init.zeros_)
            if attr in self._parameters:
                self._parameters[attr] = nn.Parameter(data, requires_grad=t.requires_grad)
            else:
                self._buffers[attr] = data
        for attr, v in self._sizes(None, None).items():
            object.__setattr__(self, attr, v)

    def _init_rows(self, t: torch.Tensor) -> None:
        if self.kind == "linear":
            nn.init.normal_(t, 0.0, 0.01)
        else:
            nn.init.kaiming_normal_(t, mode="fan_out")


_CLASSES: dict[type, type] = {}


def dynamic_class(cls: type) -> type:
    """``Dynamic<cls>``: the user's class with :class:`FunctionalLayer` in front (one per class, importable)."""
    if cls not in _CLASSES:
        name = f"Dynamic{cls.__name__}_{len(_CLASSES)}"
        new = type(name, (FunctionalLayer, cls), {"__module__": __name__, "__qualname__": name, "user_class": cls})
        setattr(sys.modules[__name__], name, new)
        _CLASSES[cls] = new
    return _CLASSES[cls]


def wrap(module: nn.Module, kind: str, roles: dict[str, str]) -> FunctionalLayer:
    """The dynamic version of ``module``, sharing its parameters, buffers and sub-modules."""
    new = dynamic_class(type(module)).__new__(dynamic_class(type(module)))
    new.__dict__.update(module.__dict__)
    new.kind = kind
    new.roles = dict(roles)
    new.depthwise = kind == "dwconv"
    return new
