"""Latency units: the kernels a backend really runs, found in a traced network.

A unit is one searchable conv (or linear) layer together with the BatchNorm and activation that follow it:
exported together, a runtime fuses them into one kernel. Its cost depends on the layer's fixed signature
(kind, kernel, stride, input size, activation) and on the (in width, out width) pair a subnet gives it. Units of
different layers with the same signature share table entries. Units are read off the traced graph's data flow
(what consumes what), one per call: a module called twice costs twice. Everything a unit does not cover (residual adds,
pooling, frozen layers, the session call itself) is the network's *fixed part*.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import SlimnasError

if TYPE_CHECKING:  # the timing worker imports this module and must not pay for importing torch
    from torch import nn

    from ..trace import Layout, ModuleCall

# Activation modules a unit absorbs, and the ONNX ops torch exports for them.
ACTIVATIONS = {
    "ReLU": "relu", "ReLU6": "relu6", "Hardswish": "hardswish", "SiLU": "silu", "Sigmoid": "sigmoid",
    "Hardsigmoid": "hardsigmoid", "Hardtanh": "relu6",
}
MAX_PAIRS = 4096  # a layer whose (in, out) candidate set is larger than this is refused (concat explosions)
PASS_THROUGH = ("Identity", "Dropout")  # eval-mode no-ops between a BN and its activation (timm's BatchNormAct2d.drop)
_META = re.compile(r"(getattr|size|dim)(_\d+)?")  # fx nodes that only read a tensor's shape (not a consumer of its data)


@dataclass(frozen=True)
class Signature:
    """What fixes a unit's cost apart from its widths; ``key`` names it in the table."""

    kind: str  # conv | dwconv | linear
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, ...]  # (h, w), or (top, left, bottom, right) when uneven (a layer that pads itself "same")
    dilation: tuple[int, int]
    bias: bool
    bn: bool
    act: str  # "" when none
    hw: tuple[int, int]  # input spatial size (linear: 1, 1 on a vector; the pixels it runs on over a channels-last map)
    group_width: int = 0  # input channels per group of a grouped conv whose group count follows the width; 0: dense
    group_count: int = 0  # the group count of a grouped conv that keeps it (each group narrows); 0: none

    @property
    def key(self) -> str:
        k, s, d = (f"{a}x{b}" for a, b in (self.kernel, self.stride, self.dilation))
        p = "x".join(map(str, self.padding))
        gw = f"-gw{self.group_width}" if self.group_width else f"-g{self.group_count}" if self.group_count else ""
        return (f"{self.kind}{gw}-k{k}-s{s}-p{p}-d{d}-{'b' if self.bias else 'nb'}-{'bn' if self.bn else 'nobn'}"
                f"-{self.act or 'id'}-{self.hw[0]}x{self.hw[1]}")

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """ONNX ``pads``: (top, left, bottom, right)."""
        return tuple(self.padding) * 2 if len(self.padding) == 2 else tuple(self.padding)  # type: ignore[return-value]

    @property
    def diagonal(self) -> bool:
        """Its in width always equals its out width (depthwise, or grouped with the group count following)."""
        return self.kind == "dwconv" or self.group_width > 0 or self.group_count > 0

    def groups(self, cin: int) -> int:
        if self.group_count:
            return self.group_count
        return cin if self.kind == "dwconv" else cin // self.group_width if self.group_width else 1

    def out_hw(self) -> tuple[int, int]:
        p = self.pads
        return tuple(  # type: ignore[return-value]
            (h + p0 + p1 - d * (k - 1) - 1) // s + 1
            for h, k, s, p0, p1, d in zip(self.hw, self.kernel, self.stride, p[:2], p[2:], self.dilation)
        )


