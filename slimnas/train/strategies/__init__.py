"""Training strategies: the contract (:mod:`.base`), the registry (:mod:`.registry`) and the built-ins."""
from .base import StepContext, Strategy
from .registry import STRATEGIES, make_strategy, strategy
from . import bsnas, cafenet, distill, plain, sandwich  # noqa: F401,E402  (the built-ins register themselves)

__all__ = ["STRATEGIES", "StepContext", "Strategy", "make_strategy", "strategy"]
