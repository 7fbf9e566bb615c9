"""Budgets on a subnet's cost: ``latency<=5ms``, ``flops<=0.5x``, ``params<=2M``, ``latency[int8_t1]<=2ms``.

A budget is an upper bound that may be met exactly: ``latency<0.5x`` (and ``≤``, ``=<``) reads as
``latency<=0.5x``; the command lines' ``--help`` says so.

A latency budget may name its *target*, a latency configuration of its own (``latency.targets.NAME`` in the
YAML config: backend, device, threads, batch, dtype, table): ``latency[NAME]<=...``. A plain ``latency<=...``
is the default target (the ``latency:`` section itself, also reachable as ``latency[default]``). Each target's
budget is costed by its own latency table (the search's cost column :attr:`Constraint.column`,
``latency_ms[NAME]``) and checked by measurement on its own target. FLOPs and params take no target.

A relative budget ("0.5x") is a fraction of a reference, normally the original model's value; it must be
resolved to an absolute limit (:meth:`Constraint.resolve`) before a search can use it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Optional

import numpy as np

from ..errors import BudgetUnreachable, SlimnasError

METRICS = ("latency_ms", "flops", "params")
ALIASES = {"latency": "latency_ms", "latency_ms": "latency_ms", "ms": "latency_ms", "flops": "flops", "params": "params"}
LABELS = {"latency_ms": "latency", "flops": "FLOPs", "params": "params"}
# unit suffix -> multiplier, per metric ("x" is handled apart: it makes the constraint relative)
UNITS = {
    "latency_ms": {"": 1.0, "ms": 1.0, "us": 1e-3, "s": 1e3},
    "flops": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9},
    "params": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9},
}
EXAMPLES = "e.g. latency<=5ms, flops<=0.5x, params<=2M, latency[int8_t1]<=0.3x"
DEFAULT_TARGET = "default"  # the name of the latency: section's own target (a plain ``latency<=...``)
TARGET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_FORM = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\[\s*([^\]]*?)\s*\])?\s*(<=|=<|<|≤)\s*(.*?)\s*$")
_VALUE = re.compile(r"^([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)$")


@dataclass(frozen=True)
class Constraint:
    """An upper bound on one cost metric of a subnet."""

    metric: str  # "latency_ms" | "flops" | "params"
    limit: float  # absolute limit in the metric's unit (ms, FLOPs, parameters); for relative ones, the fraction
    relative: bool = False  # True for "0.5x": limit is a fraction of a reference (the original model's value)
    text: str = ""  # as the user wrote it
    reference: Optional[float] = None  # the reference a relative constraint was resolved against
    target: Optional[str] = None  # latency only: a named target of latency.targets (None: the default target)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SlimnasError(f"unknown constraint metric {self.metric!r}: use one of {', '.join(METRICS)}")
        if self.target == DEFAULT_TARGET:  # latency[default] is a plain latency budget
            object.__setattr__(self, "target", None)
        if self.target is not None and self.metric != "latency_ms":
            raise SlimnasError(f"constraint {self.text or self.metric!r}: only a latency budget names a target "
                                   f"({LABELS[self.metric]} is the same on every device); drop the [{self.target}]")
        if not (self.limit > 0 and math.isfinite(self.limit)):
            raise SlimnasError(f"constraint {self.text or self.metric!r}: the limit must be a positive number")

    @property
    def column(self) -> str:
        """The cost this budget bounds, as the search's cost functions and history columns name it:
        ``latency_ms`` (the default target), ``latency_ms[NAME]`` (a named target), ``flops``, ``params``."""
        return target_column(self.target) if self.metric == "latency_ms" else self.metric

    @property
    def label(self) -> str:
        """``latency``, ``latency[NAME]``, ``FLOPs`` or ``params``: what the budget is on, in words."""
        return LABELS[self.metric] + (f"[{self.target}]" if self.target is not None else "")

    def resolve(self, reference: float) -> "Constraint":
        """An absolute constraint: a relative limit times ``reference``; an absolute one is returned as is."""
        if not self.relative:
            return self
        if not (reference > 0 and math.isfinite(reference)):
            raise SlimnasError(f"cannot resolve {self.describe()}: the reference value {reference!r} is not positive")
        return replace(self, limit=self.limit * float(reference), relative=False, reference=float(reference))

    def ok(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask: which ``values`` satisfy the constraint (``values <= limit``)."""
        if self.relative:
            raise SlimnasError(f"constraint {self.describe()} is relative: resolve it against the original model first")
        return np.asarray(values, dtype=float) <= self.limit

    def describe(self) -> str:
        """The budget in words, e.g. ``latency budget 2.00 ms (0.5x of 4.00 ms)``."""
        if self.relative:
            return f"{self.label} budget {self.limit:g}x"
        out = f"{self.label} budget {format_value(self.metric, self.limit)}"
        if self.reference is not None:
            out += f" ({self.limit / self.reference:.3g}x of {format_value(self.metric, self.reference)})"
        return out

    def key(self) -> dict:
        """What identifies the constraint in a saved search (the text is only how it was written)."""
        key = {"metric": self.metric, "limit": float(self.limit), "relative": bool(self.relative)}
        if self.target is not None:  # absent for the default target: saved searches of earlier runs still match
            key["target"] = self.target
        return key