@dataclass(frozen=True)
class Unit:
    """One layer of the network as a latency unit: its signature and how its widths follow the groups."""

    layer: str
    sig: Signature
    in_layout: Layout
    out_layout: Layout
    absorbed: tuple[str, ...]  # module calls fused into it (BN, activation)
    block: int = -1  # the width-matrix column of the skippable block it is in (-1: none): a dropped block's units cost 0
    # An elastic kernel's unit is one per kernel size: (its kernel column, this size's area k·k); it runs where the
    # subnet gives the conv this size. (-1, 0): a fixed kernel.
    kernel: tuple[int, int] = (-1, 0)

    def widths(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(in width, out width) per row of a width matrix ``w`` [n, n_groups (+ n_blocks + n_kernels)]."""
        return _layout_width(self.in_layout, w), _layout_width(self.out_layout, w)

    def kept(self, w: np.ndarray) -> np.ndarray:
        """1 per row of ``w`` where the unit runs, 0 where its block is dropped or its conv has another kernel size."""
        on = w[:, self.block] if self.block >= 0 else np.ones(len(w))
        if self.kernel[0] >= 0:
            on = on * (w[:, self.kernel[0]] == self.kernel[1])
        return on


def _layout_width(layout: Layout, w: np.ndarray) -> np.ndarray:
    return sum(w[:, s.space] for s in layout.segs) * layout.inner


def _fused_next(call, by_node: dict, types) -> Optional["ModuleCall"]:
    """The module call a runtime fuses into ``call``'s kernel: the only user of its output, if that user is a
    module of ``types`` applied to that output (an activation after a residual add is not)."""
    users = [u for u in call.users if not _META.fullmatch(u)]  # x.shape reads inside a BatchNormAct2d don't count
    if len(users) != 1:
        return None
    nxt = by_node.get(users[0])
    return nxt if nxt is not None and types(nxt) and nxt.input == call.node else None


def _real_inputs(supernet, calls) -> dict[str, list[tuple[int, ...]]]:
    """The input shapes each conv module really receives, per call, where its class may pad before its conv op
    (timm's ``Conv2dSame``): one forward pass with pre-hooks. A call's ``in_shape`` is what the op saw."""
    import torch
    from torch import nn

    mods = {c.name: supernet.model.get_submodule(c.name) for c in calls}
    names = {n for n, m in mods.items() if isinstance(m, nn.Conv2d) and getattr(m, "user_class", nn.Conv2d) is not nn.Conv2d}
    if not names:
        return {}
    seen: dict[str, list[tuple[int, ...]]] = {n: [] for n in names}
    hooks = [supernet.model.get_submodule(n).register_forward_pre_hook(
        lambda m, args, n=n: seen[n].append(tuple(args[0].shape))) for n in names]
    try:
        was = supernet.model.training
        supernet.model.eval()
        with torch.no_grad():
            supernet.model(torch.zeros((1,) + tuple(supernet.input_shape)))
    finally:
        supernet.model.train(was)
        for h in hooks:
            h.remove()
    return seen


def units_of(supernet) -> list[Unit]:
    """The latency units of a supernet in execution order, one per call (a module called twice is run twice),
    with each conv's kernel/stride/padding read from its module.

    A conv (or linear) absorbs the BatchNorm that alone consumes its output and the activation that alone
    consumes that, following the traced graph's data flow: an exporter folds BN into the conv and a runtime
    fuses the activation only along such a chain.
    """
    graph = supernet.graph
    calls = graph.calls
    from torch import nn

    by_node = {c.node: c for c in calls if c.node}
    real = _real_inputs(supernet, [c for c in calls if c.name in graph.layers])
    n_seen: dict[str, int] = {}

    def is_bn(c) -> bool:  # nn.BatchNorm1d/2d or a subclass (timm's BatchNormAct2d): what an exporter folds
        return isinstance(supernet.model.get_submodule(c.name), nn.modules.batchnorm._BatchNorm)

    units: list[Unit] = []
    for call in calls:
        spec = graph.layers.get(call.name)
        if spec is None or spec.kind not in ("conv", "dwconv", "gconv", "linear"):
            continue
        absorbed, bn, act = [], False, ""
        tail = call
        nxt = _fused_next(tail, by_node, is_bn)
        if nxt is not None:
            bn = True
            absorbed.append(nxt.name)
            tail = nxt
        while (nxt := _fused_next(tail, by_node, lambda c: c.module_type in PASS_THROUGH)) is not None:
            absorbed.append(nxt.name)
            tail = nxt
        nxt = _fused_next(tail, by_node, lambda c: c.module_type in ACTIVATIONS)
        if nxt is not None:
            act = ACTIVATIONS[nxt.module_type]
            absorbed.append(nxt.name)
        module = supernet.model.get_submodule(call.name)
        bias = getattr(module, "bias", None) is not None
        if spec.kind == "linear":  # over the last dimension: an (N, C) vector, or every pixel of a channels-last map
            mid = tuple(call.in_shape[1:-1])
            rows = (mid[0], math.prod(mid[1:])) if mid else (1, 1)
            sig = Signature("linear", (1, 1), (1, 1), (0, 0), (1, 1), bias, bn, act, rows)
        else:
            pad = module.padding
            if isinstance(pad, str) or module.padding_mode != "zeros":
                raise SlimnasError(f"conv {call.name} uses padding={pad!r}/{module.padding_mode}; only zero padding is profiled")
            hw = tuple(call.in_shape[2:4])
            if call.name in real:  # a layer that pads its input itself: the runtime fuses that pad into the conv
                i = n_seen[call.name] = n_seen.get(call.name, -1) + 1
                hw = tuple(real[call.name][i][2:4])
                extra = [a - b for a, b in zip(call.in_shape[2:4], hw)]
                if any(extra):  # timm's pad_same (and ONNX SAME_UPPER): the odd pixel at the end
                    pad = tuple(p + e // 2 for p, e in zip(pad, extra)) + tuple(p + e - e // 2 for p, e in zip(pad, extra))
                    if pad[:2] == pad[2:]:
                        pad = pad[:2]
            kind, gw, gc = spec.kind, 0, 0
            if spec.kind == "gconv" and getattr(module, "fixed_groups", 0):  # keeps its group count, groups narrow
                kind, gc = "conv", int(module.fixed_groups)
            elif spec.kind == "gconv":  # timed as a conv whose group count follows its width, group width fixed
                kind, gw = "conv", int(module.weight.shape[1])
            sig = Signature(kind, tuple(module.kernel_size), tuple(module.stride), tuple(pad),
                            tuple(module.dilation), bias, bn, act, hw, gw, gc)
        block = supernet.cost.block_column(call.name)
        col = supernet.cost.kernel_column(call.name)
        if col is None:
            units.append(Unit(call.name, sig, spec.in_layout, spec.out_layout, tuple(absorbed), block))
            continue
        for k in supernet.space.kernel(call.name).choices:  # an elastic kernel: a unit (a table signature) per size
            pad = tuple(d * (k - 1) // 2 for d in module.dilation)
            sig_k = dataclasses.replace(sig, kernel=(k, k), padding=pad)
            units.append(Unit(call.name, sig_k, spec.in_layout, spec.out_layout, tuple(absorbed), block, (col, k * k)))
    return units


def candidate_pairs(unit: Unit, supernet) -> list[tuple[int, int]]:
    """Every (in width, out width) the search space can give ``unit``."""
    choices = {}
    for gi, g in enumerate(supernet.graph.groups):
        choices[gi] = supernet.space[g.name].choices if g.name in supernet.space else (g.width,)

    def widths(layout: Layout) -> list[int]:
        # The distinct sums, group by group: a layer fed by many parts (MixNet's split convs, ReXNet's chain of
        # partial residuals) has few distinct widths though its combinations multiply.
        sums = {0}
        for space, times in Counter(s.space for s in layout.segs).items():
            sums = {a + times * c for a in sums for c in choices[space]}
            if len(sums) > MAX_PAIRS:
                raise SlimnasError(f"layer {unit.layer}: over {MAX_PAIRS} widths; freeze some of its groups to profile it")
        return sorted(a * layout.inner for a in sums)

    if unit.sig.diagonal:
        return [(c, c) for c in widths(unit.out_layout)]
    ins, outs = widths(unit.in_layout), widths(unit.out_layout)
    if len(ins) * len(outs) > MAX_PAIRS:
        raise SlimnasError(f"layer {unit.layer}: {len(ins) * len(outs)} (in, out) pairs; freeze some groups to profile it")
    return [(a, b) for a in ins for b in outs]


# -- small graphs ------------------------------------------------------------------------------------------------
def _act_nodes(act: str, x: str, y: str, inits: list) -> list:
    if not act:
        return [helper.make_node("Identity", [x], [y])]
    if act == "relu":
        return [helper.make_node("Relu", [x], [y])]
    if act == "relu6":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "c_lo"), numpy_helper.from_array(np.array(6, np.float32), "c_hi")]
        return [helper.make_node("Clip", [x, "c_lo", "c_hi"], [y])]
    if act == "hardswish":
        return [helper.make_node("HardSwish", [x], [y])]
    if act == "hardsigmoid":
        return [helper.make_node("HardSigmoid", [x], [y], alpha=1 / 6, beta=0.5)]
    if act == "sigmoid":
        return [helper.make_node("Sigmoid", [x], [y])]
    if act == "silu":
        return [helper.make_node("Sigmoid", [x], ["sig"]), helper.make_node("Mul", [x, "sig"], [y])]
    raise SlimnasError(f"no ONNX form for activation {act!r}")


def input_shape(sig: Signature, cin: int, batch: int = 1) -> tuple[int, ...]:
    return (batch * sig.hw[0] * sig.hw[1], cin) if sig.kind == "linear" else (batch, cin) + tuple(sig.hw)


def output_shape(sig: Signature, cout: int, batch: int = 1) -> tuple[int, ...]:
    return (batch * sig.hw[0] * sig.hw[1], cout) if sig.kind == "linear" else (batch, cout) + tuple(sig.out_hw())


def unit_onnx(sig: Signature, cin: int, cout: int, batch: int = 1, seed: int = 0) -> bytes:
    """The unit as the small ONNX graph torch would export for conv → BN → activation (opset 17)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    x_shape, y_shape = input_shape(sig, cin, batch), output_shape(sig, cout, batch)
    if sig.kind == "linear":
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin)) * 0.05).astype(np.float32), "W"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "B"))
        nodes.append(helper.make_node("Gemm", ["x", "W", "B"], ["z"], transB=1))
    else:
        groups = sig.groups(cin)
        w = (rng.standard_normal((cout, cin // groups) + tuple(sig.kernel)) * 0.05).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "W"))
        ins = ["x", "W"]
        if sig.bias:
            inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "B"))
            ins.append("B")
        nodes.append(helper.make_node("Conv", ins, ["c"], kernel_shape=list(sig.kernel), strides=list(sig.stride),
                                      pads=list(sig.pads), dilations=list(sig.dilation), group=groups))
        if sig.bn:
            for name, value in (("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0)):
                inits.append(numpy_helper.from_array(np.full(cout, value, np.float32) + rng.random(cout, np.float32) * 0.1, f"bn_{name}"))
            nodes.append(helper.make_node("BatchNormalization", ["c", "bn_g", "bn_b", "bn_m", "bn_v"], ["z"], epsilon=1e-5))
        else:
            nodes.append(helper.make_node("Identity", ["c"], ["z"]))
    nodes += _act_nodes(sig.act, "z", "y", inits)
    graph = helper.make_graph(nodes, "unit", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="slimnas")
    model.ir_version = 8
    return model.SerializeToString()


def unit_torch(sig: Signature, cin: int, cout: int) -> nn.Module:
    """The same unit as a torch module (for the torch backend)."""
    from torch import nn

    if sig.kind == "linear":
        layers: list[nn.Module] = [nn.Linear(cin, cout, bias=sig.bias)]
    else:
        p = sig.pads  # nn.ZeroPad2d takes (left, right, top, bottom)
        pad = [nn.ZeroPad2d((p[1], p[3], p[0], p[2]))] if len(sig.padding) == 4 else []
        layers = pad + [nn.Conv2d(cin, cout, sig.kernel, sig.stride, sig.padding[:2] if not pad else 0, sig.dilation,
                                  sig.groups(cin), bias=sig.bias)]
    if sig.bn:
        layers.append(nn.BatchNorm2d(cout) if sig.kind != "linear" else nn.BatchNorm1d(cout))
    act = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid,
           "sigmoid": nn.Sigmoid, "silu": nn.SiLU}.get(sig.act)
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers).eval()


def onnx_model_check(data: bytes) -> None:  # pragma: no cover - debugging aid
    onnx.checker.check_model(onnx.load_from_string(data))
