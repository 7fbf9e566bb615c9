"""Latency targets of a run: the ``latency:`` section (the *default* target, a plain ``latency<=...``) and
each ``latency.targets.NAME`` (``latency[NAME]<=...``).

A target is one runtime the chosen subnet must meet its budget on: a backend, device, thread count, batch and
dtype, with its own latency table (given, shipped, or profiled into the run folder) whose predictions cost the
search's column ``latency_ms[NAME]``, its own end-to-end timing of the original model (the reference: the
anchor of its predictions, and what its relative budgets are fractions of) and its own measurements in
verification. Its files live in ``latency/`` (the default target, as before targets existed) or
``latency/targets/NAME/`` of the run folder.

What a relative budget is a fraction of (``relative_to``): ``fp32``, the default, is the original model in
FP32 on the target's own backend, device, threads and batch, timed in the same process as the target's own
measurements and interleaved with them: on an INT8 target ``latency[int8_t1]<=0.3x`` is 0.3 of the FP32
original, "0.3 of what I run today", on the same machine and thread count (a thread count or batch is part
of the deployment being compared, not of the model). ``own`` is the original in the target's dtype. For an
FP32 target both are the same timing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..errors import SlimnasError
from ..latency import LatencyPredictor
from ..latency.backends.base import Backend
from ..search import Constraint
from ..search.constraints import DEFAULT_TARGET, target_column
from .config import LatencyConfig

logger = logging.getLogger(__name__)

DEFAULT = DEFAULT_TARGET
CALIBRATED = "calibration.json"  # written last by the profiler: a table profiled into the run is complete


def target_folder(name: str) -> str:
    """Where a target's reference timing, original model and profiled table live, relative to the run folder."""
    return "latency" if name == DEFAULT else f"latency/targets/{name}"


def where(name: str) -> str:
    """How errors name a target's settings: ``latency`` or ``latency.targets.NAME``."""
    return "latency" if name == DEFAULT else f"latency.targets.{name}"


@dataclass
class Target:
    """One latency target of a run, as :func:`slimnas.pipeline.prepare.prepare` opens it."""

    name: str  # DEFAULT for the latency: section
    config: LatencyConfig  # the target's runtime with the latency: section's timing settings (no targets)
    backend: Backend
    table: Optional[Path]  # the latency table in use (a profiled one may not exist yet; None: none fits, see open_target)
    profiled: bool = False  # the table is (to be) profiled into the run folder
    predictor: Optional[LatencyPredictor] = None  # at the speed of the reference timing once anchored
    reference: Optional[dict] = None  # end-to-end timing of the original and the smallest subnet (measure_reference)
    speed: dict = field(default_factory=dict)  # how the predictor was set to the reference timing's speed

    @property
    def default(self) -> bool:
        return self.name == DEFAULT

    @property
    def column(self) -> str:
        """The search's cost column of this target's latency: ``latency_ms`` or ``latency_ms[NAME]``."""
        return target_column(self.name)

    @property
    def folder(self) -> str:
        return target_folder(self.name)

    @property
    def probe(self) -> str:
        """The reference probe of this target's table (the one a table profiled into the run will be built on
        while it does not exist yet): every end-to-end timing of the target times it."""
        from ..latency.probe import default_probe, table_probe
        from ..latency.table import FINGERPRINT

        if self.predictor is not None:
            return self.predictor.table.probe
        if self.table is not None and (Path(self.table) / FINGERPRINT).is_file():
            return table_probe(json.loads((Path(self.table) / FINGERPRINT).read_text()))
        return default_probe(self.config.dtype)

    @property
    def budget_dtype(self) -> str:
        """The dtype of the original a relative budget on this target is a fraction of."""
        return "fp32" if self.config.relative_to == "fp32" else self.config.dtype

    def constraints(self, constraints: Sequence[Constraint]) -> list[Constraint]:
        """The latency budgets on this target."""
        return [c for c in constraints if c.metric == "latency_ms" and c.column == self.column]

    def describe(self) -> str:
        c = self.config
        return f"{self.name} ({c.backend} {c.device}, {c.threads} thread(s), batch {c.batch}, {c.dtype})"


