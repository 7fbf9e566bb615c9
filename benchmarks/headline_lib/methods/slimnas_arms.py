"""The slimnas arms: supernet training with ``sandwich``, ``cafenet`` or ``bsnas`` and latency-sensitive bins,
then slimnas's own latency-constrained search with on-device verification (the pipeline of issue 5).

Not wired yet: the pipeline (``slimnas.slim``) is being built on another branch. Until it lands these
methods report themselves unavailable, and asking for them is a one-line error, never a made-up result.
"""
from __future__ import annotations

from typing import Optional

from slimnas.errors import SlimnasError

from .base import Budget, Method, Searched, Timers, method

PENDING = ("the slimnas arms need the search pipeline of issue 5 (slimnas.slim), which this branch does not have "
           "yet; run the peers only with --methods uniform,torch-pruning,fastnas")


class SlimnasArm(Method):
    strategy = ""
    knob_name = "latency budget (slimnas search)"

    @classmethod
    def unavailable(cls) -> Optional[str]:
        return PENDING  # until the pipeline lands and is wired here

    def search(self, budget: Budget, timers: Timers) -> Searched:
        raise SlimnasError(PENDING)


@method
class SlimnasSandwich(SlimnasArm):
    name = "slimnas-sandwich"
    strategy = "sandwich"


@method
class SlimnasCafenet(SlimnasArm):
    name = "slimnas-cafenet"
    strategy = "cafenet"


@method
class SlimnasBsnas(SlimnasArm):
    name = "slimnas-bsnas"
    strategy = "bsnas"
