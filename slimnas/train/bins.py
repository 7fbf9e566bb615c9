"""Cost-sensitive bins (CafeNet): each group's candidate widths spaced so one step costs about the same.

A group's candidates are picked greedily from narrowest to widest: the next one is the widest candidate whose
cost exceeds the last pick's by at most ``step`` (at least one candidate further). Cost is the whole model's
cost with this group at that width and every other group at a reference subnet. With FLOPs, one step of any
group then changes model FLOPs by about ``step``. With a latency function that is a staircase (kernels change
speed at certain channel counts), "the widest candidate within the step" lands at the right end of a plateau:
the bins snap to the widths just before the device's speed steps up (the narrowest pick too: the widest
width that costs no more than the narrowest candidate).

The latency interface is a plain callable ``latency_ms(group, width) -> float``; it only has to be monotone
enough to be meaningful. :func:`predictor_cost` builds one from the profiler's table (through its
``LatencyPredictor``), :func:`table_latency` from a plain ``{(group, width): ms}`` mapping.
"""
from __future__ import annotations

import random
from typing import Callable, Mapping, Optional

import numpy as np

from ..errors import SlimnasError
from ..space import SearchSpace
from ..subnet import Subnet

CostFn = Callable[[str, int], float]


def flops_cost(net, reference: Optional[Subnet] = None) -> CostFn:
    """``cost(group, width)``: model FLOPs (MACs) with one group changed from ``reference`` (default: original)."""
    reference = reference or net.space.original()
    base = reference.widths
    groups = [(g.name, w) for g in net.space.groups for w in g.choices]
    rows = [{**base, g: w} for g, w in groups]
    values = net.cost.flops(net.cost.matrix(rows))
    table = {gw: float(v) for gw, v in zip(groups, values)}

    def cost(group: str, width: int) -> float:
        if (group, width) not in table:
            table[(group, width)] = float(net.cost.flops(net.cost.matrix([{**base, group: width}]))[0])
        return table[(group, width)]

    return cost


def predictor_cost(predictor, space: Optional[SearchSpace] = None, samples: int = 32, seed: int = 0) -> CostFn:
    """``cost(group, width)``: predicted model latency (ms) with ``group`` at ``width``, from a latency predictor.

    The marginal used is the partial dependence: the mean predicted latency over ``samples`` random subnets of
    ``space`` (default: the predictor's supernet's) with that one group set to that width, the same subnets for
    every (group, width). A layer's time depends on its input and its output width, so a group's effect depends
    on its neighbours' widths: at the widest subnet (``samples=0``) it is the largest it can be, while the
    strategy samples subnets from the whole space, where the average is what one step of width costs. The
    average keeps the device's staircases: every term steps where the group's own width crosses a kernel step.
    """
    net = predictor.supernet
    space = space or net.space
    rng = random.Random(seed)
    base = [space.max()] if samples < 1 else [space.sample(rng) for _ in range(samples)]
    base_m = net.cost.matrix([s.widths for s in base])
    col = {n: i for i, n in enumerate(net.cost.names)}
    pairs = [(g.name, w) for g in space.groups for w in g.choices]
    blocks = []
    for g, w in pairs:
        m = base_m.copy()
        m[:, col[g]] = w
        blocks.append(m)
    values = predictor.predict(np.concatenate(blocks)).reshape(len(pairs), len(base)).mean(1)
    table = {gw: float(v) for gw, v in zip(pairs, values)}

    def cost(group: str, width: int) -> float:
        if (group, width) not in table:
            raise SlimnasError(f"width {width} of group {group!r} is not a candidate of the space the latency was predicted for")
        return table[(group, width)]

    return cost