def open_target(name: str, config: LatencyConfig, backend: Backend, net, profile_into: Optional[Path] = None) -> Target:
    """Target ``name`` with its latency table checked against this device, model and input shape (its predictor
    not yet anchored). The table is ``config.table`` when given, else a shipped one whose fingerprint fits
    (:func:`.device.find_table`), else ``profile_into/table``, to be profiled there (``slimnas slim``: no
    predictor until it is); without ``profile_into`` (``slimnas search``, which profiles nothing) a target that no
    table fits has neither table nor predictor."""
    from .device import find_table, open_predictor

    if config.table is not None:
        table = Path(config.table).expanduser()
        if not (table / "fingerprint.json").is_file():
            raise SlimnasError(f"{where(name)}.table: latency table {table} does not exist (no fingerprint.json); build "
                               f"one with `slimnas profile`")
        table = table.resolve()
    else:  # a shipped table that fits; else one profiled into the run folder
        table = find_table(net, backend)
        if table is None:
            if profile_into is None:
                return Target(name, config, backend, None)
            table = profile_into / "table"
            if not (table / CALIBRATED).is_file():  # not there, or a profile killed half-way (it resumes)
                logger.info(f"no shipped latency table fits target {name} ({config.backend} {config.device} "
                            f"t{config.threads} b{config.batch} {config.dtype}) and this model: one will be profiled "
                            f"into {table}")
    profiled = profile_into is not None and table == profile_into / "table"
    usable = (table / CALIBRATED).is_file() if profiled else True
    try:
        predictor = open_predictor(table, net, backend) if usable else None
    except SlimnasError as exc:
        raise SlimnasError(f"{where(name)}: {exc}" if name != DEFAULT else str(exc)) from None
    return Target(name, config, backend, table, profiled, predictor)


def checkable_before_timing(c: Constraint, targets: Sequence[Target]) -> bool:
    """Whether a latency budget can be checked on predictions alone, before the original is timed (its target has
    a predictor, and a relative budget is a fraction of the original in the table's own dtype)."""
    t = next(t for t in targets if t.column == c.column)
    return t.predictor is not None and (not c.relative or t.budget_dtype == t.config.dtype)


def target_costs(net, subnet, targets: Sequence[Target], measured: bool = False) -> dict:
    """FLOPs, params and every target's latency of ``subnet`` (cost column: value): predicted, or (``measured``, for
    a target whose table is still to be profiled) the reference timing's own (``subnet`` is then the smallest); a
    target with neither has no entry."""
    out = {"flops": net.flops(subnet), "params": net.params(subnet)}
    for t in targets:
        if t.predictor is not None:
            out[t.column] = float(t.predictor.predict([subnet])[0])
        elif measured and t.reference is not None:
            out[t.column] = float(t.reference["smallest"]["median_ms"])
    return out


def reference_costs(net, targets: Sequence[Target]) -> dict:
    """The original's costs relative budgets are fractions of: its FLOPs, params and the latency of each target
    timed (the original in the budget's dtype, by the target's reference timing; see :func:`budget_original`)."""
    original = net.space.original()
    out = {"flops": net.flops(original), "params": net.params(original)}
    for t in targets:
        if t.reference is not None:
            out[t.column] = float(budget_original(t.reference)["median_ms"])
    return out


def budget_original(reference: dict) -> dict:
    """The timing of the original a relative budget is a fraction of, from a reference timing: the FP32 original
    where the target runs another dtype and ``relative_to`` is fp32, else the original in the target's dtype."""
    return reference.get("original_fp32") or reference["original"]


def reference_dtypes(target: Target) -> Optional[list[str]]:
    """The dtypes of (original, original as the budget's reference) when they differ, else None (one timing)."""
    if target.budget_dtype == target.config.dtype:
        return None
    return [target.config.dtype, target.budget_dtype]


def target_rows(targets: Sequence[Target], constraints: Sequence[Constraint], verify, chosen: dict) -> list[dict]:
    """One row per target for the report: the chosen subnet's measured latency there (the round it was chosen in),
    the budget in ms, the share of it used, the ratio to the original the relative budgets are fractions of, and
    whether every budget on that target is met by that measurement."""
    import numpy as np

    def num(v) -> Optional[float]:
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)

    out = []
    for t in targets:
        rows = verify[(verify["target"] == t.name) & (verify["round"] == chosen["round"])]
        mine = rows[rows["hash"] == chosen["hash"]]
        if mine.empty:
            continue
        r = mine.iloc[0]
        orig = rows[rows["model"] == "original"]
        budget_model = f"original_{t.budget_dtype}" if reference_dtypes(t) else "original"
        base = rows[rows["model"] == budget_model]
        out.append({"name": t.name, "runtime": t.describe(), "dtype": t.config.dtype,
                    "budgets": [c.text or c.describe() for c in t.constraints(constraints)],
                    "median_ms": float(r["median_ms"]), "predicted_now_ms": num(r.get("predicted_now_ms")),
                    "budget_ms": num(r.get("budget_ms")), "budget_share": num(r.get("budget_share")),
                    "ratio_to_original": float(r["ratio_to_original"]),
                    "original_ms": float(orig["median_ms"].iloc[0]) if len(orig) else None,
                    "reference_ms": float(base["median_ms"].iloc[0]) if len(base) else None,
                    "reference": (f"the {t.budget_dtype.upper()} original" if reference_dtypes(t)
                                  else f"the original in {t.config.dtype.upper()}"),
                    "meets": bool(r.get("meets_target", r.get("meets_budget"))), "repeat_pct": num(r.get("repeat_pct"))})
    return out
