"""Shared set-up of the search tests: a real supernet's analytic costs and a smooth, deterministic accuracy.

The accuracy is a stand-in (the engine, not the supernet's accuracy, is under test): it rises with every
group's width with diminishing returns, and the groups weigh differently, so the Pareto front is not trivial.
"""
from __future__ import annotations

import math
import time

import slimnas

from .nets import TinyNet

SIZE = 16


def tiny_supernet(size: int = SIZE):
    return slimnas.convert(TinyNet().eval(), size)


class SmoothAccuracy:
    """``accuracy(subnet)`` in (0, 1); counts its calls and can sleep to stand in for an expensive evaluation."""

    def __init__(self, space, sleep_s: float = 0.0):
        self.space = space
        self.weights = {g.name: 1.0 + (i % 3) for i, g in enumerate(space.groups)}
        self.sleep_s = sleep_s
        self.calls: list[str] = []

    def __call__(self, subnet) -> float:
        self.calls.append(subnet.hash)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        total = sum(self.weights.values())
        s = sum(w * (1 - math.exp(-2.5 * subnet[n] / self.space[n].width)) for n, w in self.weights.items())
        return round(s / total, 12)
