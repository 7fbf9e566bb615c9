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
2. **Greedy paths, latency-aware.** From the base, repeatedly narrow the group whose next narrower candidate
   saves the most of the search's objective (predicted latency, or FLOPs) per point of estimated drop (the
   drops are assumed additive), until the subnet meets every constraint. The first feasible subnet and the next
   few on the path are seeds. Several paths with different exchange rates between latency and drop
   (``tolerance``) give the population some spread.

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
SEEDS_PER_PATH = 3  # the first feasible subnet of a path and the next ones after it


def base_subnet(space: SearchSpace) -> Subnet:
    """The checkpoint's widths, each group at its candidate nearest to it (a shrunk space may lack the width)."""
    return Subnet({g.name: min(g.choices, key=lambda c: (abs(c - g.width), -c)) for g in space.groups})


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
    """``{group: {width: drop}}`` over every candidate up to the base width (0 at the base width itself)."""
    ref = float(accuracy(base))
    out = {}
    for g in space.groups:
        top = base[g.name]
        measured = {top: 0.0}
        for w in probe_widths(g.choices, top, levels):
            measured[w] = ref - float(accuracy(base.replace({g.name: w})))
        xs = sorted(measured)
        ys = [max(0.0, measured[x]) for x in xs]  # a narrower group scoring higher is noise, not a gain
        ys = list(np.maximum.accumulate(ys[::-1])[::-1])  # narrower never costs less than wider
        out[g.name] = {c: float(np.interp(c, xs, ys)) for c in g.choices if c <= top}
    return out


def greedy_path(space: SearchSpace, table: CostTable, objective: str, drops: dict[str, dict[int, float]],
                base: Subnet, tolerance: float, keep: int) -> list[Subnet]:
    """Narrow one group a step at a time, the best objective saving per unit of drop first, until ``keep``
    feasible subnets are collected (or nothing can narrow)."""
    current, out = base, []
    steps = sum(len(d) for d in drops.values())  # a path is at most this long
    for _ in range(steps):
        if table.feasible([current])[0]:
            out.append(current)
            if len(out) >= keep:
                break
        moves = []
        for name, d in drops.items():
            narrower = [w for w in d if w < current[name]]
            if narrower:
                moves.append((name, max(narrower)))
        if not moves:
            break
        cands = [current.replace({n: w}) for n, w in moves]
        here = table.column(objective, [current])[0]
        saving = here - table.column(objective, cands)
        extra = np.array([drops[n][w] - drops[n][current[n]] for n, w in moves])
        gain = np.where(saving > 0, saving / (extra + tolerance), -np.inf)
        if not np.isfinite(gain).any():  # nothing saves any more: the narrowest drop instead
            gain = -extra
        current = cands[int(np.argmax(gain))]
    return out


def sensitivity_seeds(space: SearchSpace, accuracy: Callable[[Subnet], float], table: CostTable, objective: str,
                      levels: int) -> list[Subnet]:
    """Seeds for the initial population (see the module docstring); [] when ``levels`` is 0."""
    if levels <= 0 or len(space) == 0:
        return []
    base = base_subnet(space)
    drops = sensitivity_map(space, accuracy, base, levels)
    seeds, seen = [], set()
    for tol in TOLERANCES:
        for s in greedy_path(space, table, objective, drops, base, tol, SEEDS_PER_PATH):
            if s.hash not in seen:
                seen.add(s.hash)
                seeds.append(s)
    logger.info(f"sensitivity: {len(space)} groups probed at up to {levels} widths each; {len(seeds)} seeds from "
                f"{len(TOLERANCES)} latency-aware greedy paths")
    return seeds
