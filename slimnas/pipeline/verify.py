"""On-device verification: the chosen subnet meets the budget by measurement, not only by prediction, and
spends it unless a narrower one is better beyond the scores' error.

Each round exports up to ``top_k`` candidates not yet measured (with the arrangement that won their score) and
times them end to end in one fresh process, interleaved with the original model and the reference probe. The
candidates come from every feasible subnet the search scored, not only its Pareto front: from those that no
cheaper one beats beyond ``margin_se`` paired standard errors (:func:`slimnas.search.pick.tolerant_front`),
the widest (nearest the budget) and the best-scoring one. A relative latency budget ("0.6x") is checked
against the original as measured in the same run, so a change of machine speed affects both sides alike.
Every latency here is the quietest round's median of an interleaved timing (the statistic the latency tables
are calibrated on); the even-vs-odd-rounds disagreement of that statistic is each timing's own repeat error.

Among the measured candidates that meet every budget, :func:`slimnas.search.pick.choose` picks the widest
unless a narrower one scores higher by more than ``margin_se`` paired SE; the reason is kept (``pick_reason``)
for the report. If none meets the budget, the next round takes candidates whose prediction, corrected by the
round's measured/predicted ratio, fits the budget; if the pick (with no evidence for a narrower one) uses less
than ``fill`` of the budget, the next round takes the candidates predicted, so corrected, between it and the
budget; where no scored candidate is predicted there, the search runs again under the budget so corrected
(``fill_search``, each such search in its own folder) and the round takes its candidates. With ``state_ms`` (the
original's latency in the machine state the budget is meant in), a round whose original times more than
``state_tol`` slower than that waits and is timed again while ``state_wait_s`` allows (:class:`StateWait`): a model's ratio
to the original moves with the machine's state, not only with noise. ``verify.csv`` records predicted vs measured (median, p10, p90 and the spread of the rounds' medians)
for every candidate timed.

Several latency targets (``latency.targets``, budgets ``latency[NAME]<=...``): every round times the same
candidates on every target, each in a fresh process of its own with that target's original (and, where the
target runs INT8 and its relative budgets are fractions of the FP32 original, the FP32 original too, in the
same rounds); a candidate meets the budget only if it meets every target's by that target's measurement.
``verify.csv`` has one row per round, target and model (column ``target``: ``default`` for the ``latency:``
section); the default target's rows are the ones a single-target run writes. A candidate's ``budget_share``
is that target's; ``binding_share``, the largest over its targets, is what the pick and ``verify.fill`` use.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import SlimnasError
from ..fileio import atomic_write_text
from ..search import Constraint, SearchResult
from ..search.pick import WIDER_DOMINATED, choose, tolerant_front
from ..subnet import Subnet
from .config import VerifyConfig
from ..latency.e2e import export_subnets
from .device import time_models
from .targets import DEFAULT, Target, reference_dtypes

logger = logging.getLogger(__name__)

CSV = "verify.csv"


@dataclass(frozen=True)
class Verified:
    chosen: Subnet  # arranged: the channels export keeps
    table: pd.DataFrame  # one row per timed model and round (the original included)
    row: dict  # the chosen candidate's row (with ``budget_share`` and ``pick_reason``)


def latency_limit(constraints: Sequence[Constraint], original_ms: float) -> Optional[float]:
    """The latency budget in ms with relative budgets taken against ``original_ms`` (measured in the same run)."""
    limits = [c.limit * original_ms if c.relative else c.limit for c in constraints if c.metric == "latency_ms"]
    return min(limits) if limits else None


def candidate_pool(history: pd.DataFrame, fitness, predicted_limit, margin_se: float,
                   fallback: int = 1) -> pd.DataFrame:
    """The feasible scored subnets (within ``predicted_limit`` when given: ms on ``latency_ms``, or a mapping of
    cost column to ms, one per target; if none is, the ``fallback`` fastest) that no cheaper one beats beyond
    ``margin_se`` paired SE, widest first; with ``score`` and ``se`` columns."""
    pool = history[history["feasible"].astype(bool)].drop_duplicates("hash")
    cost = "latency_ms" if "latency_ms" in pool else "flops"
    limits = predicted_limit if isinstance(predicted_limit, dict) else (
        {"latency_ms": predicted_limit} if predicted_limit is not None else {})
    limits = {k: v for k, v in limits.items() if k in pool}
    if limits:
        fits = pool[np.logical_and.reduce([pool[k].to_numpy(float) <= v for k, v in limits.items()])]
        pool = fits if len(fits) else pool.sort_values([cost, "hash"], kind="stable").head(fallback)
    if pool.empty:
        return pool.assign(score=[], se=[])
    values = np.stack([fitness.values(Subnet.from_json(t)) for t in pool["subnet"]])
    m = values.shape[1]
    pool = pool.assign(score=values.mean(axis=1), se=values.std(axis=1, ddof=1) / np.sqrt(m) if m > 1 else 0.0)
    keep = tolerant_front(values, pool[cost].to_numpy(float), margin_se)
    return pool[keep].sort_values([cost, "hash"], ascending=[False, True], kind="stable")


def one_per_network(history: pd.DataFrame, space) -> pd.DataFrame:
    """``history`` with each network once: the first row of the subnets that are one network (the same subnet
    hash, or widths that differ only inside blocks they drop; :meth:`slimnas.space.SearchSpace.canonical`), so
    no verification slot goes to a network timed already."""
    if history.empty:
        return history
    key = [space.canonical(Subnet.from_json(t)).hash if space.inner else h
           for t, h in zip(history["subnet"], history["hash"])]
    return history[~pd.Series(key, index=history.index).duplicated().to_numpy()]


def _dominated_between(history: pd.DataFrame, pool: pd.DataFrame, low: Optional[float], limits: dict) -> int:
    """How many feasible scored subnets are predicted between ``low`` (a pick that left the budget unused) and the
    measured budget (``limits``) while none of them is in ``pool``: each was set aside because a cheaper one scored
    higher beyond the margin, so nothing wider is worth timing (0 when there is no such pick, or some is in the pool)."""
    if low is None or "latency_ms" not in limits or "latency_ms" not in history:
        return 0
    def between(df: pd.DataFrame) -> pd.DataFrame:
        return df[(df["latency_ms"] > low) & (df["latency_ms"] <= limits["latency_ms"])] if "latency_ms" in df else df.iloc[:0]

    if len(between(pool)):
        return 0
    return len(between(history[history["feasible"].astype(bool)].drop_duplicates("hash")))


def _candidates(pool: pd.DataFrame, measured: set, k: int, low: Optional[float] = None) -> pd.DataFrame:
    """The widest ``k - 1`` of ``pool`` not yet measured (above ``low`` predicted ms when given) and the
    best-scoring one, widest first as ``pool`` is."""
    rest = pool[~pool["hash"].isin(measured)]
    if low is not None and "latency_ms" in rest:
        rest = rest[rest["latency_ms"] > low]
    if rest.empty:
        return rest
    best = rest.sort_values(["score", "hash"], ascending=[False, True], kind="stable").head(1)
    wide = rest[~rest["hash"].isin(best["hash"])].head(k - 1)
    return rest[rest["hash"].isin(set(wide["hash"]) | set(best["hash"]))]  # widest first, as the pool


def state_off(ms: float, state_ms: float) -> float:
    """How much slower (a fraction; negative: faster) the original times than in the budget's machine state."""
    return ms / state_ms - 1


