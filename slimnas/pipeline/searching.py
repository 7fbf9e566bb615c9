"""The search stage: evolutionary search of a trained supernet under the budgets, and ``slimnas search``.

Fitness is the supernet's accuracy on the validation split after BN recalibration (best arrangement wins,
see :mod:`.fitness`); costs are the latency predictor's (at the speed of the reference timing), one per latency
target (``latency_ms``, ``latency_ms[NAME]``, see :mod:`.targets`), and the analytic FLOPs and params.
``search_state.json`` makes the search resumable; ``pareto.csv`` marks it finished.
"""
from __future__ import annotations

import logging
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ..errors import SlimnasError
from ..fileio import atomic_write_text
from ..search import Constraint, SearchConfig, SearchResult, evolve, parse_constraints
from ..search.costs import supernet_costs
from ..search.pick import choose
from ..subnet import Subnet
from .config import FitnessConfig, LatencyConfig, VerifyConfig
from .schema import to_plain
from .fitness import SupernetFitness
from .targets import DEFAULT, Target

logger = logging.getLogger(__name__)

STATE = "search_state.json"
PARETO = "pareto.csv"
HISTORY = "search_history.csv"
UNIFORM = "uniform.csv"
REFERENCE = "reference.json"  # `slimnas search`: the original's end-to-end timing the budget was resolved against


def write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def run_search(net, strategy, data, predictor, budget: Sequence[Constraint], search: SearchConfig,
               fitness_config: FitnessConfig, out: Path, seed: int = 0, progress: bool = True,
               targets: Optional[dict] = None, fitness: Optional[SupernetFitness] = None,
               finished: bool = False) -> tuple[SearchResult, SupernetFitness]:
    """Search ``strategy.space`` (shrunk or binned during training) into ``out``; resumable. ``targets``: the
    predictor of each named latency target by its cost column (``latency_ms[NAME]``): a subnet is feasible when it
    meets every budget, each target's by that target's own table. ``fitness``: one to share (a second search
    in a subfolder scores nothing the first one scored); by default one kept in ``out/fitness.jsonl``. ``finished``:
    the stage wrote its outputs before, so its saved search is returned as it is (a time-limited one is not
    carried on)."""
    out.mkdir(parents=True, exist_ok=True)
    if fitness is None:
        fitness = SupernetFitness(net, strategy, data, fitness_config, out / "fitness.jsonl", seed=seed)
    costs = supernet_costs(net, predictor, targets)
    objective = "latency_ms" if predictor is not None else "flops"
    space = strategy.space if strategy.space is not None else net.space
    result = evolve(space, fitness, costs, list(budget), search, objective=objective, state_path=out / STATE,
                    progress=progress, extend=not finished)
    write_csv(result.history, out / HISTORY)
    write_csv(uniform_points(net, strategy, fitness, costs, budget), out / UNIFORM)
    write_csv(result.pareto, out / PARETO)
    return result, fitness


def uniform_points(net, strategy, fitness: SupernetFitness, costs, budget: Sequence[Constraint]) -> pd.DataFrame:
    """The uniform width ratios of the space (every group at the same ratio), scored like the search's subnets."""
    space = strategy.space if strategy.space is not None else net.space
    ratios = sorted({r for r in net.config.space.all_ratios()})
    rows, seen = [], set()
    for r in ratios:
        s = space.uniform(r)
        if s.hash in seen:
            continue
        seen.add(s.hash)
        row = {"ratio": r, "hash": s.hash, "accuracy": fitness(s)}
        for k, fn in costs.items():
            row[k] = float(fn([s])[0])
        row["feasible"] = all(bool(c.ok([row[c.column]])[0]) for c in budget if c.column in row)
        rows.append(row)
    return pd.DataFrame(rows)


