"""FLOPs and parameters of a subnet, computed analytically from the traced shapes.

Every layer's cost is a product of at most two channel widths (a conv is ``k·H·W·c_in·c_out``), so the cost
of the whole network is a sum of bilinear terms ``coef · w[i] · w[j]`` over group widths. Building those terms
once makes a subnet's FLOPs a few hundred multiply-adds, and a batch of subnets one numpy product. A layer inside a
skippable block (elastic depth) has its terms multiplied by that block's on/off column as well, so a dropped block
costs nothing. An elastic kernel (issue 16) is one more column, its kernel area k·k, in the place of the constant
factor of a depthwise conv's terms. The
counting rules are thop's (multiply-accumulates for conv and linear, ``4·numel`` for an affine BatchNorm,
``(k+1)·numel`` for adaptive average pooling, zero for activations), so the numbers agree with
``thop.profile`` on the exported model.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Optional, Sequence

import numpy as np
from torch import nn

from .trace import ChannelGraph, Layout

CONST = -1  # index standing for the constant 1 in a term


def _narrowing(spec, graph: ChannelGraph) -> bool:
    """A grouped conv that keeps its group count (each conv group narrows): its cost is quadratic in the width."""
    return spec.kind == "gconv" and graph.groups[spec.out_layout.segs[0].space].narrow


def _linear_form(layout: Optional[Layout], fallback: int) -> list[tuple[int, float]]:
    """``width = Σ coef · w[group]`` for a layout; a constant when the layout is unknown."""
    if layout is None:
        return [(CONST, float(fallback))]
    return [(seg.space, float(layout.inner)) for seg in layout.segs]


def _per_channel(shape: tuple[int, ...], layout: Layout | None) -> int:
    """Elements per channel of a tensor: its pixels times its batch, wherever its channel dimension is (a
    channels-last tensor's layout has as many channels as its last dimension)."""
    numel = math.prod(shape)
    if layout is not None and layout.size and numel % layout.size == 0:
        return numel // layout.size
    return math.prod(shape[2:]) * shape[0]


class _Terms:
    """Terms ``coef · w[i] · w[j] · w[k]``: two widths and the on/off column of the block the layer is in (CONST
    where it is in none)."""

    def __init__(self) -> None:
        self.acc: dict[tuple[int, int, int], float] = defaultdict(float)
        self.block = CONST  # the block column of the layer whose terms are being added
        self.kernel: Optional[int] = None  # its kernel column, if it is an elastic conv (parameters)

    def add(self, coef: float, a: list[tuple[int, float]], b: Optional[list[tuple[int, float]]] = None) -> None:
        b = b if b is not None else [(CONST, 1.0)]
        for i, ca in a:
            for j, cb in b:
                key = (i, j, self.block) if i >= j else (j, i, self.block)
                self.acc[key] += coef * ca * cb

    def arrays(self) -> tuple[np.ndarray, ...]:
        keys = [k for k, v in self.acc.items() if v != 0]
        coef = np.array([self.acc[k] for k in keys], dtype=np.float64)
        return (coef,) + tuple(np.array([k[n] for k in keys], dtype=np.int64) for n in range(3))


class CostModel:
    """Analytic FLOPs (thop's multiply-accumulate convention) and parameter counts of subnets, per sample."""

    def __init__(self, graph: ChannelGraph, modules: Mapping[str, nn.Module], blocks: Sequence[str] = (),
                 kernels: Optional[Mapping[str, int]] = None):
        self.names = [g.name for g in graph.groups]
        self.blocks = list(blocks)  # skippable blocks: columns len(names) + b of a width matrix
        self.kernels = dict(kernels or {})  # elastic convs and their checkpoint kernel: the columns after the blocks
        self.default = np.array([g.width for g in graph.groups], dtype=np.float64)
        self._kernel_col = {name: len(self.names) + len(self.blocks) + i for i, name in enumerate(self.kernels)}
        flops, params = _Terms(), _Terms()
        for call in graph.calls:
            flops.block = self.block_column(call.name)
            self._flops_of(call, modules[call.name], graph, flops, self._kernel_col.get(call.name))
        seen = set()
        for name, module in modules.items():
            if name in seen or (name not in graph.layers and any(True for _ in module.children())):
                continue  # thop counts the parameters of leaf modules (and of layers holding sub-modules)
            seen.add(name)
            params.block = self.block_column(name)
            params.kernel = self._kernel_col.get(name)
            spec = graph.layers.get(name)
            if spec is None:
                n = sum(p.numel() for p in module.parameters(recurse=False))
                if n:
                    params.add(float(n), [(CONST, 1.0)])
                continue
            self._params_of(spec, module, params, graph)
        self._flops = flops.arrays()
        self._params = params.arrays()

    # -- building --------------------------------------------------------------------------------------------
    @staticmethod
    def _flops_of(call, module: nn.Module, graph: ChannelGraph, terms: _Terms, kernel: Optional[int] = None) -> None:
        in_shape, out_shape = call.in_shape, call.out_shape
        if not in_shape or not out_shape:
            return
        lf_in = _linear_form(call.in_layout, in_shape[1] if len(in_shape) > 1 else 1)
        lf_out = _linear_form(call.out_layout, out_shape[1] if len(out_shape) > 1 else 1)
        sp_in, sp_out = _per_channel(in_shape, call.in_layout), _per_channel(out_shape, call.out_layout)
        spec = graph.layers.get(call.name)
        if call.op:  # a module's functional layer: counted like the torch layer it computes
            weight = getattr(module, spec.tensor("weight"))
            if call.op == "conv2d":
                k = math.prod(weight.shape[2:])
                if spec.kind == "conv":
                    terms.add(sp_out * k, lf_in, lf_out)
                else:  # depthwise or grouped: weight.shape[1] inputs per output
                    terms.add(sp_out * k * weight.shape[1], lf_out)
            elif call.op == "linear":
                terms.add(math.prod(out_shape[:-1]), lf_in, lf_out)
            elif call.op == "batch_norm":
                terms.add(sp_in * 4, lf_in)  # the rule requires a weight: affine
            elif call.op == "layer_norm":  # over the channels (thop: 2·numel, twice that when affine)
                terms.add(sp_in * 4, lf_in)
            # group_norm: thop has no rule for GroupNorm, it counts nothing
            return
        if isinstance(module, nn.Conv2d):
            k = math.prod(module.kernel_size)
            if spec is not None and spec.kind == "conv":
                terms.add(sp_out * k, lf_in, lf_out)
            elif spec is not None and _narrowing(spec, graph):  # width/groups inputs per output, groups fixed
                terms.add(sp_out * k / module.groups, lf_out, lf_out)
            elif spec is not None and kernel is not None:  # an elastic depthwise conv: k·k is its kernel column
                terms.add(sp_out * (module.in_channels // module.groups), lf_out, [(kernel, 1.0)])
            elif spec is not None and spec.kind in ("dwconv", "gconv"):  # in_channels/groups inputs per output
                terms.add(sp_out * k * (module.in_channels // module.groups), lf_out)
            else:
                terms.add(float(math.prod(out_shape) * (in_shape[1] // module.groups) * k), [(CONST, 1.0)])
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            terms.add(sp_in * (4 if module.affine else 2), lf_in)
        elif isinstance(module, (nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)):
            affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
            terms.add(float(math.prod(in_shape) * (4 if affine else 2)), [(CONST, 1.0)])
        elif isinstance(module, nn.Linear):
            terms.add(math.prod(out_shape[:-1]), lf_in, lf_out)
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            kernel = math.prod(a / b for a, b in zip(in_shape[2:], out_shape[2:]))
            terms.add(sp_out * (kernel + 1), lf_out)
        elif isinstance(module, nn.AvgPool2d):
            terms.add(sp_out, lf_out)
        elif isinstance(module, (nn.Upsample,)):
            factor = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259}.get(module.mode, 0)
            terms.add(sp_out * factor, lf_out)
        elif isinstance(module, nn.PReLU) and not module.training:
            terms.add(sp_in, lf_in)
        elif isinstance(module, nn.Softmax):
            n = in_shape[module.dim]
            terms.add(float(math.prod(in_shape) // n * (3 * n - 1)), [(CONST, 1.0)])

    @staticmethod
    def _params_of(spec, module: nn.Module, terms: _Terms, graph: ChannelGraph) -> None:
        lf_out = _linear_form(spec.out_layout, 0)
        if spec.op:  # a module's functional layer: its parameters by role
            weight = getattr(module, spec.tensor("weight"))
            per = math.prod(weight.shape[2:]) if spec.kind in ("conv", "dwconv", "gconv") else 1
            per *= weight.shape[1] if spec.kind in ("dwconv", "gconv") else 1
            if spec.kind in ("conv", "linear"):
                terms.add(float(per), _linear_form(spec.in_layout, 0), lf_out)
            else:
                terms.add(float(per), lf_out)
            if spec.tensor("bias") is not None and getattr(module, spec.tensor("bias")) is not None:
                terms.add(1.0, lf_out)
            return
        bias = getattr(module, "bias", None) is not None
        if spec.kind == "conv":
            terms.add(math.prod(module.kernel_size), _linear_form(spec.in_layout, 0), lf_out)
        elif _narrowing(spec, graph):
            terms.add(math.prod(module.kernel_size) / module.groups, lf_out, lf_out)
        elif getattr(terms, "kernel", None) is not None:  # an elastic depthwise conv: k·k weights per channel
            terms.add(float(module.in_channels // module.groups), lf_out, [(terms.kernel, 1.0)])
        elif spec.kind in ("dwconv", "gconv"):
            terms.add(math.prod(module.kernel_size) * (module.in_channels // module.groups), lf_out)
        elif spec.kind == "linear":
            terms.add(1.0, _linear_form(spec.in_layout, 0), lf_out)
        elif spec.kind == "bn":
            terms.add(2.0 if module.affine else 0.0, lf_out)
            return
        if bias:
            terms.add(1.0, lf_out)

    def kernel_column(self, layer: str) -> Optional[int]:
        """The width-matrix column of ``layer``'s elastic kernel (its area k·k), or None for a fixed kernel."""
        return self._kernel_col.get(layer)

    def block_column(self, layer: str) -> int:
        """The width-matrix column of the skippable block ``layer`` is in (CONST: in none)."""
        for b, name in enumerate(self.blocks):
            if layer.startswith(name + "."):
                return len(self.names) + b
        return CONST

    # -- evaluating ------------------------------------------------------------------------------------------
    def kept_blocks(self, w: np.ndarray) -> np.ndarray:
        """Skippable blocks each row of width matrix ``w`` keeps: its block columns summed (a groups-only matrix
        keeps them all). The kernel-area columns that follow them are not blocks."""
        start = len(self.names)
        return self.extended(w)[:, start:start + len(self.blocks)].sum(1)

    def _defaults(self) -> np.ndarray:
        """A full row at the checkpoint: its widths, every block kept, its kernels' areas, and the constant 1."""
        return np.concatenate([self.default, np.ones(len(self.blocks)), [float(k * k) for k in self.kernels.values()], [1.0]])

    def matrix(self, subnets: Sequence[Mapping[str, int]], dropped: Optional[Sequence[set[str]]] = None,
               kernels: Optional[Sequence[Mapping[str, int]]] = None) -> np.ndarray:
        """Width matrix ``[n_subnets, n_groups + n_blocks + n_kernels]`` (groups a subnet does not name keep their
        width; the block columns are 1, or 0 for the blocks ``dropped[r]`` names; the kernel columns are k·k of the
        kernels ``kernels[r]`` gives, the checkpoint's where it gives none)."""
        col = {n: i for i, n in enumerate(self.names)}
        m = np.tile(self._defaults()[:-1], (len(subnets), 1))
        for r, widths in enumerate(subnets):
            for k, w in widths.items():
                m[r, col[k]] = w
        for r, names in enumerate(dropped or ()):
            for b, name in enumerate(self.blocks):
                if name in names:
                    m[r, len(self.names) + b] = 0.0
        for r, sizes in enumerate(kernels or ()):
            for name, k in sizes.items():
                m[r, self._kernel_col[name]] = float(k * k)
        return m

    def extended(self, w: np.ndarray) -> np.ndarray:
        """Rows of ``w`` completed with the checkpoint's values for the columns it lacks, then the constant column
        (index -1): a groups-only matrix means every block kept at its checkpoint kernels."""
        w = np.atleast_2d(np.asarray(w, dtype=np.float64))
        rest = np.tile(self._defaults()[w.shape[1]:], (w.shape[0], 1))
        return np.concatenate([w, rest], axis=1)

    def _eval(self, arrays: tuple[np.ndarray, ...], w: np.ndarray) -> np.ndarray:
        coef, i, j, k = arrays
        ext = self.extended(w)
        return (ext[:, i] * ext[:, j] * ext[:, k]) @ coef

    def flops(self, w: np.ndarray) -> np.ndarray:
        """FLOPs (MACs) per sample for each row of a width matrix."""
        return self._eval(self._flops, np.atleast_2d(w))

    def params(self, w: np.ndarray) -> np.ndarray:
        return self._eval(self._params, np.atleast_2d(w))


def flops_attribution(cost: CostModel, w: np.ndarray, searchable: Sequence[bool]) -> np.ndarray:
    """Share of FLOPs owed to each group at widths ``w`` (last entry: the part no searchable group changes).

    A term ``coef·w[i]·w[j]`` of two searchable groups is split half and half, so shares add up to one.
    """
    coef, i, j, k = cost._flops
    ext = cost.extended(w)[0]
    values = coef * ext[i] * ext[j] * ext[k]
    free = np.concatenate([np.asarray(searchable, dtype=bool), np.zeros(len(ext) - len(cost.names), dtype=bool)])
    out = np.zeros(len(ext))
    for v, a, b in zip(values, i, j):
        fa, fb = free[a], free[b]
        if fa and fb and a != b:
            out[a] += v / 2
            out[b] += v / 2
        elif fa:
            out[a] += v
        elif fb:
            out[b] += v
        else:
            out[-1] += v
    return out / max(values.sum(), 1e-12)


def thop_custom_ops(model: nn.Module) -> dict:
    """``custom_ops`` for ``thop.profile``: thop counts modules by exact type, so a subclass of a torch layer
    (timm's ``BatchNormAct2d``, ``Conv2dSame``) is counted like its nearest base thop knows. For checking the
    analytic counts above against an independent counter (benchmarks and tests)."""
    from thop.profile import (
        register_hooks,  # thop is a dependency; imported on use, like the checks that need it
    )

    out = {}
    for m in model.modules():
        if type(m) not in register_hooks:
            base = next((b for b in type(m).__mro__[1:] if b in register_hooks), None)
            if base is not None:
                out[type(m)] = register_hooks[base]
    return out