def within_state(ms: float, state_ms: float, tol: float) -> bool:
    """At most ``tol`` slower than the budget's state: a quieter machine is as good, only slower states raise the
    ratios to the original (benchmarks/results/headline/ladder-xeon/). The headline's closing run uses it too."""
    return state_off(ms, state_ms) <= tol


@dataclass
class StateWait:
    """verify.state_ms's gate over one verification: how much slower than in the budget's machine state a round's
    original may time, and until when (``deadline``, time.monotonic()) a round off it may wait and be timed again."""

    ms: float
    tol: float
    poll_s: float
    deadline: float

    @classmethod
    def start(cls, config: VerifyConfig) -> Optional["StateWait"]:
        if config.state_ms is None:
            return None
        return cls(config.state_ms, config.state_tol, config.state_poll_s, time.monotonic() + config.state_wait_s)

    def off(self, ms: float) -> float:
        return state_off(ms, self.ms)

    def again(self, ms: float, rnd: int) -> bool:
        """Whether a round whose original timed ``ms`` should wait and be timed again (it sleeps first)."""
        if within_state(ms, self.ms, self.tol):
            return False
        off = self.off(ms)
        late = time.monotonic() + self.poll_s > self.deadline
        logger.info(f"verify round {rnd}: the original timed {ms:.4f} ms, {off:+.1%} from the budget's machine state "
                    f"({self.ms:.4f} ms, verify.state_ms; tolerance {self.tol:.0%}): "
                    + ("no time left to wait (verify.state_wait_s), taking it as it is" if late else
                       f"timing the round again in {self.poll_s:.0f} s"))
        if late:
            return False
        time.sleep(self.poll_s)
        return True


