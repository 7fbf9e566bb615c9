"""Skippable blocks: residual modules ``y = x + f(x)`` (or ``act(x + f(x))``) a subnet may drop.

A module is a skippable block when, in the traced graph, it is called once, takes one tensor ``x`` from outside,
hands one tensor ``y`` of ``x``'s shape back, and ``y`` is a sum with ``x`` as a direct operand, or a ReLU of such a
sum: MobileNetV2's and EfficientNet's stride-1 inverted residuals, ResNet's identity blocks. Dropping one makes it
return ``x`` (its branch contributes nothing; a ReLU block's ``x`` already came out of a ReLU in every such model,
and either way the export replaces the module by ``nn.Identity``, so supernet and export agree).

Consecutive blocks, each feeding the next, form a *stage* (the blocks of one resolution and width after the stage's
first, non-residual block). A subnet keeps the first ``k`` blocks of each stage, as Once-for-All does: a kept block
always sees the output of the same kept blocks before it, so its weights are trained on one kind of input, and
since a stage's blocks have equal shapes, which ``k`` of them run makes no difference to latency, only to what the
supernet would have to learn to rank.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Optional

import torch
import torch.fx as fx
from torch import nn

_ADDS = {operator.add, operator.iadd, torch.add}
_RELUS = (nn.ReLU, nn.ReLU6)


@dataclass(frozen=True)
class Block:
    """A module a subnet may drop: its qualified name and its fx input and output nodes."""

    name: str
    input: str
    output: str


@dataclass(frozen=True)
class Stage:
    """Skippable blocks in execution order, each feeding the next; named after its first block."""

    name: str
    blocks: tuple[str, ...]


def _shape(node: fx.Node) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _is_add(node: fx.Node) -> bool:
    return ((node.op == "call_function" and node.target in _ADDS)
            or (node.op == "call_method" and node.target in ("add", "add_")))


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _RELUS)
    if node.op == "call_function":
        return node.target in (torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6)
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _residual(gm: fx.GraphModule, x: fx.Node, y: fx.Node) -> bool:
    """``y`` is ``x + f`` or ``relu(x + f)`` (the add's other operand not ``x`` itself)."""
    add = y
    if _is_relu(gm, y) and y.args and isinstance(y.args[0], fx.Node):
        add = y.args[0]
    if not _is_add(add):
        return False
    operands = [a for a in add.args[:2] if isinstance(a, fx.Node)]
    return len(operands) == 2 and operands.count(x) == 1


def find_blocks(gm: fx.GraphModule) -> list[Block]:
    """The skippable blocks of a traced, shape-annotated graph module, in execution order.

    Nested candidates with the same input and output are one block (the innermost module); a candidate inside
    another block with a different input or output is left out (dropping the outer one would drop it too, which
    one on/off per block cannot express).
    """
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    inside: dict[str, set[fx.Node]] = {}
    repeated: set[str] = set()
    for n in nodes:
        for key in n.meta.get("nn_module_stack", {}):
            path, at, _ = str(key).partition("@")
            if at:
                repeated.add(path)
            elif path:
                inside.setdefault(path, set()).add(n)
    found: list[Block] = []
    for path, members in inside.items():
        if path in repeated or all(n.op == "call_module" and n.target == path for n in members):
            continue  # called more than once, or a leaf: nothing seen inside
        ins = {a for n in members if n.op != "get_attr" for a in n.all_input_nodes
               if a not in members and a.op != "get_attr"}
        outs = {n for n in members if any(u not in members for u in n.users)}
        if len(ins) != 1 or len(outs) != 1:
            continue
        (x,), (y,) = ins, outs
        if _shape(x) is None or _shape(x) != _shape(y) or not _residual(gm, x, y):
            continue
        found.append(Block(path, x.name, y.name))
    same_io: dict[tuple[str, str], Block] = {}
    for b in sorted(found, key=lambda b: -b.name.count(".")):  # innermost first
        same_io.setdefault((b.input, b.output), b)
    kept = list(same_io.values())
    kept = [b for b in kept if not any(b.name.startswith(o.name + ".") for o in kept if o is not b)]
    by_name = {n.name: n for n in nodes}
    return sorted(kept, key=lambda b: position[by_name[b.output]])


def stages_of(blocks: list[Block]) -> list[Stage]:
    """Chains of blocks in which each block's output is the next one's input."""
    stages: list[list[Block]] = []
    for b in blocks:
        if stages and stages[-1][-1].output == b.input:
            stages[-1].append(b)
        else:
            stages.append([b])
    return [Stage(chain[0].name, tuple(b.name for b in chain)) for chain in stages]
