"""Channels away from dim 1: ``permute`` to channels-last, layers over the last dimension, per-channel scales.

ConvNeXt-style blocks move a feature map to NHWC (``x.permute(0, 2, 3, 1)``), apply ``LayerNorm`` or ``Linear``
over the last dimension, and permute back; a per-channel parameter shaped ``(C, 1, 1)`` (a layer scale) then
multiplies the result. :class:`ChannelAxes` keeps, for every tensor whose channels are not at dim 1, which
dimension they are at (a permute moves them; nothing else does), and holds the rules for ops on such tensors:
elementwise ops and ties keep the axis, ``Linear``/``LayerNorm`` over a last-dimension channel axis are layers
as usual (the generic rules ask :meth:`ChannelAxes.is_last`), reductions and flattens that leave the channel
axis whole move it. Anything else on a channels-last tensor is frozen and named, as everywhere.

A multiplication by a parameter of the module running it, shaped per channel along the other operand's channel
axis, is that module's *per-channel scale*: a ``bn``-kind layer (op ``mul``) whose parameter is sliced with its
channels, around the module's own forward (:mod:`slimnas.dynamic.functional`).

Invariant: a tracked tensor's layout has as many channels as its shape has along its channel axis. Frozen
outputs of ops not understood are declared at dim 1 (the default), as elsewhere.
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn

from .groups import _BINARY, _PARAM_OPS, LayerSpec, _nodes_in, _op_name, _shape, _where
from .layout import Layout

if TYPE_CHECKING:
    from .groups import _Analysis

# Modules and ops that act on each element alone: whatever dimension the channels are at, they keep it.
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.LeakyReLU,
    nn.Mish, nn.Softplus, nn.Hardtanh, nn.Identity, nn.Dropout,
)
_ELEMENTWISE = {
    "relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu", "mish",
    "softplus", "hardtanh", "dropout", "alpha_dropout", "stochastic_depth", "clamp", "clip", "contiguous", "clone",
    "float", "to", "type_as", "detach", "neg", "abs", "exp", "sqrt", "rsqrt", "square", "identity", "sin", "cos", "erf",
}
_SCALES = {"mul", "imul"}  # binary ops whose per-channel parameter operand becomes a layer
_LAYERS = {"linear", "layer_norm"}  # functional layers that may run over a last-dimension channel axis


class ChannelAxes:
    """The channel dimension of every tensor permuted away from dim 1, and the rules for ops on such tensors."""

    def __init__(self, analysis: _Analysis):
        self.a = analysis
        self.axis: dict[fx.Node, int] = {}  # only tensors whose channels are not at dim 1

    # -- queries the generic rules use ----------------------------------------------------------------------
    def of(self, node: Any) -> int:
        return self.axis.get(node, 1) if isinstance(node, fx.Node) else 1

    def is_last(self, node: Any) -> bool:
        """The tensor's channels are its last dimension (a 2-D ``(N, C)`` tensor, or one permuted to NHWC)."""
        shape = _shape(node)
        return shape is not None and len(shape) >= 2 and self.of(node) == len(shape) - 1

    def claims(self, node: fx.Node) -> bool:
        """Whether :meth:`visit` decides this node: a permute, an op on a tensor with channels away from dim 1, or a
        multiplication by a per-channel parameter."""
        if node.op not in ("call_module", "call_function", "call_method") or node.target is operator.getitem:
            return False
        if any(self.of(a) != 1 for a in _nodes_in((node.args, node.kwargs))):
            return True
        name = _op_name(node) if node.op != "call_module" else ""
        if name == "permute":
            return True
        return name in _SCALES and name in _BINARY and self._scale_operands(node) is not None

    # -- rules ----------------------------------------------------------------------------------------------
    def visit(self, node: fx.Node) -> Layout | None:
        a = self.a
        if _shape(node) is None:  # shape reads (x.shape, x.size()) and the like: no channels of their own
            return a.call_module(node) if node.op == "call_module" else a.call_op(node)
        if node.op == "call_module":
            return self._module(node)
        name = _op_name(node)
        x = node.args[0] if node.args else None
        if name == "permute":
            return self._permute(node)
        if name in _SCALES and self._scale_operands(node) is not None:
            return self._scale(node)
        if name in _LAYERS and node.op == "call_function":
            out = a.call_op(node)
            owner = self._weight_owner(node, name)
            if owner is not None and self._made(out, owner):
                self._set(node, len(_shape(node)) - 1 if name == "linear" else self.of(x))
            return out
        if name in _ELEMENTWISE and isinstance(x, fx.Node) and a.layout.get(x) is not None:
            self._set(node, self.of(x))
            return a.layout[x]
        if name in _BINARY:
            return self._binary(node)
        if name in ("mean", "sum", "amax", "amin"):
            return self._reduce(node)
        if name == "flatten":
            return self._flatten(node)
        return a.unsupported(node, f"op '{name}' on channels at dim {self.of(x)}")

    def _set(self, node: fx.Node, axis: int) -> None:
        if axis != 1:
            self.axis[node] = axis

    def _made(self, out: Any, owner: str) -> bool:
        """The generic rule accepted ``owner``'s layer (rather than freezing the call)."""
        spec = self.a.layers.get(owner)
        return spec is not None and out is spec.out_layout

    def _weight_owner(self, node: fx.Node, op: str) -> str | None:
        args = dict(zip(_PARAM_OPS[op], node.args))
        args.update(node.kwargs)
        w = args.get("weight")
        if isinstance(w, fx.Node) and w.op == "get_attr":
            return w.target.rpartition(".")[0]
        return None

    def _module(self, node: fx.Node) -> Layout | None:
        a = self.a
        m = a.gm.get_submodule(node.target)
        x = node.args[0] if node.args else None
        lin = a.layout.get(x) if isinstance(x, fx.Node) else None
        if (type(m) in (nn.Linear, nn.LayerNorm) or isinstance(m, _ELEMENTWISE_MODULES)) and len(node.args) == 1:
            out = a.call_module(node)
            if type(m) in (nn.Linear, nn.LayerNorm):  # the layer was made (not frozen): the channels are its own
                kept, axis = self._made(out, node.target), len(_shape(node)) - 1 if type(m) is nn.Linear else self.of(x)
            else:
                kept, axis = lin is not None and out is lin, self.of(x)
            if kept:
                self._set(node, axis)
            return out
        a.leaf_calls.add(node.target)
        out = a.unsupported(node, f"module {node.target} ({type(m).__name__}) on channels at dim {self.of(x)}")
        a.record(node, m, lin, out)
        return out

    def _permute(self, node: fx.Node) -> Layout | None:
        a = self.a
        x = node.args[0]
        shape = _shape(x)
        dims = node.args[1:] if len(node.args) > 1 else node.kwargs.get("dims", ())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        lin = a.layout.get(x) if isinstance(x, fx.Node) else None
        if shape is None or not all(isinstance(d, int) for d in dims) or len(dims) != len(shape):
            return a.unsupported(node, "permute by computed dimensions")
        dims = [d % len(shape) for d in dims]
        if sorted(dims) != list(range(len(shape))) or dims[0] != 0:
            return a.unsupported(node, "permute of the batch dimension")
        if not isinstance(lin, Layout) or lin.inner != 1:
            return a.unsupported(node, "permute of an untracked or flattened tensor")
        self._set(node, dims.index(self.of(x)))
        return lin

    def _binary(self, node: fx.Node) -> Layout | None:
        """Elementwise arithmetic: operands carrying the channels must agree on their axis and are tied."""
        a = self.a
        out_shape = _shape(node)
        axes = {self.of(t) for t in _nodes_in((node.args, node.kwargs)) if a.layout.get(t) is not None}
        if len(axes) != 1:
            return a.unsupported(node, f"{_op_name(node)} of tensors with channels at different dimensions")
        axis = axes.pop()
        full = []
        for t in _nodes_in((node.args, node.kwargs)):
            s = _shape(t)
            if s is None:
                continue
            if _extent(s, out_shape, axis) == 1 and out_shape[axis] != 1:
                continue  # broadcast along the channels: constrains nothing
            if len(s) != len(out_shape) or a.layout.get(t) is None or self.of(t) != axis:
                return a.unsupported(node, f"{_op_name(node)} with an operand broadcast along the channels")
            full.append(a.layout[t])
        if not full:
            return a.unsupported(node, f"{_op_name(node)} without a tracked operand")
        out = full[0]
        for other in full[1:]:
            out = a.tie(out, other, node)
        self._set(node, axis)
        return out

    def _reduce(self, node: fx.Node) -> Layout | None:
        a = self.a
        x = node.args[0]
        shape, out_shape = _shape(x), _shape(node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        lin = a.layout.get(x)
        if lin is None or dims is None:
            return a.unsupported(node, f"{_op_name(node)} over all dimensions")
        dims = {d % len(shape) for d in ([dims] if isinstance(dims, int) else dims)}
        axis = self.of(x)
        if axis in dims or 0 in dims:
            return a.unsupported(node, f"{_op_name(node)} over the channel dimension")
        keep = len(out_shape) == len(shape)
        new = axis if keep else axis - sum(1 for d in dims if d < axis)
        if len(out_shape) < 2:
            return a.unsupported(node, f"{_op_name(node)} to a vector")
        self._set(node, new)
        return lin

    def _flatten(self, node: fx.Node) -> Layout | None:
        """``flatten(start, end)``: channels outside the range move; channels first in it repeat what follows."""
        a = self.a
        x = node.args[0]
        shape = _shape(x)
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        lin = a.layout.get(x)
        start, end = start % len(shape), end % len(shape)
        axis = self.of(x)
        if lin is None or start == 0:
            return a.unsupported(node, "flatten across the batch dimension")
        if axis < start:
            new, out = axis, lin
        elif axis > end:
            new, out = axis - (end - start), lin
        elif axis == start:
            inner = 1
            for d in shape[start + 1:end + 1]:
                inner *= d
            new, out = start, Layout(lin.segs, lin.inner * inner)
        else:
            return a.unsupported(node, "flatten of the channels with the dimensions before them")
        self._set(node, new)
        return out

    # -- per-channel scales ---------------------------------------------------------------------------------
    def _scale_operands(self, node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
        """``(feature map, parameter)`` when ``node`` multiplies a tracked tensor by a per-channel parameter of
        ``C`` values: a get_attr tensor whose dim 0 lines up with the feature map's channel axis, every other dim
        of size 1, or a 1-D one reshaped to line up (timm's ``gamma.reshape(1, -1, 1, 1)``: -1 at the channels,
        so the reshape fits any width)."""
        if len(node.args) != 2 or node.kwargs:
            return None
        for x, p in (node.args, node.args[::-1]):
            if not (isinstance(x, fx.Node) and isinstance(p, fx.Node)):
                continue
            xs, ps, out = _shape(x), _shape(p), _shape(node)
            if xs is None or ps is None or xs != out or not isinstance(self.a.layout.get(x), Layout):
                continue
            axis = self.of(x)
            pos = axis - (len(xs) - len(ps))  # the parameter's dim broadcast along the channels
            if not (0 <= pos < len(ps) and ps[pos] == xs[axis] > 1 and all(d == 1 for i, d in enumerate(ps) if i != pos)):
                continue
            src = _parameter_of(p, pos)
            if src is not None:
                return x, src
        return None

    def _scale(self, node: fx.Node) -> Layout | None:
        a = self.a
        x, p = self._scale_operands(node)
        lin = a.layout[x]
        owner, _, attr = p.target.rpartition(".")
        stack = node.meta.get("nn_module_stack") or {}
        running = list(stack.values())[-1][0] if stack else ""
        where = _where(node)
        if running != owner:
            return a.unsupported(node, f"mul by a per-channel parameter of another module ({p.target}) at {where}")
        module = a.root.get_submodule(owner) if owner else a.root
        if not isinstance(getattr(module, attr, None), torch.Tensor) or not owner:
            return a.unsupported(node, f"mul by a per-channel tensor of the model itself at {where}")
        other = [n for n, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
                 if n != attr and t is not None and t.numel() > 1]
        prev = a.layers.get(owner)
        if other or owner in a.leaf_calls or (prev is not None and (prev.op != "mul" or prev.tensors[0][1] != attr)):
            return a.unsupported(node, f"mul by {p.target} in module {owner} ({type(module).__name__}), which holds "
                                       "other parameters or layers")
        if lin.inner != 1 or lin.size != _shape(x)[self.of(x)]:
            return a.unsupported(node, f"mul by {p.target} on flattened channels")
        a.functional_owners.add(owner)
        spec = LayerSpec(owner, "bn", None, lin, op="mul", tensors=(("weight", attr),))
        out = a.add_layer(spec, node, x).out_layout
        self._set(node, self.of(x))
        return out


def _extent(shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int) -> int:
    """How many channels an operand of ``shape`` spans along the output's channel ``axis`` (right-aligned
    broadcasting: 1 when the operand does not reach that dimension)."""
    pos = axis - (len(out_shape) - len(shape))
    return shape[pos] if pos >= 0 else 1


def _parameter_of(p: fx.Node, pos: int) -> fx.Node | None:
    """The get_attr node whose dim 0 the channels index, when ``p`` is one (``pos`` 0) or a ``reshape``/``view`` of a
    1-D one that puts its values at ``pos`` by a -1 (every other dim a literal 1)."""
    if p.op == "get_attr":
        return p if pos == 0 else None
    if p.op == "call_method" and p.target in ("reshape", "view") and not p.kwargs and len(p.args) >= 2:
        src = p.args[0]
        dims = p.args[1] if len(p.args) == 2 and isinstance(p.args[1], (tuple, list)) else p.args[1:]
        shape = _shape(src) if isinstance(src, fx.Node) else None
        if (isinstance(src, fx.Node) and src.op == "get_attr" and shape is not None and len(shape) == 1
                and list(dims) == [-1 if i == pos else 1 for i in range(len(dims))]):
            return src
    return None