def _time_on(target: Target, net, picks: pd.DataFrame, subnets: list[Subnet], constraints: Sequence[Constraint],
             out: Path, default_batch: int, rnd: int, state: Optional[StateWait] = None) -> tuple[list[dict], dict]:
    """One round on one target: its original(s) and the candidates timed in one fresh process (again, while ``state``
    says the machine is off the budget's state and may wait); the rows, and this round's measured-over-predicted
    ratio and limit (``{"correction": ..., "limit": ...}``)."""
    cfg = target.config
    folder = out / "verify" if cfg.batch == default_batch else out / "verify" / f"b{cfg.batch}"
    paths = export_subnets(net, subnets, folder, cfg.batch)
    original_onnx = out / target.folder / "original.onnx"
    dtypes = reference_dtypes(target)
    files = [original_onnx] * (2 if dtypes else 1) + list(paths)
    while True:
        logger.info(f"verify round {rnd}: timing {len(paths)} candidates and the original end to end on target "
                    f"{target.describe()} (fresh process)")
        timings, probe, _ = time_models(files, target.backend, cfg,
                                        dtypes + [cfg.dtype] * len(paths) if dtypes else None, target.probe)
        original, base = timings[0], timings[1 if dtypes else 0]  # base: the original a relative budget is a fraction of
        if state is None or not state.again(base["median_ms"], rnd):
            break
    state_off = state.off(base["median_ms"]) * 100 if state is not None else np.nan
    cands = timings[2 if dtypes else 1:]
    mine = target.constraints(constraints)
    limit = latency_limit(mine, base["median_ms"])
    at_search = target.reference["original"]["median_ms"] if target.reference else None
    scale = original["median_ms"] / at_search if at_search else 1.0
    blank = {"accuracy": np.nan, "se": np.nan, "predicted_ms": np.nan, "predicted_now_ms": np.nan,
             "budget_share": np.nan, "binding_share": np.nan, "meets_target": np.nan, "meets_budget": np.nan,
             "error_pct": np.nan, "flops": np.nan, "params": np.nan, "chosen": False, "pick_reason": ""}
    rows = [{"round": rnd, "target": target.name, "model": "original", "hash": "", **blank, **_timing(original),
             "dtype": cfg.dtype, "ratio_to_original": original["median_ms"] / base["median_ms"], "budget_ms": limit,
             "probe_ms": probe, "state_off_pct": state_off}]
    if dtypes:
        rows.append({"round": rnd, "target": target.name, "model": f"original_{target.budget_dtype}", "hash": "",
                     **blank, **_timing(base), "dtype": target.budget_dtype, "ratio_to_original": 1.0,
                     "budget_ms": limit, "probe_ms": probe, "state_off_pct": state_off})
    other = [c for c in constraints if c.metric != "latency_ms" and not c.relative]  # FLOPs/params: analytic
    ratios = []
    for (_, p), sub, t in zip(picks.iterrows(), subnets, cands):
        pred = float(p[target.column]) if target.column in p and np.isfinite(p[target.column]) else np.nan
        ratio = ratio_to_original(t, base)
        ok = meets_latency(mine, t["median_ms"], ratio) and all(bool(c.ok([float(p[c.metric])])[0]) for c in other)
        rows.append({"round": rnd, "target": target.name, "model": "candidate", "hash": sub.hash,
                     "accuracy": float(p["score"]), "se": float(p["se"]), "predicted_ms": pred,
                     "predicted_now_ms": pred * scale, **_timing(t), "dtype": cfg.dtype, "ratio_to_original": ratio,
                     "budget_ms": limit, "budget_share": t["median_ms"] / limit if limit else np.nan,
                     "binding_share": np.nan, "meets_target": bool(ok),
                     "meets_budget": False, "error_pct": (pred * scale - t["median_ms"]) / t["median_ms"] * 100,
                     "probe_ms": probe, "state_off_pct": state_off, "flops": float(p.get("flops", np.nan)),
                     "params": float(p.get("params", np.nan)),
                     "chosen": False, "pick_reason": "", "subnet": sub.to_json()})
        if np.isfinite(pred):
            ratios.append(t["median_ms"] / pred)
    return rows, {"correction": float(np.median(ratios)) if ratios else None, "limit": limit}


