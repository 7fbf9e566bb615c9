"""Channel counts baked into the graph, and the module attributes that set them.

fx records ``torch.split(x, self.splits, 1)`` with the list ``self.splits`` held at trace time, and
``x[:, :self.out_chs]`` with that int. At a subnet's widths these counts must change, in the supernet and in the
exported plain model alike, and the only way to change them without touching code is the attribute they come
from. Which attribute that is is found, not assumed: the module running the op is traced again on its own
(inside a holder, with the shapes and leaves of the full trace), then again with each of its int and
int-list attributes moved (+8, +16). An attribute explains a constant when moving it moves that constant
linearly and nothing else the module's own ops hold; the inverse map is checked by tracing once more with the
value it gives. A constant that no single attribute explains is reported, and the analysis freezes the channels
it counts (a width there could not be changed soundly).
"""
from __future__ import annotations

import contextlib
import inspect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch.fx as fx
from torch import nn

_PROBES = (8, 16)


@dataclass(frozen=True)
class Site:
    """One channel count an op holds: ``value`` at ``path`` in node ``node``'s arguments, run by ``module``;
    at any widths it must equal the summed widths of ``spaces`` (channel spaces during analysis)."""

    node: str
    module: str
    path: tuple
    value: int
    spaces: tuple[int, ...]


@dataclass(frozen=True)
class AttrPatch:
    """Set ``module.attr`` (element ``index`` of a list attribute) so that the constant it gives equals the
    summed widths of ``spaces`` (group indices): ``constant = scale * value + offset``."""

    module: str
    attr: str
    index: Optional[int]
    spaces: tuple[int, ...]
    scale: float
    offset: float

    def value(self, widths: Mapping[int, int]) -> int:
        want = sum(widths[s] for s in self.spaces)
        return int(round((want - self.offset) / self.scale))

    def apply(self, root: nn.Module, widths: Mapping[int, int]) -> None:
        """Set the attribute on ``root``'s submodule for group widths ``widths`` (group index -> width)."""
        module = root.get_submodule(self.module) if self.module else root
        _set(module, self.attr, self.index, self.value(widths))


def _set(module: nn.Module, attr: str, index: Optional[int], value: int) -> None:
    if index is None:
        setattr(module, attr, value)
    else:
        old = getattr(module, attr)
        new = list(old)
        new[index] = value
        setattr(module, attr, type(old)(new))


@contextlib.contextmanager
def _moved(module: nn.Module, attr: str, index: Optional[int], value: int) -> Iterator[None]:
    old = getattr(module, attr)
    _set(module, attr, index, value)
    try:
        yield
    finally:
        setattr(module, attr, old)


def _ints(obj: Any, path: tuple) -> Iterator[tuple[tuple, int]]:
    if isinstance(obj, bool) or obj is None or isinstance(obj, fx.Node):
        return
    if isinstance(obj, int):
        yield path, obj
    elif isinstance(obj, slice):
        for a in ("start", "stop", "step"):
            yield from _ints(getattr(obj, a), path + (a,))
    elif isinstance(obj, (list, tuple)):
        for i, a in enumerate(obj):
            yield from _ints(a, path + (i,))
    elif isinstance(obj, dict):
        for k, a in obj.items():
            yield from _ints(a, path + (k,))