def predicted_pick(result: SearchResult, fitness: SupernetFitness, budget: Sequence[Constraint],
                   margin_se: float = VerifyConfig().margin_se) -> tuple[Subnet, str]:
    """The pick of :func:`slimnas.search.pick.choose` among the feasible candidates by prediction (no
    measurement: ``slimnas search``): the widest unless a narrower one scores higher beyond the paired error.
    A candidate's share of the budget is the largest over the latency targets (as verification's
    ``binding_share``), else of the objective's own budget."""
    from .verify import candidate_pool

    pool = candidate_pool(result.history, fitness, None, margin_se)
    if pool.empty:
        raise SlimnasError("the search evaluated no feasible subnet")
    cost = result.objective if result.objective in pool else "flops"
    limits = [c for c in budget if c.metric == "latency_ms" and not c.relative and c.column in pool]
    limits = limits or [c for c in budget if c.column == cost and not c.relative]
    costs = pool[cost].to_numpy(float)
    shares = ([float(max(row[c.column] / c.limit for c in limits)) for _, row in pool.iterrows()] if limits
              else [None] * len(costs))
    subs = [Subnet.from_json(t) for t in pool["subnet"]]
    pick = choose(list(pool["hash"]), list(costs), shares, lambda i, j: fitness.paired(subs[i], subs[j]), margin_se,
                  fitness.config.estimator, "predicted")
    return subs[pick.index], pick.reason


def _saved_reference(out: Path, measured_for: dict, name: str = "default") -> Optional[dict]:
    """The original's timing on target ``name`` that a previous ``slimnas search`` into ``out`` made for the same
    run, table and latency settings (None if there is none): re-timing it would move a relative budget, and the
    saved search would then be refused as one with other settings. ``reference.json`` holds the default target's
    timing at its top level (as before targets existed) and each named target's under ``targets``."""
    f = out / REFERENCE
    if not f.is_file():
        return None
    try:
        ref = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if name != DEFAULT:
        ref = (ref.get("targets") or {}).get(name)
    if not isinstance(ref, dict) or "original" not in ref:
        return None
    if json.loads(json.dumps(ref.get("measured_for"))) != json.loads(json.dumps(measured_for)):
        return None
    return ref