def group_bins(widths: tuple[int, ...], costs: list[float], step: float) -> tuple[int, ...]:
    """Greedy picks from ascending ``widths`` so consecutive picks differ by at most about ``step`` in cost."""
    n = len(widths)
    i = 0
    while i + 1 < n and costs[i + 1] <= costs[0]:  # a plateau at the bottom: its widest width costs the same
        i += 1
    sel = [i]
    while i < n - 1:
        j = i + 1
        while j + 1 < n and (costs[j + 1] - costs[i] <= step * (1 + 1e-9) or costs[j + 1] <= costs[j]):
            j += 1
        sel.append(j)
        i = j
    if len(sel) > 2 and costs[sel[-1]] - costs[sel[-2]] < 0.5 * step:  # fold a short last step into the one before
        del sel[-2]
    return tuple(widths[k] for k in sel)


def default_step(space: SearchSpace, cost: CostFn, bins: int) -> float:
    """The step that gives the median group ``bins`` widths."""
    if bins < 2:
        raise SlimnasError(f"bins must be at least 2 (narrowest and widest), got {bins}")
    spans = [cost(g.name, g.choices[-1]) - cost(g.name, g.choices[0]) for g in space.groups if len(g.choices) > 1]
    spans = [s for s in spans if s > 0]
    if not spans:
        raise SlimnasError("no group's cost changes with its width: cannot lay out bins")
    return float(np.median(spans)) / (bins - 1)


def cost_bins(space: SearchSpace, cost: CostFn, bins: int = 4, step: Optional[float] = None) -> SearchSpace:
    """A narrower space whose candidates are spaced by about ``step`` of ``cost`` in every group."""
    step = step if step is not None else default_step(space, cost, bins)
    keep: dict[str, tuple[int, ...]] = {}
    for g in space.groups:
        costs = [float(cost(g.name, w)) for w in g.choices]
        keep[g.name] = group_bins(g.choices, costs, step)
    return space.restricted(keep)


def flops_bins(net, bins: int = 4, space: Optional[SearchSpace] = None, step_flops: Optional[float] = None) -> SearchSpace:
    """FLOPs-sensitive bins over ``space`` (default: the supernet's)."""
    return cost_bins(space or net.space, flops_cost(net), bins, step_flops)


def latency_bins(net, latency_ms: CostFn, bins: int = 4, space: Optional[SearchSpace] = None,
                 step_ms: Optional[float] = None) -> SearchSpace:
    """Latency-sensitive bins from ``latency_ms(group, width)`` (e.g. a latency table's lookup)."""
    return cost_bins(space or net.space, latency_ms, bins, step_ms)


def bin_table(space: SearchSpace, cost: CostFn, full: Optional[SearchSpace] = None, unit: str = "cost",
              scale: float = 1.0) -> list[dict]:
    """A bin layout as rows (group, width, ratio, kept, <unit>, step), one per candidate of ``full``.

    ``space`` holds the kept widths (default ``full``: ``space`` itself); ``<unit>`` is ``cost * scale`` (say
    ``mflops`` with 1e-6) and ``step`` the cost above the previous kept width of the group (kept rows only).
    """
    rows = []
    for g in (full or space).groups:
        kept = set(space[g.name].choices) if g.name in space else set()
        prev = None
        for w in g.choices:
            c = float(cost(g.name, w)) * scale
            row = {"group": g.name, "width": w, "ratio": round(w / g.width, 4), "kept": w in kept, unit: c,
                   "step": None if prev is None or w not in kept else c - prev}
            if w in kept:
                prev = c
            rows.append(row)
    return rows


def table_latency(table: Mapping[tuple[str, int], float]) -> CostFn:
    """A latency callable from a ``{(group, width): ms}`` mapping (interpolating linearly between widths)."""
    by_group: dict[str, list[tuple[int, float]]] = {}
    for (g, w), ms in table.items():
        by_group.setdefault(g, []).append((int(w), float(ms)))
    for pts in by_group.values():
        pts.sort()

    def cost(group: str, width: int) -> float:
        pts = by_group.get(group)
        if not pts:
            raise SlimnasError(f"the latency table has no entry for group {group!r}")
        ws, ms = zip(*pts)
        return float(np.interp(width, ws, ms))

    return cost