def _module_of(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _own_constants(nodes: Sequence[fx.Node], module: str) -> tuple[list, list[int], dict]:
    """The ops ``module`` runs itself (not its children), their int constants in order, and each constant's
    position by (node name, path)."""
    shape, values, where = [], [], {}
    for n in nodes:
        if n.op not in ("call_function", "call_method") or _module_of(n) != module:
            continue
        ints = list(_ints(n.args, ("args",))) + list(_ints(n.kwargs, ("kwargs",)))
        shape.append((n.op, str(getattr(n.target, "__name__", n.target)), tuple(p for p, _ in ints)))
        for p, v in ints:
            where[(n.name, p)] = len(values)
            values.append(v)
    return shape, values, where


class _Holder(nn.Module):
    """Calls the module under study as a child named ``m``, so it is traced as in the full model."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)


class _Retracer:
    def __init__(self, module: nn.Module, path: str, leaves: set, shaped: dict):
        from .tracer import _LeafFallbackTracer  # the tracer the full model was traced with

        self.module = module
        self.tracer_cls = _LeafFallbackTracer
        pre = f"{path}." if path else ""
        self.leaves = {"m." + leaf[len(pre):] for leaf in leaves if leaf.startswith(pre) and leaf != path}
        self.shaped = {("m." + k[len(pre):] if k != path else "m"): v for k, v in shaped.items()
                       if k == path or k.startswith(pre)}

    def constants(self) -> tuple[list, list[int]]:
        graph = self.tracer_cls(set(self.leaves), dict(self.shaped)).trace(_Holder(self.module))
        shape, values, _ = _own_constants(list(graph.nodes), "m")
        return shape, values


def _one_input(module: nn.Module) -> bool:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 1


def _candidates(module: nn.Module) -> list[tuple[str, Optional[int], int]]:
    out = []
    for attr, v in vars(module).items():
        if attr.startswith("_") or isinstance(v, bool):
            continue
        if isinstance(v, int):
            out.append((attr, None, v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(e, int) and not isinstance(e, bool) for e in v):
            out.extend((attr, j, e) for j, e in enumerate(v))
    return out


def _effects(module: nn.Module, retracer: _Retracer, shape: list, base: list[int]
             ) -> dict[tuple[str, Optional[int]], dict[int, tuple[float, float]]]:
    """For each int attribute (or list element) that moves constants: constant position -> (scale, offset),
    (0, 0) where the constant moves but not in proportion."""
    effects: dict[tuple[str, Optional[int]], dict[int, tuple[float, float]]] = {}
    for attr, index, v in _candidates(module):
        probes = []
        for d in _PROBES:
            with _moved(module, attr, index, v + d):
                try:
                    got_shape, got = retracer.constants()
                except Exception:  # the module does not trace with this value: not a channel count
                    got_shape, got = None, None
            probes.append(got if got_shape == shape else None)
            if probes[-1] is None or probes[-1] == base:
                break  # no count follows it (or its ops change with it): no second probe needed
        if len(probes) < len(_PROBES) or any(p is None for p in probes):
            continue
        moved = [p for p in range(len(base)) if any(pr[p] != base[p] for pr in probes)]
        rel: dict[int, tuple[float, float]] = {}
        for p in moved:
            c0, c1, c2 = base[p], probes[0][p], probes[1][p]
            if c1 == c0 or (c2 - c0) * _PROBES[0] != (c1 - c0) * _PROBES[1]:
                rel[p] = (0.0, 0.0)  # not linear in the attribute
                continue
            a = (c1 - c0) / _PROBES[0]
            rel[p] = (a, c0 - a * v)
        effects[(attr, index)] = rel
    return effects


def _verified(module: nn.Module, retracer: _Retracer, attr: str, index: Optional[int], scale: float, offset: float,
              positions: set[int], c0: int) -> bool:
    """Setting the attribute by the inverse map really gives the wanted constant (two values tried)."""
    for want in (c0 - 1, c0 + 3):
        with _moved(module, attr, index, int(round((want - offset) / scale))):
            try:
                _, got = retracer.constants()
            except Exception:  # fx raises many types
                return False
        if any(got[p] != want for p in positions):
            return False
    return True


def _resolve_module(gm: fx.GraphModule, path: str, sites: list[Site], cache: dict
                    ) -> tuple[list[AttrPatch], list[tuple[Site, str]]]:
    root: nn.Module = gm.meta.get("root", gm)
    module = root.get_submodule(path) if path else root
    kind = type(module).__name__

    def fail(why: str) -> tuple[list, list]:
        return [], [(s, why) for s in sites]

    if not _one_input(module):
        return fail(f"{kind}.forward takes other than one input, so its attributes cannot be probed")
    shape, base, where = _own_constants(list(gm.graph.nodes), path)
    shaped = gm.meta.get("shaped", {})
    retracer = _Retracer(module, path, gm.meta.get("leaves", set()), shaped)
    # Modules alike (class, attribute values, own ops and their constants, input shapes) answer alike: MixNet
    # has dozens of MixedConv2d of a few kinds. Probing one of each kind is what costs.
    key = (type(module), tuple(_candidates(module)), repr(shape), tuple(base), repr(shaped.get(path)))
    known = cache.get(key)
    if known is None:
        try:
            alone = retracer.constants()
        except Exception as exc:  # fx raises many types
            known = f"{kind} does not trace on its own ({type(exc).__name__})"
        else:
            known = _effects(module, retracer, shape, base) if alone == (shape, base) else \
                f"{kind} traces differently on its own"
        cache[key] = known
    if isinstance(known, str):
        return fail(known)
    effects = known
    positions = {s: where.get((s.node, s.path)) for s in sites}
    if any(p is None for p in positions.values()):
        return fail(f"a constant of {kind} was not found")
    wanted = set(positions.values())

    by_attr: dict[tuple[str, Optional[int]], list[Site]] = defaultdict(list)
    failed: list[tuple[Site, str]] = []
    for s in sites:
        p = positions[s]
        explaining = [k for k, rel in effects.items() if p in rel]
        if not explaining:
            failed.append((s, f"no int attribute of {kind} sets it"))
        elif len(explaining) > 1:
            failed.append((s, f"several attributes of {kind} set it ({', '.join(a for a, _ in explaining)})"))
        else:
            k = explaining[0]
            rel = effects[k]
            name = k[0] if k[1] is None else f"{k[0]}[{k[1]}]"
            if rel[p][0] == 0.0:
                failed.append((s, f"{kind}.{name} sets it, but not in proportion"))
            elif not set(rel) <= wanted:
                failed.append((s, f"{kind}.{name} also sets other constants of its ops"))
            else:
                by_attr[k].append(s)

    patches: list[AttrPatch] = []
    for (attr, index), group in by_attr.items():
        rel = effects[(attr, index)]
        name = attr if index is None else f"{attr}[{index}]"
        forms = {tuple(sorted(s.spaces)) for s in group}
        pairs = {rel[positions[s]] for s in group}
        if len(forms) != 1 or len(pairs) != 1 or set(rel) != {positions[s] for s in group}:
            failed.extend((s, f"{kind}.{name} sets constants that follow different channels") for s in group)
            continue
        (a, b), = pairs
        vkey = (key, attr, index)
        if vkey not in cache:
            cache[vkey] = _verified(module, retracer, attr, index, a, b, set(rel), base[positions[group[0]]])
        if not cache[vkey]:
            failed.extend((s, f"{kind}.{name} cannot be set to give the wanted count") for s in group)
            continue
        patches.append(AttrPatch(path, attr, index, group[0].spaces, a, b))
    return patches, failed


def resolve(gm: fx.GraphModule, sites: Sequence[Site]) -> tuple[list[AttrPatch], list[tuple[Site, str]]]:
    """The attribute patches that make every site follow its channels, and the sites none explains (with why).

    ``gm`` is the traced model (:func:`slimnas.trace.trace`), whose ``meta`` holds the model and how it was
    traced; sites are grouped by the module running them, each module probed once. The module's attributes are
    moved only temporarily: it is left as it was.
    """
    by_module: dict[str, list[Site]] = defaultdict(list)
    for s in sites:
        by_module[s.module].append(s)
    patches, failed = [], []
    cache: dict = {}
    for path, group in by_module.items():
        try:
            p, f = _resolve_module(gm, path, group, cache)
        except Exception as exc:  # a module whose probing trips in an unforeseen way: its channels freeze
            p, f = [], [(s, f"probing its module failed ({type(exc).__name__}: {exc})") for s in group]
        patches.extend(p)
        failed.extend(f)
    return patches, failed
