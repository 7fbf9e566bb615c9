"""The whole subnets a table is calibrated on, and the table's end-to-end rows of them.

A leaf module (it imports neither the profiler nor the predictor), so that both can use it: the profiler
times these subnets, the predictor reads their rows back for its fixed part.
"""
from __future__ import annotations

import random

import numpy as np

from ..subnet import Subnet
from .table import LatencyTable


def calibration_subnets(supernet, n: int) -> list[Subnet]:
    """Uniform-ratio subnets (narrowest to widest), then random ones, ``n`` in all (deterministic)."""
    ratios = sorted({c / g.width for g in supernet.space.groups for c in g.choices} or {1.0})
    uniform = []
    for r in np.linspace(min(ratios), max(ratios), max(2, min(n, 5))):
        s = supernet.space.uniform(float(r))
        if s not in uniform:
            uniform.append(s)
    out = uniform[:n]
    rng = random.Random(20240601)
    while len(out) < n and len(out) < supernet.space.size():
        s = supernet.space.sample(rng)
        if s not in out:
            out.append(s)
    return out


def calibration_rows(table: LatencyTable, supernet) -> tuple[list[Subnet], list[float], float]:
    """The table's end-to-end rows: their subnets, latencies (ms) and the reference probe of their run."""
    models = table.of_kind("model")
    by_hash = {s.hash: s for s in calibration_subnets(supernet, len(models))}
    rows = [(by_hash[h], float(m), float(p)) for h, m, p in zip(models["signature"], models["median_ms"], models["probe_ms"])
            if h in by_hash]
    probe_ms = float(np.median([p for *_, p in rows])) if rows else float("nan")
    return [s for s, *_ in rows], [m for _, m, _ in rows], probe_ms
