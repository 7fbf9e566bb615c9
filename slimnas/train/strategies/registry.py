"""The training strategies by name: ``@strategy("name")`` registers a class, :func:`make_strategy` builds one.

The registry knows no strategy: each built-in registers itself when :mod:`slimnas.train.strategies` imports
it, and a user's own strategy registers the same way when its module is imported.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

from torch import nn

from ...errors import SlimnasError
from ...space import SearchSpace

if TYPE_CHECKING:
    from .base import Strategy

STRATEGIES: dict[str, type["Strategy"]] = {}


def strategy(name: str):
    """Class decorator: register a :class:`~.base.Strategy` subclass under ``name``."""

    def deco(cls):
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


def make_strategy(name: str, net: nn.Module, space: Optional[SearchSpace] = None, **options) -> "Strategy":
    """Build a registered strategy by name, checking its options."""
    if name not in STRATEGIES:
        raise SlimnasError(f"unknown training strategy {name!r}: choose one of {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[name]
    known = {f.name: f for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SlimnasError(f"strategy {name!r} has no option {', '.join(unknown)}; its options: {', '.join(known) or 'none'}")
    try:
        opts = cls.Options(**options)
    except (TypeError, ValueError) as exc:
        raise SlimnasError(f"bad options for strategy {name!r}: {exc}") from None
    return cls(net, opts, space)
