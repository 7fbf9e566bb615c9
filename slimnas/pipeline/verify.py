"""On-device verification: the chosen subnet meets the budget by measurement, not only by prediction.

Each round exports the ``top_k`` most accurate Pareto candidates not yet measured (with the arrangement that
won their score) and times them end to end in one fresh process, interleaved with the original model and
the reference probe. A relative latency budget ("0.6x") is checked against the original as measured in the
same run, so a change of machine speed affects both sides alike. Every latency here is the quietest round's
median of an interleaved timing (the statistic the latency tables are calibrated on); the even-vs-odd-rounds
disagreement of that statistic is each timing's own repeat error. The most accurate candidate whose measured
median meets every budget is chosen; if none does, the next round takes candidates whose prediction,
corrected by the round's measured/predicted ratio, fits the budget. ``verify.csv`` records predicted vs
measured (median, p10, p90 and the spread of the rounds' medians) for every candidate timed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import SlimnasError
from ..fileio import atomic_write_text
from ..search import Constraint, SearchResult
from ..subnet import Subnet
from .config import LatencyConfig, VerifyConfig
from ..latency.e2e import export_subnets
from .device import time_models

CSV = "verify.csv"


@dataclass(frozen=True)
class Verified:
    chosen: Subnet  # arranged: the channels export keeps
    table: pd.DataFrame  # one row per timed model and round (the original included)
    row: dict  # the chosen candidate's row


def latency_limit(constraints: Sequence[Constraint], original_ms: float) -> Optional[float]:
    """The latency budget in ms with relative budgets taken against ``original_ms`` (measured in the same run)."""
    limits = [c.limit * original_ms if c.relative else c.limit for c in constraints if c.metric == "latency_ms"]
    return min(limits) if limits else None


def _candidates(pareto: pd.DataFrame, measured: set, k: int, predicted_limit: Optional[float]) -> pd.DataFrame:
    rest = pareto[~pareto["hash"].isin(measured)]
    if predicted_limit is not None and "latency_ms" in rest:
        fits = rest[rest["latency_ms"] <= predicted_limit]
        rest = fits if len(fits) else rest.sort_values("latency_ms").head(k)
    return rest.sort_values(["accuracy", "hash"], ascending=[False, True], kind="stable").head(k)


def verify(net, fitness, result: SearchResult, constraints: Sequence[Constraint], backend, latency: LatencyConfig,
           config: VerifyConfig, original_onnx: Path, folder: Path, original_at_search_ms: Optional[float],
           log: Callable[[str], None] = print) -> Verified:
    """Measure candidates round by round until one meets every budget (see the module's description).

    ``constraints`` are as the user wrote them (relative ones unresolved); ``original_at_search_ms`` is the
    original's timing the predictions were anchored on, so each round's predictions can follow that round's.
    """
    pareto = result.pareto.copy()
    if pareto.empty:
        raise SlimnasError("the search found no subnet within the budget to verify")
    rows: list[dict] = []
    measured: set = set()
    predicted_limit = None
    chosen_row = None
    for rnd in range(1, config.rounds + 1):
        picks = _candidates(pareto, measured, config.top_k, predicted_limit)
        if picks.empty:
            break
        subnets = [fitness.arranged(Subnet.from_json(t)) for t in picks["subnet"]]
        paths = export_subnets(net, subnets, folder, latency.batch)
        log(f"verify round {rnd}: timing {len(paths)} candidates and the original end to end (fresh process)")
        timings, probe, _ = time_models([original_onnx] + paths, backend, latency, log)
        original = timings[0]
        limit = latency_limit(constraints, original["median_ms"])
        scale = original["median_ms"] / original_at_search_ms if original_at_search_ms else 1.0
        rows.append({"round": rnd, "model": "original", "hash": "", "accuracy": np.nan, "predicted_ms": np.nan,
                     "predicted_now_ms": np.nan, **_timing(original), "ratio_to_original": 1.0, "budget_ms": limit,
                     "meets_budget": np.nan, "error_pct": np.nan, "probe_ms": probe, "flops": np.nan, "params": np.nan,
                     "chosen": False})
        ratios = []
        for (_, p), sub, t in zip(picks.iterrows(), subnets, timings[1:]):
            pred = float(p["latency_ms"]) if "latency_ms" in p else np.nan
            pred_now = pred * scale
            ratio = ratio_to_original(t, original)
            ok = meets_latency(constraints, t["median_ms"], ratio)
            ok = ok and all(bool(c.ok([float(p[c.metric])])[0]) for c in constraints if c.metric != "latency_ms" and not c.relative)
            rows.append({"round": rnd, "model": "candidate", "hash": sub.hash, "accuracy": float(p["accuracy"]),
                         "predicted_ms": pred, "predicted_now_ms": pred_now, **_timing(t), "ratio_to_original": ratio,
                         "budget_ms": limit, "meets_budget": bool(ok),
                         "error_pct": (pred_now - t["median_ms"]) / t["median_ms"] * 100, "probe_ms": probe,
                         "flops": float(p.get("flops", np.nan)), "params": float(p.get("params", np.nan)),
                         "chosen": False, "subnet": sub.to_json()})
            measured.add(p["hash"])
            if np.isfinite(pred):
                ratios.append(t["median_ms"] / pred)
        ok_rows = [r for r in rows if r["model"] == "candidate" and r["round"] == rnd and r["meets_budget"]]
        if ok_rows:
            chosen_row = max(ok_rows, key=lambda r: (r["accuracy"], -r["median_ms"]))
            chosen_row["chosen"] = True
            break
        if limit is not None and ratios:
            predicted_limit = limit / float(np.median(ratios))
            log(f"verify round {rnd}: none met the budget ({limit:.3f} ms) by measurement; measured/predicted "
                f"{np.median(ratios):.3f}: next, candidates predicted within {predicted_limit:.3f} ms")
    table = pd.DataFrame(rows)
    atomic_write_text(folder.parent / CSV, table.to_csv(index=False))
    if chosen_row is None:
        fastest = min((r for r in rows if r["model"] == "candidate"), key=lambda r: r["median_ms"])
        budget = "; ".join(c.text or c.describe() for c in constraints if c.metric == "latency_ms")
        raise SlimnasError(f"no candidate met the budget ({budget}) by measurement after {config.rounds} rounds; the "
                           f"fastest measured {fastest['median_ms']:.3f} ms, {fastest['ratio_to_original']:.3f}x of the "
                           "original in the same run: loosen the budget or raise verify.rounds / verify.top_k")
    return Verified(Subnet.from_json(chosen_row["subnet"]), table, chosen_row)


def _timing(t: dict) -> dict:
    return {"median_ms": t["median_ms"], "p10_ms": t["p10_ms"], "p90_ms": t["p90_ms"], "spread_pct": t["spread_pct"],
            "repeat_pct": t.get("repeat_pct", float("nan")), "round_medians_ms": json.dumps([round(v, 6) for v in t.get("round_medians_ms", [])])}


def ratio_to_original(candidate: dict, original: dict) -> float:
    """Candidate over original, both timed in the same run, interleaved, each by the quietest round's median
    (other jobs on a shared machine only ever slow a round down, so it is the most repeatable statistic)."""
    return float(candidate["median_ms"] / original["median_ms"])


def meets_latency(constraints: Sequence[Constraint], median_ms: float, ratio: float) -> bool:
    """An absolute budget holds for the measured latency; a relative one ("0.6x") for the ratio to the original
    timed in the same run."""
    return all((ratio <= c.limit) if c.relative else (median_ms <= c.limit) for c in constraints
               if c.metric == "latency_ms")


def load_verified(out: Path) -> Optional[Verified]:
    """The verification a previous invocation finished (``verify.csv`` with a chosen row and ``subnet.json``)."""
    f, s = out / CSV, out / "subnet.json"
    if not (f.is_file() and s.is_file()):
        return None
    table = pd.read_csv(f)
    chosen = table[table["chosen"] == True]  # noqa: E712
    if chosen.empty:
        return None
    row = chosen.iloc[0].to_dict()
    return Verified(Subnet.from_json(s.read_text()), table, row)
