"""Search a one-dimensional knob (a width ratio, a pruning ratio, a FLOPs limit) so that the MEASURED latency
meets a budget.

The knob is assumed to make the model slower as it grows, mostly: latency on a real runtime has cliffs (channel
counts that are not multiples of 8 run slower), so the search never trusts monotonicity to certify a point.
Each step measures ``points`` evenly spaced knob values in one timing run (``points=1`` is plain bisection) and
keeps the interval between the largest point that met the target and the next point above it. Candidates
with the same architecture are measured once. A last, longer measurement (``confirm``) re-times the best few
points that met the target, largest knob first, and the answer is the largest one that meets it again: one
short timing run on a shared machine can be several percent off.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Generic, Optional, Sequence, TypeVar

from slimnas.errors import BudgetUnreachable, SlimnasError

T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    step: int
    knob: float
    key: str  # the candidate's architecture
    ratio: float  # measured latency / budget reference (the base), in the run that measured it
    feasible: bool
    confirm: bool = False  # measured by the closing, longer confirmation run

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Found(Generic[T]):
    knob: float
    candidate: T
    ratio: float
    probes: list[Probe]


def bisect_by_measurement(build: Callable[[float], T], key: Callable[[T], str],
                          measure: Callable[[Sequence[T]], Sequence[float]], lo: float, hi: float, target: float,
                          points: int = 3, steps: int = 3, confirm: Optional[Callable[[Sequence[T]], Sequence[float]]] = None,
                          confirm_top: int = 3, log: Optional[Callable[[str], None]] = None) -> Found[T]:
    """The largest knob in ``[lo, hi]`` whose candidate measured ``<= target`` (a ratio to the base).

    ``build(knob)`` makes a candidate, ``key(candidate)`` names its architecture, and ``measure(candidates)``
    times a list of candidates in one run and returns their latency ratios. The first step also measures both
    ends; if even ``lo`` misses the target the budget cannot be met and a :class:`SlimnasError` says so. With
    ``confirm`` (a longer measurement), the ``confirm_top`` largest passing knobs are re-timed together and the
    largest that passes again wins (further passing knobs are tried, in batches, if none does).
    """
    if not lo < hi:
        raise SlimnasError(f"knob range must have lo < hi, got [{lo}, {hi}]")
    if points < 1 or steps < 1:
        raise SlimnasError(f"points and steps must be at least 1, got {points} and {steps}")
    seen: dict[str, float] = {}
    passing: dict[str, tuple[float, T]] = {}  # architecture -> (largest knob that built it, candidate)
    probes: list[Probe] = []
    a, b = lo, hi
    for step in range(steps):
        knobs = [a + (b - a) * i / (points + 1) for i in range(1, points + 1)]
        if step == 0:
            knobs = [lo] + knobs + [hi]
        cands = [build(k) for k in knobs]
        keys = [key(c) for c in cands]
        todo = {k: c for k, c in zip(keys, cands) if k not in seen}
        if todo:
            for k, r in zip(todo, measure(list(todo.values()))):
                seen[k] = float(r)
        for knob, k, c in zip(knobs, keys, cands):
            probes.append(Probe(step, knob, k, seen[k], seen[k] <= target))
            if seen[k] <= target and knob >= passing.get(k, (-1.0, None))[0]:
                passing[k] = (knob, c)
        if step == 0 and seen[keys[0]] > target:
            raise BudgetUnreachable(f"even the smallest setting (knob {lo:g}) measured {seen[keys[0]]:.3f}x the base, "
                               f"above the target {target:.3f}x: widen the knob range or raise the budget")
        a = max([a] + [kn for kn, k in zip(knobs, keys) if seen[k] <= target])  # a itself met the target
        b = min([b] + [kn for kn in knobs if kn > a])
        if log:
            log(f"  step {step + 1}: " + ", ".join(f"{kn:.3f}->{seen[k]:.3f}" for kn, k in zip(knobs, keys))
                + f"  (target {target:.3f}; best {a:.3f})")
        if b <= a:
            break
    ranked = sorted(passing.items(), key=lambda kv: -kv[1][0])
    if confirm is None:
        k, (knob, cand) = ranked[0]
        return Found(knob, cand, seen[k], probes)
    for i in range(0, len(ranked), confirm_top):
        batch = ranked[i:i + confirm_top]
        ratios = [float(r) for r in confirm([c for _, (_, c) in batch])]
        for (k, (knob, _)), r in zip(batch, ratios):
            probes.append(Probe(steps, knob, k, r, r <= target, confirm=True))
        if log:
            log("  confirm: " + ", ".join(f"{kn:.3f}->{r:.3f}" for (_, (kn, _)), r in zip(batch, ratios)))
        for (k, (knob, cand)), r in zip(batch, ratios):  # largest knob first
            if r <= target:
                return Found(knob, cand, r, probes)
    raise SlimnasError(f"no setting met the target {target:.3f}x again in the confirmation run: the machine is too "
                       "noisy for this budget; rerun on a quieter machine or raise the margin")