def verify(net, fitness, result: SearchResult, constraints: Sequence[Constraint], targets: Sequence[Target],
           config: VerifyConfig, out: Path, research: Optional[Callable[[dict], SearchResult]] = None) -> Verified:
    """Measure candidates round by round on every target and pick one that meets every budget (see the module's
    description). ``constraints`` are as the user wrote them (relative ones unresolved); ``targets`` come from
    :func:`slimnas.pipeline.prepare.prepare` (the default first), each with its reference timing, whose original
    the predictions were anchored on, so each round's predictions can follow that round's. Writes
    ``out/verify.csv`` and the candidates' files under ``out/verify/``.

    ``research(limits)``, given the budget in predicted ms per cost column as a round's measurement corrected it,
    searches again under it and returns that search's result; it is called (at most ``config.research`` times) when
    a round's median measured/predicted ratio is off by more than ``config.research_tol`` and the round gave no
    pick, or one that left the budget unused. The candidates then come from both searches' histories."""
    history = one_per_network(result.history, net.space)
    if not history["feasible"].astype(bool).any():
        raise SlimnasError("the search found no subnet within the budget to verify")
    estimator = getattr(getattr(fitness, "config", None), "estimator", "top1")
    pool = candidate_pool(history, fitness, None, config.margin_se)
    limits: dict = {}  # the last round's budget in predicted ms per cost column, as its measurement corrected it
    filled = 0  # searches run to fill the budget (config.fill_search)
    rows: list[dict] = []
    measured: set = set()
    low = None  # after a pick that left budget unused: only candidates predicted above this
    chosen_row, pick = None, None
    default_batch = targets[0].config.batch
    researched = []  # the corrections each new search was run under (for the pick's reason)
    state = StateWait.start(config)  # the default target's rounds wait for the budget's machine state (verify.state_ms)
    dominated = 0  # when the rounds ran out of candidates: how many scored ones between the pick and the budget were set aside

    def search_again(rounds: dict, limits: dict):
        """The histories of both searches when this round's predictions were off enough to search again."""
        if research is None or not should_search_again([r["correction"] for r in rounds.values()], len(researched), config):
            return
        logger.info(f"verify: candidates measured {_corrections(rounds)} of their predictions: searching again under the "
                    "budget so corrected (" + ", ".join(f"{v:.4f} ms on {k}" for k, v in limits.items()) + ")")
        add_search(limits)
        researched.append(_corrections(rounds))

    def add_search(limits: dict) -> None:
        """Search again under ``limits``; its scored subnets join the candidates' history."""
        nonlocal history
        again = research(limits)
        history = one_per_network(pd.concat([history, again.history], ignore_index=True), net.space)

    for rnd in range(1, config.rounds + 1):
        picks = _candidates(pool, measured, config.top_k, low)
        if picks.empty and should_fill_search(low, limits, filled, research is not None, config):
            logger.info("verify: no scored candidate is predicted between the pick and the budget: searching again under "
                        "the budget as measured (" + ", ".join(f"{v:.4f} ms on {k}" for k, v in limits.items()) + ")")
            add_search(limits)
            filled += 1
            pool = candidate_pool(history, fitness, limits, config.margin_se)
            picks = _candidates(pool, measured, config.top_k, low)
        if picks.empty:
            dominated = _dominated_between(history, pool, low, limits)
            break
        subnets = [fitness.arranged(Subnet.from_json(t)) for t in picks["subnet"]]
        new, rounds = [], {}
        for target in targets:
            got, rounds[target.column] = _time_on(target, net, picks, subnets, constraints, out, default_batch, rnd,
                                                  state if target.name == DEFAULT else None)
            new += got
        _meets_every_budget(new)
        rows += new
        measured.update(picks["hash"])
        ok_rows = [r for r in rows if r["model"] == "candidate" and r["target"] == DEFAULT and r["meets_budget"]]
        limits = {k: r["limit"] / r["correction"] for k, r in rounds.items() if r["limit"] and r["correction"]}
        if ok_rows:
            pick = _pick(ok_rows, fitness, config, estimator)
            chosen_row = ok_rows[pick.index]
            share = chosen_row["binding_share"]
            if pick.narrower_by_evidence or not np.isfinite(share) or share >= config.fill or not limits:
                break
            # budget left unused with no evidence for it: look between the pick and the budget
            low = float(chosen_row["predicted_ms"]) if np.isfinite(chosen_row["predicted_ms"]) else None
            search_again(rounds, limits)
            pool = candidate_pool(history, fitness, limits, config.margin_se)
            logger.info(f"verify round {rnd}: the widest feasible uses {share * 100:.0f}% of the budget; next, candidates "
                        f"predicted between it and the budget (measured/predicted {_corrections(rounds)})")
            continue
        if limits:
            search_again(rounds, limits)
            pool = candidate_pool(history, fitness, limits, config.margin_se, config.top_k)
            logger.info(f"verify round {rnd}: none met the budget by measurement; measured/predicted "
                        f"{_corrections(rounds)}: next, candidates predicted within "
                        + ", ".join(f"{v:.3f} ms on {k}" for k, v in limits.items()))
    if chosen_row is not None and dominated and not pick.narrower_by_evidence:
        pick = replace(pick, reason=pick.reason + f" (the {dominated} scored candidate(s) predicted between it and the "
                                                  f"budget {WIDER_DOMINATED} {config.margin_se:g} paired SE)")
    if chosen_row is not None and filled:
        pick = replace(pick, reason=pick.reason + " (after a search again to fill the budget: none had been scored between "
                                                  "the first pick and the budget)")
    if chosen_row is not None and researched:
        pick = replace(pick, reason=pick.reason + f" (from a second search under the budget corrected by measurement: "
                                                  f"candidates had measured {researched[0]} of their predictions)")
    if chosen_row is not None:
        for r in rows:  # the chosen candidate's row of every target
            if r["model"] == "candidate" and r["hash"] == chosen_row["hash"] and r["round"] == chosen_row["round"]:
                r["chosen"], r["pick_reason"] = True, pick.reason
        logger.info(f"verify: chose {chosen_row['hash']}: {pick.reason}")
    table = pd.DataFrame(rows)
    atomic_write_text(out / CSV, table.to_csv(index=False))
    if chosen_row is None:
        budget = "; ".join(c.text or c.describe() for c in constraints if c.metric == "latency_ms")
        cands = [r for r in rows if r["model"] == "candidate" and r["target"] == DEFAULT]
        fastest = min(cands, key=lambda r: r["median_ms"])
        missed = sorted({r["target"] for r in rows if r["model"] == "candidate" and r["meets_target"] is False})
        raise SlimnasError(f"no candidate met the budget ({budget}) by measurement after {config.rounds} rounds"
                           f"{' (missed on ' + ', '.join(missed) + ')' if missed else ''}; the fastest on the default "
                           f"target measured {fastest['median_ms']:.3f} ms, {fastest['ratio_to_original']:.3f}x of the "
                           "original in the same run: loosen the budget or raise verify.rounds / verify.top_k")
    return Verified(Subnet.from_json(chosen_row["subnet"]), table, chosen_row)


