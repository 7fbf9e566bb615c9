"""Training strategies, by name: ``plain``, ``distill``, ``sandwich``, ``cafenet``, ``bsnas`` (see :func:`make_strategy`)."""
from .base import STRATEGIES, StepContext, Strategy, make_strategy, strategy
from . import bsnas, cafenet, distill, plain, sandwich  # noqa: F401,E402  (register the built-in strategies)

__all__ = ["STRATEGIES", "StepContext", "Strategy", "make_strategy", "strategy"]