def target_column(target: Optional[str]) -> str:
    """The search's latency cost column of a target (None or ``default``: ``latency_ms``)."""
    return "latency_ms" if target in (None, DEFAULT_TARGET) else f"latency_ms[{target}]"


def format_value(metric: str, value: float, up: bool = False) -> str:
    """A cost in its unit with 3 significant digits (``up``: rounded up, so the text is never below ``value``)."""
    if metric == "latency_ms":
        return f"{_sig3(value, up)} ms"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{_sig3(value / div, up)}{suffix}"
    return _sig3(value, up)


def _sig3(x: float, up: bool) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    scale = 10 ** (math.floor(math.log10(abs(x))) - 2)
    if up:
        x = math.ceil(round(x / scale, 9)) * scale
    return f"{float(f'{x:.3g}'):g}" if abs(x) < 1e6 else f"{x:.3g}"


def parse_constraint(text: str) -> Constraint:
    """Read ``METRIC<=VALUE[UNIT]``: latency in ms (or ``x`` of the original), FLOPs and params with k/M/G or x.
    ``<`` is read as ``<=`` (a budget met exactly is met). ``latency[NAME]<=...`` bounds the latency on the
    named target ``NAME`` of ``latency.targets`` (whether it exists is checked against the config, see
    :func:`check_targets`)."""
    raw = str(text)
    m = _FORM.match(raw)
    if not m:
        if re.match(r"^\s*[A-Za-z_]+\s*(\[[^\]]*\])?\s*(>=|>|=)", raw):
            raise SlimnasError(f"constraint {raw!r} must be an upper bound written with <=, {EXAMPLES}")
        raise SlimnasError(f"cannot read constraint {raw!r}: write METRIC<=VALUE or latency[TARGET]<=VALUE, {EXAMPLES}")
    name, target, _, value = m.groups()
    metric = ALIASES.get(name.lower())
    if metric is None:
        raise SlimnasError(f"unknown constraint {raw!r}: use latency, flops or params, {EXAMPLES}")
    if target is not None and not TARGET_NAME.match(target):
        raise SlimnasError(f"constraint {raw!r}: the target in brackets must be a name of latency.targets (letters, "
                           f"digits and _), e.g. latency[int8_t1]<=2ms")
    v = _VALUE.match(value)
    if not v:
        raise SlimnasError(f"cannot read the value of constraint {raw!r}: write a positive number with an optional unit, {EXAMPLES}")
    number, unit = float(v.group(1)), v.group(2).lower()
    if number <= 0:
        raise SlimnasError(f"constraint {raw!r}: the limit must be positive")
    if unit == "x":
        return Constraint(metric, number, relative=True, text=raw.strip(), target=target)
    scale = UNITS[metric].get(unit)
    if scale is None:
        units = ", ".join(u for u in UNITS[metric] if u) + " or x (times the original model)"
        raise SlimnasError(f"constraint {raw!r}: unknown unit {v.group(2)!r} for {LABELS[metric]}; use {units}")
    return Constraint(metric, number * scale, relative=False, text=raw.strip(), target=target)


def parse_constraints(texts: Iterable[str], targets: Optional[Iterable[str]] = None) -> list[Constraint]:
    """Parse several constraints; two on the same metric and target are refused. With ``targets`` (the names
    of ``latency.targets``), a latency budget naming any other target is refused too."""
    out: list[Constraint] = []
    for t in texts:
        c = parse_constraint(t)
        twin = next((o for o in out if o.column == c.column), None)
        if twin is not None:
            raise SlimnasError(f"two constraints on {c.label} ({twin.text!r} and {c.text!r}): keep one")
        out.append(c)
    if targets is not None:
        check_targets(out, targets)
    return out


def check_targets(constraints: Iterable[Constraint], targets: Iterable[str]) -> None:
    """Refuse a budget on a target that ``latency.targets`` does not define."""
    names = sorted(targets)
    for c in constraints:
        if c.target is not None and c.target not in names:
            have = (f"latency.targets defines {', '.join(names)}" if names else "latency.targets defines none")
            raise SlimnasError(f"constraint {c.text!r} names target {c.target!r} but {have}: add latency.targets."
                               f"{c.target} ({{backend, device, threads, batch, dtype}}; on the command line --target "
                               f"{c.target}:KEY=VALUE,...) or fix the name")


def resolve_constraints(constraints: Iterable[Constraint], reference: Mapping[str, float]) -> list[Constraint]:
    """Every relative constraint resolved against ``reference[column]`` (the original model's costs, a
    latency per target column)."""
    out = []
    for c in constraints:
        if c.relative and c.column not in reference:
            raise SlimnasError(f"constraint {c.text or c.describe()!r} is relative but no reference {c.column} was given")
        out.append(c.resolve(reference[c.column]) if c.relative else c)
    return out


def check_reachable(constraints: Iterable[Constraint], smallest: dict[str, float]) -> None:
    """Raise if even the smallest subnet (its cost per column in ``smallest``) breaks a constraint."""
    bad = []
    for c in constraints:
        v = smallest[c.column]
        if not bool(c.ok(np.array([v]))[0]):
            what = "predicted" if c.metric == "latency_ms" else "analytic"
            bad.append(f"{c.describe()} is below the smallest subnet ({format_value(c.metric, v)} {what}): "
                       f"raise it to at least {format_value(c.metric, v, up=True)}")
    if bad:
        raise BudgetUnreachable("; ".join(bad))
