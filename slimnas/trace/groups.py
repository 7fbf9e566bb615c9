"""Channel groups: which channel dimensions of a traced network must keep one width.

Every tensor's channel dimension is described by a :class:`Layout` over *channel spaces*. Walking the fx
graph once, each op either passes its input's layout on (BatchNorm, activations, pooling, depthwise conv),
creates a new space (a conv or linear output), strings spaces together (``cat``), repeats them (``flatten``),
or ties two spaces into one (``add``/``mul`` of two feature maps: residuals and squeeze-and-excitation).
Spaces tied together form a channel group. Tensors permuted away from channels-first (ConvNeXt's NHWC blocks)
follow the rules of :mod:`.channels_last`. Anything the rules do not understand *freezes* the spaces it
touches (they keep their original width) and is reported by module name; it never stops the conversion.

Layers are understood at the op level: a functional ``F.conv2d``/``F.batch_norm``/``F.linear``/``F.layer_norm``/
``F.group_norm`` whose parameters are attributes of the module running it is that module's layer, exactly as
if the module were the plain torch layer. Wrappers (timm's ``BatchNormAct2d``, ``Conv2dSame``, a user's own
module with ``self.weight``) need no rule of their own; the supernet slices their parameters around their own
forward (:mod:`slimnas.dynamic.functional`). Tracing stays at the torch-function level (fx) rather than aten:
it keeps module boundaries (needed to slice and to report by module name), falls back per submodule when
something is not traceable, and the patterns aten would spell differently (split, cat, slicing) need the same
rules at either level.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import torch.fx as fx
from torch import nn

from .constants import AttrPatch, Site, resolve
from .layout import Layout, Seg, concat
from .parts import PartRules, boundaries
from .shuffle import Grouped, ShuffleRules, recipe_of, relabel

# Parameter-free modules that keep the channel layout of their (first) input.
_PRESERVING_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU,
    nn.LeakyReLU, nn.Mish, nn.Softplus, nn.Hardtanh, nn.Identity, nn.PReLU,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d,
    nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ReflectionPad2d,
    nn.ReplicationPad2d, nn.ConstantPad2d,
)
# Functions and tensor methods (by name, in-place "_" suffix stripped) that keep their first input's layout.
_UNARY = {
    "relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu",
    "mish", "softplus", "hardtanh", "dropout", "dropout2d", "alpha_dropout", "feature_alpha_dropout",
    "stochastic_depth", "clamp", "clip", "contiguous", "clone", "float", "to", "type_as", "detach", "neg",
    "abs", "exp", "sqrt", "rsqrt", "square", "adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d",
    "max_pool2d", "interpolate", "upsample", "identity", "sin", "cos", "erf",
}
_BINARY = {"add", "sub", "mul", "truediv", "div", "maximum", "minimum", "iadd", "isub", "imul", "itruediv"}
_REDUCE = {"mean", "sum", "amax", "amin"}
# Functional layers: the argument names of each (by position), and which of them are parameter tensors.
_PARAM_OPS = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "batch_norm": ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    "linear": ("input", "weight", "bias"),
    "layer_norm": ("input", "normalized_shape", "weight", "bias", "eps"),
    "group_norm": ("input", "num_groups", "weight", "bias", "eps"),
}
_PARAM_ROLES = ("weight", "bias", "running_mean", "running_var")
_RESHAPE = {"view", "reshape"}


@dataclass(frozen=True)
class LayerSpec:
    """A parameterised layer whose weights the supernet slices.

    ``kind`` is ``conv``, ``dwconv`` (depthwise: input and output are the same group), ``gconv`` (grouped with
    as many outputs as inputs: the same group too, its group count following the width), ``bn`` (any per-channel
    normalisation: BatchNorm, and LayerNorm/GroupNorm over the channels; or a per-channel scale, op ``mul``: see
    :mod:`.channels_last`) or ``linear``. Layouts name group
    indices (see :class:`ChannelGraph`). ``in_layout`` is ``None`` for ``bn``. ``op`` is the functional op the
    layer was found by (empty for a plain torch layer module), and ``tensors`` maps each role (``weight``,
    ``bias``, ``running_mean``, ``running_var``) to the module attribute playing it.
    """

    name: str
    kind: str
    in_layout: Optional[Layout]
    out_layout: Layout
    op: str = ""
    tensors: tuple[tuple[str, str], ...] = ()

    def tensor(self, role: str) -> Optional[str]:
        """The module attribute holding ``role`` (plain torch layers: the role's own name)."""
        if not self.op:
            return role
        return dict(self.tensors).get(role)


@dataclass(frozen=True)
class ModuleCall:
    """One call of a leaf module, with the shapes it saw: what the analytic cost model is built from."""

    name: str
    module_type: str
    in_layout: Optional[Layout]
    out_layout: Optional[Layout]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    node: str = ""  # the call's fx node, its input's node and the nodes that use its output (the data flow)
    input: str = ""
    users: tuple[str, ...] = ()
    op: str = ""  # the functional op (conv2d, batch_norm, ...) when the call is a module's functional layer


@dataclass
class ChannelGroup:
    """Tensor dimensions that must share one width. ``frozen`` says why the width is fixed, if it is."""

    name: str
    width: int
    members: list[tuple[str, str]] = field(default_factory=list)  # (layer name, role: out|in|dw|bn)
    frozen: Optional[str] = None
    multiple: int = 1  # widths must be multiples of this (the group width of a grouped conv), whole groups kept
    routed: bool = False  # its channels pass a channel shuffle: each layer's channels come from a routing plan
    narrow: bool = False  # feeds grouped convs that keep their group count: each conv group narrows (see convert)

    @property
    def searchable(self) -> bool:
        return self.frozen is None


@dataclass
class ChannelGraph:
    """The result of the analysis: groups, the layers each group slices, and what was frozen and why."""

    groups: list[ChannelGroup]
    layers: dict[str, LayerSpec]
    calls: list[ModuleCall]
    notes: list[str]
    # Module attributes that set a channel count baked into the graph (a split's sizes, a slice's bounds): the
    # supernet sets them at every subnet's widths (group indices, see :class:`slimnas.trace.constants.AttrPatch`).
    patches: list[AttrPatch] = field(default_factory=list)

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


class _Spaces:
    """Union-find over channel spaces, with a 'frozen because…' mark per root."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.frozen: dict[int, str] = {}

    def new(self, size: int, frozen: Optional[str] = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        sid = len(self.parent) - 1
        if frozen:
            self.frozen[sid] = frozen
        return sid

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        if rb in self.frozen and ra not in self.frozen:
            self.frozen[ra] = self.frozen.pop(rb)
        else:
            self.frozen.pop(rb, None)

    def freeze(self, s: int, why: str) -> None:
        self.frozen.setdefault(self.find(s), why)

    def frozen_reason(self, s: int) -> Optional[str]:
        return self.frozen.get(self.find(s))


def _shape(node: Any) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(d) for d in meta.shape)


def _op_name(node: fx.Node) -> str:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        qualname = list(stack.values())[-1][0]
        if qualname:
            return f"{qualname} ({node.name})"
    return node.name


def _nodes_in(arg: Any) -> Iterable[fx.Node]:
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            yield from _nodes_in(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from _nodes_in(a)


class _Analysis(PartRules, ShuffleRules):
    def __init__(self, gm: fx.GraphModule, notes: list[str], grouped: bool = False,
                 cuts: Optional[Mapping[str, frozenset[int]]] = None, may_cut: bool = True):
        self.gm = gm
        self.grouped = grouped
        self.root: nn.Module = gm.meta.get("root", gm)  # the traced model itself (owners of functional layers)
        self.sp = _Spaces()
        self.layout: dict[fx.Node, Any] = {}
        self.notes = list(notes)
        self.layers: dict[str, LayerSpec] = {}
        self.calls: list[ModuleCall] = []
        self.out_space: dict[str, Layout] = {}  # layer name -> the spaces its output creates (reused on re-calls)
        # Where a space starts: (its creator's key, offset in the creator's output). A split or slice inside a
        # space asks for a cut there (``wanted``); the next pass creates the space as parts (``cuts``).
        self.origin: dict[int, tuple[str, int]] = {}
        self.cuts = dict(cuts or {})
        self.may_cut = may_cut
        self.wanted: dict[str, set[int]] = {}
        self.sites: list[Site] = []  # channel counts baked into the graph that must follow the widths
        self.leaf_calls: set[str] = set()  # modules called as a whole (a functional layer must not own them)
        self.functional_owners: set[str] = set()  # modules whose layer was found inside their forward
        self.multiple: dict[int, int] = {}  # space -> the group width of a grouped conv it feeds
        self.producers: list[tuple[int, str]] = []  # (space, layer) in graph order, for naming groups
        self.routed_spaces: set[int] = set()  # spaces tied by a channel shuffle (see :mod:`.shuffle`)
        from .channels_last import ChannelAxes  # its rules use this module's helpers

        self.axes = ChannelAxes(self)  # where a permuted tensor's channels are, and the rules for such tensors

    # -- helpers -----------------------------------------------------------------------------------------
    def freeze(self, layout: Any, why: str) -> None:
        if isinstance(layout, tuple):  # the parts of a split
            for part in layout:
                self.freeze(part, why)
        elif isinstance(layout, Grouped):
            self.freeze(layout.layout, why)
        elif isinstance(layout, Layout):
            for s in layout.segs:
                self.sp.freeze(s.space, why)

    def spaces_of(self, key: str, size: int, frozen: Optional[str] = None) -> Layout:
        """New spaces for ``size`` channels created by ``key`` (a layer, or ``node:<name>``), in parts where cut."""
        edges = [0] + sorted(c for c in self.cuts.get(key, ()) if 0 < c < size) + [size]
        segs = []
        for a, b in zip(edges, edges[1:]):
            sid = self.sp.new(b - a, frozen)
            self.origin[sid] = (key, a)
            segs.append(Seg(sid, b - a))
        return Layout(tuple(segs))

    def cut(self, seg: Seg, at: int) -> bool:
        """Ask for ``seg``'s space to be created in two parts, ``at`` channels into it. True if the cut is new."""
        key, start = self.origin[seg.space]
        if not self.may_cut or start + at in self.cuts.get(key, ()):
            return False
        self.wanted.setdefault(key, set()).add(start + at)
        return True

    def frozen_new(self, node: fx.Node, why: str) -> Optional[Layout]:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        return self.spaces_of(f"node:{node.name}", shape[1], why)

    def unsupported(self, node: fx.Node, what: str) -> Optional[Layout]:
        why = f"{what} at {_where(node)}"
        for arg in _nodes_in((node.args, node.kwargs)):
            self.freeze(self.layout.get(arg), why)
        self.notes.append(f"{why}: channels it touches are frozen")
        return self.frozen_new(node, why)

    def tie(self, a: Layout, b: Layout, node: fx.Node) -> Layout:
        if a.route is not None or b.route is not None:  # shuffled channels: only the very same tensor twice
            if a.route == b.route and a.inner == b.inner:
                return a
            why = f"{_op_name(node)} of shuffled channels at {_where(node)}"
            self.freeze(a, why)
            self.freeze(b, why)
            self.notes.append(f"{why}: channels frozen")
            return a
        if a.inner == b.inner and len(a.segs) == len(b.segs) and all(
            x.size == y.size for x, y in zip(a.segs, b.segs)
        ):
            for x, y in zip(a.segs, b.segs):
                self.sp.union(x.space, y.space)
            return a
        if a.inner == b.inner and a.size == b.size:  # the same channels, cut differently: cut both alike
            edges = set(boundaries(a)) | set(boundaries(b))
            if self.align(a, edges) | self.align(b, edges):
                return a  # the next pass ties the parts
        why = f"{_op_name(node)} of differently composed channels at {_where(node)}"
        self.freeze(a, why)
        self.freeze(b, why)
        self.notes.append(f"{why}: channels frozen")
        return a

    # -- per-op rules -----------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            try:
                self.visit(node)
            except Exception as exc:  # a rule that trips on an unforeseen pattern: freeze it, never crash
                self.layout[node] = self.unsupported(node, f"{_op_name(node)} ({type(exc).__name__}: {exc})")

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.layout[node] = self.frozen_new(node, "model input")
        elif node.op == "get_attr":
            self.layout[node] = None
        elif self.axes.claims(node):
            if any(self._routed(self.layout.get(a)) for a in _nodes_in((node.args, node.kwargs))):
                self.layout[node] = self.unsupported(node, f"{_op_name(node)} of shuffled channels")
            else:
                self.layout[node] = self.axes.visit(node)
        elif node.op == "call_module":
            self.layout[node] = self.call_module(node)
        elif node.op in ("call_function", "call_method"):
            self.layout[node] = self.call_op(node)
        elif node.op == "output":
            for arg in _nodes_in(node.args):
                self.freeze(self.layout.get(arg), "model output")

    @staticmethod
    def _routed(layout: Any) -> bool:
        return isinstance(layout, Grouped) or (isinstance(layout, Layout) and layout.route is not None)

    def record(self, node: fx.Node, module: nn.Module, lin: Optional[Layout], lout: Optional[Layout]) -> None:
        x = node.args[0] if node.args else None
        in_shape = _shape(x) or ()
        out_shape = _shape(node) or ()
        self.calls.append(ModuleCall(node.target, type(module).__name__, lin, lout, in_shape, out_shape, node.name,
                                     x.name if isinstance(x, fx.Node) else "", tuple(u.name for u in node.users)))

    def add_layer(self, spec: LayerSpec, node: fx.Node, x: Optional[fx.Node] = None) -> LayerSpec:
        if spec.op:  # a functional layer: its call is recorded here, a module's in call_module
            out_layout = spec.out_layout
            self.calls.append(ModuleCall(spec.name, type(self.root.get_submodule(spec.name)).__name__, spec.in_layout or
                                         out_layout, out_layout, _shape(x) or (), _shape(node) or (), node.name,
                                         x.name if isinstance(x, fx.Node) else "", tuple(u.name for u in node.users),
                                         spec.op))
        prev = self.layers.get(spec.name)
        if prev is not None:  # a module called more than once: every call must agree
            if prev.in_layout is not None and spec.in_layout is not None:
                self.tie(prev.in_layout, spec.in_layout, node)
            self.tie(prev.out_layout, spec.out_layout, node)
            return prev
        self.layers[spec.name] = spec
        return spec

    def new_output(self, name: str, size: int) -> Layout:
        if name not in self.out_space:
            out = self.out_space[name] = self.spaces_of(name, size)
            offset = 0
            for seg in out.segs:  # a part of a layer's output is named by its channel range
                part = name if len(out.segs) == 1 else f"{name}[{offset}:{offset + seg.size}]"
                self.producers.append((seg.space, part))
                offset += seg.size
        return self.out_space[name]

    def call_module(self, node: fx.Node) -> Optional[Layout]:
        m = self.gm.get_submodule(node.target)
        x = node.args[0] if node.args else None
        lin = self.layout.get(x) if isinstance(x, fx.Node) else None
        self.leaf_calls.add(node.target)
        if isinstance(lin, Grouped):
            return self.unsupported(node, f"module {node.target} on channels viewed in groups")
        if node.target in self.functional_owners:
            return self.unsupported(node, f"module {node.target} called both whole and through a functional op")
        out = self._module_rule(node, m, lin)
        if not (self.calls and self.calls[-1].node == node.name):  # a layer found by its op recorded its call
            self.record(node, m, lin, out)
        return out

    def _module_rule(self, node: fx.Node, m: nn.Module, lin: Optional[Layout]) -> Optional[Layout]:
        name = node.target
        in_shape = _shape(node.args[0]) if node.args else None
        if isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d:
            if lin is None or len(node.args) != 1 or node.kwargs:
                return self.unsupported(node, f"conv {name} on an untracked input")
            if m.groups == 1:
                out = self.new_output(name, m.out_channels)
                return self.add_layer(LayerSpec(name, "conv", lin, out), node).out_layout
            if m.groups == m.in_channels == m.out_channels and lin.inner == 1:  # per channel: any segments
                return self.add_layer(LayerSpec(name, "dwconv", lin, lin), node).out_layout
            if (self.grouped and m.in_channels == m.out_channels and len(lin.segs) == 1 and lin.inner == 1
                    and lin.route is None):
                # the group count follows the width; each group keeps its in_channels/groups channels
                self.multiple[lin.segs[0].space] = m.in_channels // m.groups
                return self.add_layer(LayerSpec(name, "gconv", lin, lin), node).out_layout
            return self.unsupported(node, f"grouped conv {name} (groups={m.groups})")
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m) in (nn.BatchNorm2d, nn.BatchNorm1d):
            if lin is None or in_shape is None or len(in_shape) not in (2, 4) or not m.affine:
                return self.unsupported(node, f"batchnorm {name}")
            return self.add_layer(LayerSpec(name, "bn", None, lin), node).out_layout
        if type(m) is nn.Linear:
            if lin is None or in_shape is None or not self.axes.is_last(node.args[0]):
                return self.unsupported(node, f"linear {name} on a tensor of rank {len(in_shape or ())}")
            out = self.new_output(name, m.out_features)
            return self.add_layer(LayerSpec(name, "linear", lin, out), node).out_layout
        if type(m) in (nn.LayerNorm, nn.GroupNorm):  # understood as the op their forward calls
            op = "layer_norm" if type(m) is nn.LayerNorm else "group_norm"
            affine = m.elementwise_affine if op == "layer_norm" else m.affine
            if lin is None or in_shape is None or not affine or m.bias is None:
                return self.unsupported(node, f"{op} {name} without affine parameters or on an untracked input")
            args = {"normalized_shape": m.normalized_shape} if op == "layer_norm" else {"num_groups": m.num_groups}
            spec = dict(op=op, tensors=(("weight", "weight"), ("bias", "bias")))
            return self._norm_layer(node, op, name, m, spec, args, node.args[0], lin)
        if isinstance(m, _PRESERVING_MODULES) and all(p.numel() <= 1 for p in m.parameters()):
            return lin if lin is not None else self.frozen_new(node, f"{name} on an untracked input")
        if isinstance(m, nn.Flatten):
            return self._flatten(node, lin, m.start_dim, m.end_dim)
        return self.unsupported(node, f"module {name} ({type(m).__name__}) is not understood")

    def _flatten(self, node: fx.Node, lin: Optional[Layout], start: int, end: int) -> Optional[Layout]:
        shape = _shape(node.args[0])
        if lin is None or shape is None:
            return self.unsupported(node, "flatten of an untracked tensor")
        rank = len(shape)
        start = start % rank
        end = end % rank
        if start >= 2 or start == end:
            return lin
        if lin.route is not None:
            return self.unsupported(node, "flatten of shuffled channels")
        if start == 1 and end == rank - 1:
            return Layout(lin.segs, lin.inner * math.prod(shape[2:]))
        return self.unsupported(node, "flatten across the batch dimension")

    def call_op(self, node: fx.Node) -> Any:
        name = _op_name(node)
        tensors = [a for a in _nodes_in((node.args, node.kwargs)) if _shape(a) is not None]
        out_shape = _shape(node)
        if node.target is operator.getitem:
            return self._getitem(node)
        if out_shape is None:
            if isinstance(node.meta.get("tensor_meta"), (tuple, list)) and tensors:
                if name in ("split", "chunk"):
                    return self._split(node, name)
                self.unsupported(node, f"op '{name}' with several outputs")
            return None
        if not tensors:
            return self.frozen_new(node, f"{name} at {_where(node)}") if out_shape is not None else None
        if name in _PARAM_OPS and node.op == "call_function":
            return self._param_op(node, name)
        if all(self._is_attr(t) for t in tensors):
            return None  # arithmetic on parameters or buffers alone (a BatchNorm's batch counter): no channels
        first = node.args[0] if node.args else tensors[0]
        lin = self.layout.get(first) if isinstance(first, fx.Node) else None
        if isinstance(lin, Grouped):  # inside a channel shuffle (see .shuffle)
            if name == "contiguous":
                return lin
            if name == "transpose":
                return self.shuffle_transpose(node, lin)
            if name in _RESHAPE:
                return self.shuffle_back(node, lin)
            return self.unsupported(node, f"{name} of channels viewed in groups")
        if name in _UNARY:
            return lin if lin is not None else self.unsupported(node, f"{name} of an untracked tensor")
        if name in _BINARY:
            return self._binary(node, tensors)
        if name == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self._flatten(node, lin, start, end)
        if name in _REDUCE:
            return self._reduce(node, lin)
        if name in _RESHAPE:
            return self._reshape(node, lin)
        if name in ("cat", "concat"):
            return self._cat(node)
        if name == "pad":
            return self._pad(node, lin)
        return self.unsupported(node, f"op '{name}'")

    def _is_attr(self, node: fx.Node) -> bool:
        """A parameter or buffer, or a value computed from them alone (no feature map)."""
        return node.op == "get_attr" or (node.op != "placeholder" and self.layout.get(node, 0) is None
                                         and all(self._is_attr(a) for a in _nodes_in((node.args, node.kwargs))))

    def _pad(self, node: fx.Node, lin: Optional[Layout]) -> Optional[Layout]:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        shape = _shape(node.args[0])
        if lin is None or shape is None or not isinstance(pad, (tuple, list)) or len(pad) > 2 * (len(shape) - 2):
            return self.unsupported(node, "pad of the channel or batch dimension")
        return lin  # pads spatial dimensions only

    # -- functional layers ------------------------------------------------------------------------------
    def _param_op(self, node: fx.Node, op: str) -> Optional[Layout]:
        """``F.conv2d``/``F.batch_norm``/``F.linear``/``F.layer_norm``/``F.group_norm`` on a module's own parameters."""
        names = _PARAM_OPS[op]
        args = dict(zip(names, node.args))
        args.update(node.kwargs)
        x = args.get("input")
        lin = self.layout.get(x) if isinstance(x, fx.Node) else None
        in_shape, out_shape = _shape(x), _shape(node)
        where = _where(node)
        owners, tensors = set(), []
        for role in _PARAM_ROLES:
            a = args.get(role)
            if a is None:
                continue
            if not (isinstance(a, fx.Node) and a.op == "get_attr"):
                return self.unsupported(node, f"{op} on a computed {role.replace('_', ' ')} at {where}")
            owner, _, attr = a.target.rpartition(".")
            owners.add(owner)
            tensors.append((role, attr))
        stack = node.meta.get("nn_module_stack") or {}
        running = list(stack.values())[-1][0] if stack else None
        if len(owners) != 1 or running not in owners or "weight" not in dict(tensors):
            return self.unsupported(node, f"{op} whose parameters are not its own module's at {where}")
        owner = owners.pop()
        module = self.root.get_submodule(owner)
        used = {attr for _, attr in tensors}
        other = [n for n, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
                 if n not in used and t is not None and t.numel() > 1]
        prev = self.layers.get(owner)
        if other or owner in self.leaf_calls or (prev is not None and prev.op != op):
            return self.unsupported(node, f"{op} in module {owner} ({type(module).__name__}), which holds other "
                                          "parameters or layers")
        if lin is None or in_shape is None or out_shape is None:
            return self.unsupported(node, f"{op} {owner} on an untracked input")
        weight = getattr(module, dict(tensors)["weight"])
        spec = dict(op=op, tensors=tuple(tensors))
        self.functional_owners.add(owner)
        if op == "conv2d":
            groups = args.get("groups", 1)
            if weight.dim() != 4 or not isinstance(groups, int) or len(in_shape) != 4:
                return self.unsupported(node, f"conv2d {owner} with groups or weights the rules do not follow")
            if groups == 1:
                out = self.new_output(owner, weight.shape[0])
                return self.add_layer(LayerSpec(owner, "conv", lin, out, **spec), node, x).out_layout
            # a depthwise conv's group count must follow its width: only a Conv2d's own ``groups`` can
            if (groups == in_shape[1] == weight.shape[0] and weight.shape[1] == 1 and isinstance(module, nn.Conv2d)
                    and module.groups == groups and lin.inner == 1):
                return self.add_layer(LayerSpec(owner, "dwconv", lin, lin, **spec), node, x).out_layout
            if (self.grouped and weight.shape[0] == in_shape[1] == groups * weight.shape[1]
                    and isinstance(module, nn.Conv2d) and module.groups == groups and len(lin.segs) == 1
                    and lin.inner == 1 and lin.route is None):
                self.multiple[lin.segs[0].space] = int(weight.shape[1])
                return self.add_layer(LayerSpec(owner, "gconv", lin, lin, **spec), node, x).out_layout
            return self.unsupported(node, f"grouped conv {owner} (groups={groups})")
        if op == "linear":
            if not self.axes.is_last(x) or weight.dim() != 2:
                return self.unsupported(node, f"linear {owner} on a tensor of rank {len(in_shape)}")
            out = self.new_output(owner, weight.shape[0])
            return self.add_layer(LayerSpec(owner, "linear", lin, out, **spec), node, x).out_layout
        return self._norm_layer(node, op, owner, module, spec, args, x, lin)

    def _norm_layer(self, node: fx.Node, op: str, owner: str, module: nn.Module, spec: dict, args: dict,
                    x: fx.Node, lin: Layout) -> Optional[Layout]:
        """A normalisation with per-channel parameters over the channel dimension: the layout passes through."""
        in_shape = _shape(x)
        weight = getattr(module, dict(spec["tensors"])["weight"])
        if op == "batch_norm" and len(in_shape) not in (2, 4):
            return self.unsupported(node, f"batch_norm {owner} on a tensor of rank {len(in_shape)}")
        if op == "layer_norm" and not (self.axes.is_last(x) and tuple(args.get("normalized_shape", ())) == in_shape[-1:]
                                       and hasattr(module, "normalized_shape")):
            return self.unsupported(node, f"layer_norm {owner} over other dimensions than the channels")
        if op == "group_norm" and not (args.get("num_groups") == 1 and hasattr(module, "num_channels")):
            return self.unsupported(node, f"group_norm {owner} with {args.get('num_groups')} groups")
        if weight.dim() != 1 or weight.shape[0] != in_shape[self.axes.of(x)]:
            return self.unsupported(node, f"{op} {owner} whose weight is not per channel")
        return self.add_layer(LayerSpec(owner, "bn", None, lin, **spec), node, x).out_layout

    def _getitem(self, node: fx.Node) -> Any:
        src = node.args[0]
        got = self.layout.get(src)
        if isinstance(got, tuple):
            return got[node.args[1]]
        if _shape(node) is None:
            return None
        if isinstance(got, Layout):
            return self._slice(node, got)
        if isinstance(got, Grouped):
            return self.unsupported(node, "indexing channels viewed in groups")
        return self.frozen_new(node, f"output of {_where(src)}")

    def _binary(self, node: fx.Node, tensors: list[fx.Node]) -> Optional[Layout]:
        out_shape = _shape(node)
        full = [t for t in tensors if (_shape(t) or ())[1:2] == out_shape[1:2] and len(_shape(t)) == len(out_shape)]
        # Operands that broadcast along channels (channel size 1, or a lower rank) do not constrain widths,
        # unless they carry a tensor of parameters shaped like the channels.
        others = [t for t in tensors if t not in full]
        for t in others:
            s = _shape(t)
            if len(s) == len(out_shape) and s[1] != 1 and len(out_shape) >= 2:
                return self.unsupported(node, f"{_op_name(node)} with a broadcast channel operand")
            if len(s) < len(out_shape) and len(s) >= len(out_shape) - 1 and s and s[0] == out_shape[1] and s[0] > 1:
                return self.unsupported(node, f"{_op_name(node)} with a per-channel constant")
        layouts = [self.layout.get(t) for t in full]
        if any(l is None for l in layouts):
            return self.unsupported(node, f"{_op_name(node)} with an untracked operand")
        if not layouts:
            return self.frozen_new(node, f"{_op_name(node)} at {_where(node)}")
        out = layouts[0]
        for other in layouts[1:]:
            out = self.tie(out, other, node)
        return out

    def _reduce(self, node: fx.Node, lin: Optional[Layout]) -> Optional[Layout]:
        shape = _shape(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if lin is None or shape is None or dims is None:
            return self.unsupported(node, f"{_op_name(node)} over all dimensions")
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = [d % len(shape) for d in dims]
        if 0 in dims or 1 in dims or len(_shape(node) or ()) < 2:
            return self.unsupported(node, f"{_op_name(node)} over the channel dimension")
        return lin

    def _reshape(self, node: fx.Node, lin: Optional[Layout]) -> Optional[Layout]:
        shape_in = _shape(node.args[0])
        shape_out = _shape(node)
        if (shape_in is not None and shape_out is not None and len(shape_out) == len(shape_in) + 1 >= 4
                and shape_out[0] == shape_in[0] and shape_out[1] * shape_out[2] == shape_in[1]
                and shape_out[3:] == shape_in[2:]):  # the channels viewed in groups: a shuffle's first step
            if not isinstance(lin, Layout):
                return self.unsupported(node, "a grouped view of an untracked tensor")
            return self.shuffle_view(node, lin, shape_out[1])
        literal = [a for a in node.args[1:] if isinstance(a, int)]
        literal += [a for a in node.args[1:] if isinstance(a, (tuple, list)) for a in a if isinstance(a, int)]
        if lin is None or shape_in is None or shape_out is None or any(a != -1 for a in literal):
            return self.unsupported(node, f"{_op_name(node)} to a fixed shape")
        if shape_out[0] != shape_in[0] or len(shape_out) < 2:
            return self.unsupported(node, f"{_op_name(node)} across the batch dimension")
        if len(shape_out) == 2:
            if lin.route is not None:
                return self.unsupported(node, f"{_op_name(node)} of shuffled channels")
            return Layout(lin.segs, lin.inner * math.prod(shape_in[2:]))
        if shape_out[:2] == shape_in[:2]:
            return lin
        return self.unsupported(node, f"{_op_name(node)} across the channel dimension")

    def _cat(self, node: fx.Node) -> Optional[Layout]:
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        layouts = [self.layout.get(p) for p in parts]
        shape = _shape(node)
        if any(l is None for l in layouts) or shape is None:
            return self.unsupported(node, "cat of untracked tensors")
        dim = dim % len(shape)
        if dim == 1 and any(self._routed(lay) for lay in layouts):
            if any(not isinstance(lay, Layout) or lay.inner != 1 for lay in layouts):
                return self.unsupported(node, "cat of shuffled and flattened or grouped channels")
            return self.routed_cat(node, layouts)
        if dim == 1:
            out = concat(layouts)
            return out if out is not None else self.unsupported(node, "cat of flattened tensors")
        out = layouts[0]
        for other in layouts[1:]:
            out = self.tie(out, other, node)
        return out

    # -- result -----------------------------------------------------------------------------------------
    def settle_constants(self) -> list[AttrPatch]:
        """Find the module attribute behind every channel count baked into the graph that a subnet changes;
        freeze the channels of those no attribute explains."""
        sites = [s for s in self.sites if any(self.sp.frozen_reason(sp) is None for sp in s.spaces)]
        patches, failed = resolve(self.gm, sites)
        for site, why in failed:
            where = f"{site.module or 'the model'} ({site.node})"
            text = f"channel count {site.value} at {where}: {why}"
            for space in site.spaces:
                self.sp.freeze(space, text)
            self.notes.append(f"{text}; channels frozen")
        return patches

    def _settle_routes(self) -> set[int]:
        """The roots of the groups a channel shuffle routes. A layer layout that strings such a group together
        with another one (a cat of shuffled and other channels feeding a layer) freezes both: a routing plan
        covers one group."""
        sp = self.sp
        roots = {sp.find(s) for s in self.routed_spaces}
        for spec in self.layers.values():
            for layout in (spec.in_layout, spec.out_layout):
                if layout is None:
                    continue
                mine = {sp.find(s.space) for s in layout.segs}
                if mine & roots and len(mine) > 1:
                    why = f"layer {spec.name} sees shuffled channels beside others"
                    for r in mine:
                        sp.freeze(r, why)
                    self.notes.append(f"{why}: channels frozen")
        return roots

    def _tag(self, space: int) -> str:
        key, start = self.origin[space]
        return f"{key}@{start}"

    def result(self) -> ChannelGraph:
        patches = self.settle_constants()
        sp = self.sp
        routed_roots = self._settle_routes()
        used_roots: list[int] = []

        def note_root(s: int) -> None:
            r = sp.find(s)
            if r not in used_roots:
                used_roots.append(r)

        for spec in self.layers.values():
            for layout in (spec.in_layout, spec.out_layout):
                if layout is not None:
                    for seg in layout.segs:
                        note_root(seg.space)
        # Name each group after the first layer producing it; groups nobody produces are named by role.
        name_of: dict[int, str] = {}
        for space, layer in self.producers:
            name_of.setdefault(sp.find(space), layer)
        index: dict[int, int] = {}
        groups: list[ChannelGroup] = []
        for r in sorted(used_roots, key=lambda r: (r not in name_of, list(name_of).index(r) if r in name_of else r)):
            name = name_of.get(r) or ("input" if sp.frozen_reason(r) == "model input" else f"fixed.{r}")
            if name == "input" and any(g.name == name for g in groups):  # the input in parts (a split of it)
                name = f"input.{r}"
            index[r] = len(groups)
            groups.append(ChannelGroup(name, sp.size[r], frozen=sp.frozen_reason(r), routed=r in routed_roots))

        def remap(layout: Optional[Layout]) -> Optional[Layout]:
            if layout is None:
                return None
            segs = tuple(Seg(index[sp.find(s.space)], s.size) for s in layout.segs)
            route = None
            if layout.route is not None or any(sp.find(s.space) in routed_roots for s in layout.segs):
                route = relabel(recipe_of(layout), self._tag)  # every layout of a routed group: by its route
            return Layout(segs, layout.inner, route)

        layers: dict[str, LayerSpec] = {}
        for spec in self.layers.values():
            new = dataclasses.replace(spec, in_layout=remap(spec.in_layout), out_layout=remap(spec.out_layout))
            layers[spec.name] = new
            if new.kind in ("conv", "linear"):
                for seg in new.in_layout.segs:
                    groups[seg.space].members.append((spec.name, "in"))
                for gi in dict.fromkeys(seg.space for seg in new.out_layout.segs):  # its parts, once each
                    groups[gi].members.append((spec.name, "out"))
            else:
                role = "dw" if new.kind in ("dwconv", "gconv") else "bn"
                for seg in new.out_layout.segs:
                    groups[seg.space].members.append((spec.name, role))
        for space, q in self.multiple.items():
            g = groups[index[sp.find(space)]]
            g.multiple = math.lcm(g.multiple, q)
        for g in groups:
            if g.searchable and not any(role in ("out", "dw") for _, role in g.members):
                g.frozen = "no layer produces these channels"

        def remap_known(layout: Any) -> Optional[Layout]:
            if not isinstance(layout, Layout):
                return None
            if any(sp.find(s.space) not in index for s in layout.segs):
                return None
            return remap(layout)

        calls = [
            dataclasses.replace(c, in_layout=remap_known(c.in_layout), out_layout=remap_known(c.out_layout))
            for c in self.calls
        ]
        patches = [dataclasses.replace(p, spaces=tuple(index[sp.find(s)] for s in p.spaces)) for p in patches
                   if all(sp.find(s) in index for s in p.spaces)]
        return ChannelGraph(groups, layers, calls, self.notes, patches)


_MAX_PASSES = 64


def analyse(gm: fx.GraphModule, notes: Optional[list[str]] = None, grouped: bool = False) -> ChannelGraph:
    """Find the channel groups of a traced, shape-annotated graph module (see :func:`slimnas.trace.trace`).

    ``grouped`` makes grouped convs with as many outputs as inputs searchable (whole conv groups); without it
    they are frozen and named, as before.

    A split or slice inside a channel space needs that space cut where it is created (a layer's output): each
    pass records the cuts it needed, keyed by the creating layer and the offset, and the next pass creates those
    spaces in parts, until a pass needs no new cut. Ties between differently cut layouts ask for the missing
    cuts on either side, so a cut spreads along residuals. Models without splits take one pass, as before.
    """
    cuts: dict[str, frozenset[int]] = {}
    for _ in range(_MAX_PASSES):
        analysis = _Analysis(gm, notes or [], grouped, cuts)
        analysis.run()
        if not analysis.wanted:
            return analysis.result()
        for key, more in analysis.wanted.items():
            cuts[key] = frozenset(cuts.get(key, frozenset()) | more)
    analysis = _Analysis(gm, notes or [], grouped, cuts, may_cut=False)  # did not settle: what is left freezes
    analysis.run()
    analysis.notes.append(f"channel cuts did not settle in {_MAX_PASSES} passes: splits still misaligned are frozen")
    return analysis.result()
