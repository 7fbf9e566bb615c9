"""Sensitivity seeds: good starting points for the evolutionary search, from one pass over the groups.

Random subnets of a deep CNN are mostly bad: a width drawn at random per group puts a bottleneck somewhere,
and a random subnet repaired down to a latency budget narrows whichever groups the dice chose. On the CIFAR-10
MobileNetV2 at 0.5x of the measured latency, the search's pick from such a start scored 0.32 on the validation
split, where FastNAS's architecture, rounded into the same space, scored 0.59 on the same supernet
(benchmarks/results/headline/ablation). FastNAS starts from a sensitivity map; so does this.

1. **Sensitivity.** For each group, the base subnet (the checkpoint's widths, or the nearest candidates) with
   only that group narrowed to a few of its candidates, scored by the search's own fitness (cached like every
   other score: a resumed search does not score them again). The drop from the base score is that group's
   sensitivity at that width; widths between the measured ones are interpolated linearly.
2. **Threshold path (FastNAS's rule).** Every group at its narrowest width whose drop stays within a threshold,
   the smallest threshold at which the subnet meets every constraint (bisected), and the next ones after it.
3. **Greedy paths, latency-aware.** From the base, repeatedly narrow the group whose next narrower candidate
   saves the most of the search's objective (predicted latency, or FLOPs) per point of estimated drop (the
   drops are assumed additive), until the subnet meets every constraint. Several paths with different exchange
   rates between latency and drop (``tolerance``) give the population some spread.

On each path the seeds are the first feasible subnet and the first ones at :data:`LEVELS` of its cost: a
latency prediction can be off by ten per cent and more for one shape (measured on a 2-core Xeon whose table has
a 14% leave-one-out error: the seeds timed 1.18-1.36x their prediction), and verification then looks for
candidates predicted further below the budget, where good subnets must exist too.

The seeds join the initial population beside the smallest subnet, the widest uniform-ratio subnets and repaired
random samples; the evolution then improves on them. Every step is bounded (at most the number of candidate
steps of all groups per path).
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from ..space import SearchSpace
from ..subnet import Subnet
from .costs import CostTable

logger = logging.getLogger(__name__)

TOLERANCES = (0.002, 0.01, 0.03)  # drop (accuracy points / 100) that counts as "free" on each greedy path
LEVELS = (1.0, 0.9, 0.8, 0.7, 0.6)  # seeds per path: the first feasible subnet, then the first at these shares of its cost


def base_subnet(space: SearchSpace) -> Subnet:
    """The checkpoint's widths, each group at its candidate nearest to it (a shrunk space may lack the width), every
    stage at its deepest choice and every elastic conv at its checkpoint kernel (or the nearest choice)."""
    widths = {g.name: min(g.choices, key=lambda c: (abs(c - g.width), -c)) for g in space.groups}
    return Subnet(widths, depth={st.name: st.choices[-1] for st in space.stages}, kernels=space.original().kernels)


def probe_widths(choices: Sequence[int], top: int, levels: int) -> list[int]:
    """``levels`` candidates below ``top``, spread evenly over them (the narrowest always included)."""
    below = [c for c in choices if c < top]
    if not below or levels <= 0:
        return []
    if len(below) <= levels:
        return below
    idx = np.unique(np.round(np.linspace(0, len(below) - 1, levels)).astype(int))
    return [below[i] for i in idx]


def sensitivity_map(space: SearchSpace, accuracy: Callable[[Subnet], float], base: Subnet,
                    levels: int) -> dict[str, dict[int, float]]:
    """``{knob: {value: drop}}`` over every candidate up to the base width (0 at the base width itself); a stage's
    depths (knob ``"depth <stage>"``) are probed like a group's widths."""
    ref = float(accuracy(base))
    out = {}
    for knob, choices in space.knobs():
        top = space.value(base, knob)
        measured = {top: 0.0}
        for w in probe_widths(choices, top, levels):
            measured[w] = ref - float(accuracy(space.assign(base, {knob: w})))
        xs = sorted(measured)
        ys = [max(0.0, measured[x]) for x in xs]  # a narrower group scoring higher is noise, not a gain
        ys = list(np.maximum.accumulate(ys[::-1])[::-1])  # narrower never costs less than wider
        out[knob] = {c: float(np.interp(c, xs, ys)) for c in choices if c <= top}
    return out


