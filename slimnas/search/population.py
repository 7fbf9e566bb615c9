"""Feasible subnets for the search: bounded repair, the initial population, and children of a generation.

Every loop here is bounded: repair takes at most ``repair_tries`` steps (vectorised over the batch), then
tries one fresh random sample, then falls back to the smallest subnet, which the search has checked is
feasible. Nothing retries an unbounded rejection loop.
"""
from __future__ import annotations

import random
from typing import Iterable, Sequence

import numpy as np

from ..space import SearchSpace
from ..subnet import Subnet
from .config import SearchConfig
from .costs import CostTable
from .nsga2 import rank_and_crowding, tournament

CHILD_ROUNDS = 20  # batches of children tried per generation before settling for fewer distinct ones


def step_down(space: SearchSpace, subnet: Subnet, rng: random.Random) -> Subnet:
    """One random group one candidate narrower, or one stage one block shallower (a knob not yet at its smallest
    choice); ``subnet`` if none can."""
    unused = space.unused(subnet)
    movable = [(k, c) for k, c in space.knobs() if k not in unused and space.value(subnet, k) > c[0]]
    if not movable:
        return subnet
    k, choices = rng.choice(movable)
    w = space.value(subnet, k)
    return space.assign(subnet, {k: max(c for c in choices if c < w)})


def _shrink(space: SearchSpace, subs: list[Subnet], bad: list[int], table: CostTable, rng: random.Random,
            tries: int) -> list[int]:
    """Step the subnets at ``bad`` down until feasible, ``tries`` rounds at most; return those still infeasible."""
    for _ in range(tries):
        if not bad:
            break
        for i in bad:
            subs[i] = step_down(space, subs[i], rng)
        ok = table.feasible([subs[i] for i in bad])
        bad = [i for i, good in zip(bad, ok) if not good]
    return bad


def repair(space: SearchSpace, subnets: Sequence[Subnet], table: CostTable, rng: random.Random, tries: int) -> list[Subnet]:
    """Make every subnet feasible: step down, else a fresh sample stepped down, else ``space.min()``."""
    subs = list(subnets)
    ok = table.feasible(subs)
    bad = [i for i, good in enumerate(ok) if not good]
    bad = _shrink(space, subs, bad, table, rng, tries)
    if bad:
        for i in bad:
            subs[i] = space.sample(rng)
        ok = table.feasible([subs[i] for i in bad])
        bad = _shrink(space, subs, [i for i, good in zip(bad, ok) if not good], table, rng, tries)
    for i in bad:
        subs[i] = space.min()
    return subs


def _distinct(subnets: Iterable[Subnet], seen: set[str], out: list[Subnet], limit: int) -> None:
    for s in subnets:
        if len(out) >= limit:
            return
        if s.hash not in seen:
            seen.add(s.hash)
            out.append(s)


def largest_uniform_ratio(space: SearchSpace, table: CostTable, steps: int = 30) -> float:
    """The largest width ratio whose uniform subnet is feasible, by bisection (0 if only ``space.min()`` is)."""
    hi = max(g.max_width / g.width for g in space.groups) if len(space) else 1.0
    if table.feasible([space.uniform(hi)])[0]:
        return hi
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if mid > 0 and table.feasible([space.uniform(mid)])[0]:
            lo = mid
        else:
            hi = mid
    return lo


def initial_population(space: SearchSpace, table: CostTable, config: SearchConfig, rng: random.Random,
                       seeds: Sequence[Subnet] = ()) -> list[Subnet]:
    """``space.min()``, the feasible ``seeds`` (:mod:`.sensitivity`), the largest feasible uniform-ratio subnets, then
    random samples repaired to fit."""
    n = config.population
    out: list[Subnet] = []
    seen: set[str] = set()
    _distinct([space.min()], seen, out, n)
    if seeds:
        _distinct([s for s, ok in zip(seeds, table.feasible(list(seeds))) if ok], seen, out, n)
    top = largest_uniform_ratio(space, table)
    if top > 0:
        k = max(1, n // 5)
        uniform = [space.uniform(top * (1 - i / (k + 1))) for i in range(k)]
        _distinct(repair(space, uniform, table, rng, config.repair_tries), seen, out, n)
    for _ in range(CHILD_ROUNDS):
        if len(out) >= n:
            break
        batch = [space.sample(rng) for _ in range(n - len(out))]
        _distinct(repair(space, batch, table, rng, config.repair_tries), seen, out, n)
    return out


def _mutant(space: SearchSpace, parent: Subnet, prob: float, rng: random.Random) -> Subnet:
    """``parent`` mutated; if no group changed, one random group moves to another candidate (one that a block the
    parent drops does not hold)."""
    child = space.mutate(parent, prob, rng)
    if child == parent:
        unused = space.unused(parent)
        knobs = [(k, c) for k, c in space.knobs() if len(c) > 1 and k not in unused]
        if knobs:
            k, choices = rng.choice(knobs)
            child = space.assign(parent, {k: rng.choice([c for c in choices if c != space.value(parent, k)])})
    return child


def make_children(space: SearchSpace, parents: Sequence[Subnet], points: np.ndarray, table: CostTable,
                  config: SearchConfig, rng: random.Random) -> list[Subnet]:
    """Up to ``config.population`` feasible children, distinct from each other and from the parents.

    A share ``crossover_fraction`` comes from crossing two tournament winners (then mutating); the rest from
    mutating one tournament winner. ``points`` are the parents' minimised objectives (for the tournaments).
    """
    rank, crowd = rank_and_crowding(points)
    n = config.population
    out: list[Subnet] = []
    seen = {p.hash for p in parents}
    for _ in range(CHILD_ROUNDS):
        if len(out) >= n:
            break
        batch = []
        for _ in range(n - len(out)):
            if rng.random() < config.crossover_fraction:
                a = parents[tournament(rank, crowd, rng)]
                b = parents[tournament(rank, crowd, rng)]
                batch.append(space.mutate(space.crossover(a, b, rng), config.mutation_prob, rng))
            else:
                batch.append(_mutant(space, parents[tournament(rank, crowd, rng)], config.mutation_prob, rng))
        _distinct(repair(space, batch, table, rng, config.repair_tries), seen, out, n)
    return out
