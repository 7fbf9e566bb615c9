"""Coarse grid, interpolation where latency is smooth, refinement where it steps.

Over a 1-D (depthwise: one width) or 2-D (in width × out width) grid of candidate widths: time every
``step``-th width of each axis (and the last), then, in each cell between those, time one check point near the
cell's centre. If the check point lies within ``tol`` of the (multi)linear interpolation of the cell's corners
the cell is smooth and its other points are interpolated; otherwise latency steps inside the cell (a kernel
changes speed at some channel multiple) and every point of the cell is timed.
"""
from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence

Point = tuple[int, ...]  # indices along the axes


def _interp(point: Point, lo: Point, hi: Point, axes: Sequence[Sequence[int]], value: Callable[[Point], float]) -> float:
    """Multilinear interpolation in width (not index) space from the cell corners."""
    total = 0.0
    for corner in itertools.product(*((0, 1) for _ in point)):
        weight = 1.0
        q = []
        for d, c in enumerate(corner):
            a, b = axes[d][lo[d]], axes[d][hi[d]]
            x = axes[d][point[d]]
            t = 0.0 if b == a else (x - a) / (b - a)
            weight *= t if c else 1.0 - t
            q.append(hi[d] if c else lo[d])
        if weight:
            total += weight * value(tuple(q))
    return total


def adaptive(axes: Sequence[Sequence[int]], measure: Callable[[Point], float], step: int = 2,
             tol: float = 0.05, value: Optional[Callable[[Point], float]] = None) -> dict[Point, tuple[float, str]]:
    """Values at every grid point, each marked ``measured`` or ``interpolated``.

    ``measure(point)`` times one point (a resumed profiler answers it from disk). Decisions depend only on the
    measured values, so a rerun over the same data replays the same choices. ``value(point)``, where given,
    is what a measured point is worth in the result and in the interpolation of its cell (for example the
    best of several timings, while the decisions stay with the first).
    """
    known: dict[Point, tuple[float, str]] = {}
    cells: dict[Point, tuple[Point, Point]] = {}

    def get(p: Point) -> float:
        if p not in known or known[p][1] != "measured":
            known[p] = (measure(p), "measured")
        return known[p][0]

    coarse = [sorted(set(range(0, len(ax), max(1, step))) | {len(ax) - 1}) for ax in axes]
    for p in itertools.product(*coarse):
        get(p)
    spans = [list(zip(c[:-1], c[1:])) or [(c[0], c[0])] for c in coarse]
    for cell in itertools.product(*spans):
        lo = tuple(a for a, _ in cell)
        hi = tuple(b for _, b in cell)
        inside = list(itertools.product(*(range(a, b + 1) for a, b in cell)))
        todo = [p for p in inside if known.get(p, (0, ""))[1] != "measured"]
        if not todo:
            continue
        centre = tuple((a + b) / 2 for a, b in cell)
        check = min(todo, key=lambda p: (sum((x - c) ** 2 for x, c in zip(p, centre)), p))
        guess = _interp(check, lo, hi, axes, get)
        real = get(check)
        if abs(guess - real) > tol * max(real, 1e-12):
            for p in todo:
                get(p)
        else:
            for p in todo:
                if p not in known:
                    known[p] = (_interp(p, lo, hi, axes, get), "interpolated")
                    cells[p] = (lo, hi)
    if value is None:
        return known
    return {p: (_interp(p, *cells[p], axes, value), s) if s == "interpolated" else (value(p), s) for p, (_, s) in known.items()}