def greedy_path(table: CostTable, objective: str, drops: dict[str, dict[int, float]], base: Subnet,
                tolerance: float, space: SearchSpace) -> list[Subnet]:
    """Narrow one group a step at a time, the best objective saving per unit of drop first; the seeds at
    :data:`LEVELS` of the first feasible subnet's cost (fewer if the path ends first)."""
    current, out, first = base, [], None
    steps = sum(len(d) for d in drops.values())  # a path is at most this long
    for _ in range(steps):
        here = float(table.column(objective, [current])[0])
        if first is None and table.feasible([current])[0]:
            first = here
        if first is not None and here <= LEVELS[len(out)] * first:
            out.append(current)
            if len(out) == len(LEVELS):
                break
        moves = []
        for name, d in drops.items():
            narrower = [w for w in d if w < space.value(current, name)]
            if narrower:
                moves.append((name, max(narrower)))
        if not moves:
            break
        cands = [space.assign(current, {n: w}) for n, w in moves]
        saving = here - table.column(objective, cands)
        extra = np.array([drops[n][w] - drops[n][space.value(current, n)] for n, w in moves])
        gain = np.where(saving > 0, saving / (extra + tolerance), -np.inf)
        if not np.isfinite(gain).any():  # nothing saves any more: the narrowest drop instead
            gain = -extra
        current = cands[int(np.argmax(gain))]
    return out


def threshold_path(table: CostTable, objective: str, drops: dict[str, dict[int, float]], base: Subnet,
                   space: SearchSpace) -> list[Subnet]:
    """Each group at its narrowest width whose drop is at most t: for the smallest t that meets the constraints
    (bisected over the distinct drops), then the first thresholds at :data:`LEVELS` of that subnet's cost."""
    levels = sorted({v for d in drops.values() for v in d.values()})

    def at(t: float) -> Subnet:
        return space.assign(base, {n: min(w for w, v in d.items() if v <= t) for n, d in drops.items()})

    if not levels or not table.feasible([at(levels[-1])])[0]:
        return []
    lo, hi = 0, len(levels) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if table.feasible([at(levels[mid])])[0]:
            hi = mid
        else:
            lo = mid + 1
    path = [at(t) for t in levels[lo:]]
    costs = table.column(objective, path)
    out = []
    for share in LEVELS:
        i = next((i for i, c in enumerate(costs) if c <= share * costs[0]), None)
        if i is not None and path[i] not in out:
            out.append(path[i])
    return out


def sensitivity_seeds(space: SearchSpace, accuracy: Callable[[Subnet], float], table: CostTable, objective: str,
                      levels: int) -> list[Subnet]:
    """Seeds for the initial population (see the module docstring); [] when ``levels`` is 0."""
    if levels <= 0 or len(space) == 0:
        return []
    base = base_subnet(space)
    drops = sensitivity_map(space, accuracy, base, levels)
    seeds, seen = [], set()
    paths = [threshold_path(table, objective, drops, base, space)]
    paths += [greedy_path(table, objective, drops, base, tol, space) for tol in TOLERANCES]
    for path in paths:
        for s in path:
            if s.hash not in seen:
                seen.add(s.hash)
                seeds.append(s)
    n = len(space.stages)
    stages = f" and the depths of {n} stage{'s' if n != 1 else ''}" if n else ""
    logger.info(f"sensitivity: {len(space)} groups{stages} probed at up to {levels} widths each; {len(seeds)} seeds from a "
                f"threshold path and {len(TOLERANCES)} latency-aware greedy paths")
    return seeds
