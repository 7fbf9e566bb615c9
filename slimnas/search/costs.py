"""Vectorised cost look-ups for the search: one call per metric for a whole batch of subnets."""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..subnet import Subnet
from .constraints import Constraint

CostFn = Callable[[Sequence[Subnet]], np.ndarray]


def supernet_costs(supernet, predictor=None, targets: Optional[Mapping[str, object]] = None) -> dict[str, CostFn]:
    """The search's cost functions for a supernet: analytic ``flops`` and ``params``, and ``latency_ms`` from a
    :class:`~slimnas.latency.LatencyPredictor` when one is given; ``targets`` adds one latency column per named
    target (``{"latency_ms[int8_t1]": its predictor}``). All are vectorised over a list of subnets."""
    out: dict[str, CostFn] = {
        "flops": lambda subnets: supernet.cost.flops(supernet.widths_matrix(subnets)),
        "params": lambda subnets: supernet.cost.params(supernet.widths_matrix(subnets)),
    }
    if predictor is not None:
        out["latency_ms"] = predictor.predict
    for column, p in (targets or {}).items():
        out[column] = p.predict
    return out


class CostTable:
    """Costs of subnets by metric; the values of scored subnets are kept by hash.

    Keeping them is right because cost functions are pure: a latency predictor's calibration and speed are fixed
    when it is made (re-speeding one makes a new predictor, and so a new cost table).
    """

    def __init__(self, costs: Mapping[str, CostFn], constraints: Sequence[Constraint]):
        self.fns = dict(costs)
        self.keys = list(self.fns)
        self.constraints = list(constraints)
        self._values: dict[str, np.ndarray] = {}

    def compute(self, subnets: Sequence[Subnet], keys: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
        """Fresh values (not kept) of ``keys`` (default: all metrics) for ``subnets``."""
        subnets = list(subnets)
        out = {}
        for k in self.keys if keys is None else keys:
            v = np.asarray(self.fns[k](subnets), dtype=float).reshape(-1) if subnets else np.zeros(0)
            if len(v) != len(subnets):
                raise ValueError(f"cost function {k!r} returned {len(v)} values for {len(subnets)} subnets")
            out[k] = v
        return out

    def feasible(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """Which subnets meet every constraint (computes only the constrained metrics)."""
        mask = np.ones(len(subnets), dtype=bool)
        if not self.constraints or not len(subnets):
            return mask
        values = self.compute(subnets, [c.column for c in self.constraints])
        for c in self.constraints:
            mask &= c.ok(values[c.column])
        return mask

    def values(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """``[n, len(keys)]`` values of all metrics, computed once per hash."""
        missing = list({s.hash: s for s in subnets if s.hash not in self._values}.values())
        if missing:
            fresh = self.compute(missing)
            for i, s in enumerate(missing):
                self._values[s.hash] = np.array([fresh[k][i] for k in self.keys])
        if not subnets:
            return np.zeros((0, len(self.keys)))
        return np.stack([self._values[s.hash] for s in subnets])

    def column(self, key: str, subnets: Sequence[Subnet]) -> np.ndarray:
        return self.values(subnets)[:, self.keys.index(key)]