def should_fill_search(low: Optional[float], limits: dict, done: int, can_search: bool, config: VerifyConfig) -> bool:
    """Whether an empty round should search again to fill the budget: the round follows a pick that left it unused
    (``low``: that pick's predicted ms), the last round gave the budget as measurement corrected it (``limits``), a
    search can be run and fewer than ``config.fill_search`` have been."""
    return low is not None and bool(limits) and can_search and done < config.fill_search


def should_search_again(corrections: Sequence[Optional[float]], done: int, config: VerifyConfig) -> bool:
    """Whether a round whose candidates measured ``corrections`` (median measured/predicted per target; None where
    unknown) of their predictions calls for another search: ``done`` searches again so far are fewer than
    ``config.research`` and some target's predictions were off by more than ``config.research_tol``."""
    known = [float(c) for c in corrections if c]
    return done < config.research and bool(known) and max(abs(c - 1.0) for c in known) > config.research_tol


def _meets_every_budget(rows: list[dict]) -> None:
    """Set ``meets_budget`` (every target's budgets met, each by its own measurement; FLOPs and params analytic)
    and ``binding_share`` (the largest share of a latency budget over the targets) on a round's candidate rows."""
    cand = [r for r in rows if r["model"] == "candidate"]
    for r in cand:
        mine = [q for q in cand if q["hash"] == r["hash"]]
        shares = [q["budget_share"] for q in mine if np.isfinite(q["budget_share"])]
        r["meets_budget"] = all(bool(q["meets_target"]) for q in mine)
        r["binding_share"] = max(shares) if shares else np.nan


def _corrections(rounds: dict) -> str:
    return ", ".join(f"{r['correction']:.3f} on {k}" for k, r in rounds.items() if r["correction"])


def _pick(ok_rows: list[dict], fitness, config: VerifyConfig, estimator: str):
    """:func:`choose` over measured rows (cost: the ratio to the original timed in the same round)."""
    subs = [Subnet.from_json(r["subnet"]) for r in ok_rows]
    shares = [float(r["binding_share"]) if np.isfinite(r["binding_share"]) else None for r in ok_rows]
    return choose([r["hash"] for r in ok_rows], [float(r["ratio_to_original"]) for r in ok_rows], shares,
                  lambda i, j: fitness.paired(subs[i], subs[j]), config.margin_se, estimator, "measured")


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
    table = pd.read_csv(f, keep_default_na=True)
    if "target" not in table:  # written before latency targets: every row is the default target's
        table["target"] = DEFAULT
    chosen = table[(table["chosen"] == True) & (table["target"] == DEFAULT)]  # noqa: E712
    if chosen.empty:
        return None
    row = chosen.iloc[0].to_dict()
    return Verified(Subnet.from_json(s.read_text()), table, row)