@dataclass(frozen=True)
class SearchJob:
    """``slimnas search``: a trained supernet run, budgets, latency targets with their tables and search settings."""

    run: str  # a `slimnas train` run folder
    constraints: tuple[str, ...]
    out: str
    table: Optional[str] = None  # the default target's; None: a matching one in latency_tables/ (needed for its budgets)
    latency: LatencyConfig = field(default_factory=LatencyConfig)  # the default target; .targets: the named ones
    search: SearchConfig = field(default_factory=SearchConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    device: Optional[str] = None


def _measured_for(job: SearchJob, target: Target) -> dict:
    """What a target's reference timing was made for (a rerun reuses it only for the same)."""
    latency = (replace(job.latency, targets={}) if target.default  # as before targets existed: a resume still matches
               else replace(job.latency.target(target.name), table=None))  # the table: by its resolved path
    return {"run": str(Path(job.run).resolve()), "table": str(Path(target.table).resolve()) if target.table else None,
            "latency": to_plain(latency)}


def search(job: SearchJob, progress: bool = True) -> dict:
    """Search a `slimnas train` run under budgets; writes pareto.csv, pareto.png, subnet.json and search_state.json
    into ``job.out``. Latency targets are those of ``slimnas slim`` (:mod:`.targets`): the default one
    (``job.latency`` with ``job.table``) and each of ``job.latency.targets``, costed by its own table (given, or a
    matching one in latency_tables/; nothing is profiled here), a column of pareto.csv each. With a latency budget
    the original model is measured end to end first on every target with a table (fresh process, with the reference
    probe): relative budgets are resolved against it and predictions follow its speed; without one, latency (where
    a table fits) is predicted at the table's own calibration. Every check runs before ``job.out`` is made."""
    import tempfile

    from ..models import load_model
    from ..train.run import load_run
    from .device import make_backend
    from .plot import pareto_plot
    from .prepare import anchor, check_budget, measure_reference
    from .targets import checkable_before_timing, open_target, reference_costs, target_costs, where

    latency = replace(job.latency, table=job.table)
    names = [DEFAULT, *latency.targets]
    constraints = parse_constraints(job.constraints, latency.targets)
    if not constraints:
        raise SlimnasError("no constraint given: add one, e.g. --constraint latency<=0.5x")
    backends = {name: make_backend(latency.target(name), name) for name in names}
    out = Path(job.out)
    spec, net, strategy, data = load_run(job.run, job.device)
    targets = [open_target(name, latency.target(name), backends[name], net) for name in names]
    budgeted = {c.column for c in constraints if c.metric == "latency_ms"}
    if targets[0].predictor is None and targets[0].column in budgeted:
        raise SlimnasError("no latency table matches this device and model: pass --table (build one with `slimnas profile`)")
    for t in targets[1:]:
        if t.predictor is None:
            raise SlimnasError(f"{where(t.name)}: no latency table fits target {t.describe()} and this model: give one "
                               f"with --target {t.name}:...,table=DIR (build one with `slimnas profile`)")
    targets = [t for t in targets if t.predictor is not None]
    smallest = net.space.min() if strategy.space is None else strategy.space.min()
    # budgets that predictions alone can refuse, before anything is timed
    quick = [c for c in constraints if c.metric != "latency_ms" or checkable_before_timing(c, targets)]
    check_budget(quick, target_costs(net, net.space.original(), targets), target_costs(net, smallest, targets))

    refs = {"original_flops": net.flops(net.space.original()), "original_params": net.params(net.space.original())}
    original = None
    for t in targets if budgeted else []:  # each original measured end to end with the probe: relative budgets, rescale
        measured_for = _measured_for(job, t)
        saved = _saved_reference(out, measured_for, t.name)
        if saved is not None:  # a rerun: the same budget (and so the same search to resume), as prepare() does
            t.reference = saved
            logger.info(f"the original's timing of the first invocation is reused ({out / REFERENCE}"
                        f"{'' if t.default else ', target ' + t.name}): {saved['original']['median_ms']:.4f} ms, "
                        f"repeat error {saved['original'].get('repeat_pct', float('nan')):.1f}%")
        else:
            if original is None:
                original = load_model(spec.model, num_classes=spec.num_classes or data.num_classes, weights=spec.weights)
            with tempfile.TemporaryDirectory(prefix="slimnas-search-") as tmp:
                t.reference = measure_reference(original, net, t.backend, t.config, Path(tmp), t.budget_dtype, t.probe)
        t.reference["measured_for"] = measured_for
        t.predictor, t.speed = anchor(t.predictor, net, t.reference)
    default = targets[0] if targets and targets[0].default else None
    predictor = default.predictor if default is not None else None
    budget = check_budget(constraints, reference_costs(net, targets), target_costs(net, smallest, targets))
    ref = {**refs, **(default.reference if default is not None and default.reference else {}),
           "measured_for": _measured_for(job, default) if default is not None else
           {"run": str(Path(job.run).resolve()), "table": None, "latency": to_plain(replace(job.latency, targets={}))}}
    named = [t for t in targets if not t.default]
    if named:
        ref["targets"] = {t.name: t.reference or {"measured_for": _measured_for(job, t)} for t in named}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / REFERENCE, json.dumps(ref, indent=1))
    result, fitness = run_search(net, strategy, data, predictor, budget, job.search, job.fitness, out, job.search.seed,
                                 progress, targets={t.column: t.predictor for t in named})
    best, reason = predicted_pick(result, fitness, budget)
    best = fitness.arranged(best)
    logger.info(f"picked by prediction: {reason}")
    atomic_write_text(out / "subnet.json", best.to_json(indent=1))
    pareto_plot(out / "pareto.png", result.pareto, pd.read_csv(out / UNIFORM), original_ms=ref.get("original", {}).get("median_ms"),
                original_accuracy=None, budget=budget, verified=None, chosen=None,
                objective="latency_ms" if predictor is not None else "flops")
    costs = target_costs(net, best, targets)
    latency_ms = {t.name: costs[t.column] for t in targets}
    for t in targets:
        mine = [c.describe() for c in budget if c.column == t.column]
        logger.info(f"target {t.describe()}: {latency_ms[t.name]:.4f} ms predicted"
                    f"{' (' + '; '.join(mine) + ')' if mine else ' (no budget)'}")
    logger.info(f"searched {result.evaluations} subnets in {result.wall_s:.0f} s; picked within budget: {best.hash} "
        f"(score {fitness(best):.4f} ± {fitness.se(best):.4f}); outputs in {out}: pareto.csv, pareto.png, subnet.json, search_state.json")
    return {"out": str(out), "evaluations": result.evaluations, "best": best.hash, "budget": [c.describe() for c in budget],
            "latency_ms": latency_ms, "flops": costs["flops"], "params": costs["params"]}
