"""The search stage: evolutionary search of a trained supernet under the budgets, and ``slimnas search``.

Fitness is the supernet's accuracy on the validation split after BN recalibration (best arrangement wins,
see :mod:`.fitness`); costs are the latency predictor's (at the speed of the reference timing) and the analytic
FLOPs and params. ``search_state.json`` makes the search resumable; ``pareto.csv`` marks it finished.
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
               targets: Optional[dict] = None) -> tuple[SearchResult, SupernetFitness]:
    """Search ``strategy.space`` (shrunk or binned during training) into ``out``; resumable. ``targets``: the
    predictor of each named latency target by its cost column (``latency_ms[NAME]``): a subnet is feasible when it
    meets every budget, each target's by that target's own table."""
    fitness = SupernetFitness(net, strategy, data, fitness_config, out / "fitness.jsonl", seed=seed)
    costs = supernet_costs(net, predictor, targets)
    objective = "latency_ms" if predictor is not None else "flops"
    space = strategy.space if strategy.space is not None else net.space
    result = evolve(space, fitness, costs, list(budget), search, objective=objective, state_path=out / STATE,
                    progress=progress)
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
    measurement: ``slimnas search``): the widest unless a narrower one scores higher beyond the paired error."""
    from .verify import candidate_pool

    pool = candidate_pool(result.history, fitness, None, margin_se)
    if pool.empty:
        raise SlimnasError("the search evaluated no feasible subnet")
    cost = result.objective if result.objective in pool else "flops"
    limits = [c.limit for c in budget if c.column == cost and not c.relative]
    costs = pool[cost].to_numpy(float)
    shares = [float(v / min(limits)) for v in costs] if limits else [None] * len(costs)
    subs = [Subnet.from_json(t) for t in pool["subnet"]]
    pick = choose(list(pool["hash"]), list(costs), shares, lambda i, j: fitness.paired(subs[i], subs[j]), margin_se,
                  fitness.config.estimator, "predicted")
    return subs[pick.index], pick.reason


def _saved_reference(out: Path, measured_for: dict) -> Optional[dict]:
    """The original's timing a previous ``slimnas search`` into ``out`` made for the same run, table and latency
    settings (None if there is none): re-timing it would move a relative budget, and the saved search would
    then be refused as one with other settings."""
    f = out / REFERENCE
    if not f.is_file():
        return None
    try:
        ref = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if "original" not in ref or json.loads(json.dumps(ref.get("measured_for"))) != json.loads(json.dumps(measured_for)):
        return None
    return ref


@dataclass(frozen=True)
class SearchJob:
    """``slimnas search``: a trained supernet run, budgets, a latency table and search settings."""

    run: str  # a `slimnas train` run folder
    constraints: tuple[str, ...]
    out: str
    table: Optional[str] = None  # None: a matching table in latency_tables/ (needed for latency budgets)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    device: Optional[str] = None


def search(job: SearchJob, progress: bool = True) -> dict:
    """Search a `slimnas train` run under budgets; writes pareto.csv, pareto.png, subnet.json and search_state.json
    into ``job.out``. With a latency budget the original model is measured end to end first (fresh process, with
    the reference probe): relative budgets are resolved against it and predictions follow its speed;
    without one, latency (when a table fits) is predicted at the table's own calibration."""
    import tempfile

    from ..models import load_model
    from ..train.run import load_run
    from .device import find_table, make_backend, open_predictor
    from .plot import pareto_plot
    from .prepare import anchor, check_budget, measure_reference

    constraints = parse_constraints(job.constraints, targets=())  # named latency targets: `slimnas slim` only
    if not constraints:
        raise SlimnasError("no constraint given: add one, e.g. --constraint latency<=0.5x")
    out = Path(job.out)
    spec, net, strategy, data = load_run(job.run, job.device)
    needs_latency = any(c.metric == "latency_ms" for c in constraints)
    backend = make_backend(replace(job.latency, table=job.table))
    table = Path(job.table) if job.table else find_table(net, backend)
    if table is None and needs_latency:
        raise SlimnasError("no latency table matches this device and model: pass --table (build one with `slimnas profile`)")
    predictor = open_predictor(table, net, backend) if table is not None else None
    original_widths = net.space.original()
    ref = {"original_flops": net.flops(original_widths), "original_params": net.params(original_widths)}
    measured_for = {"run": str(Path(job.run).resolve()), "table": str(Path(table).resolve()) if table else None,
                    "latency": to_plain(job.latency)}
    if needs_latency:  # the original measured end to end with the probe: relative budgets and the rescale
        saved = _saved_reference(out, measured_for)
        if saved is not None:  # a rerun: the same budget (and so the same search to resume), as prepare() does
            ref = saved
            logger.info(f"the original's timing of the first invocation is reused ({out / REFERENCE}): "
                f"{ref['original']['median_ms']:.4f} ms, repeat error {ref['original'].get('repeat_pct', float('nan')):.1f}%")
        else:
            original = load_model(spec.model, num_classes=spec.num_classes or data.num_classes, weights=spec.weights)
            with tempfile.TemporaryDirectory(prefix="slimnas-search-") as tmp:
                ref = measure_reference(original, net, backend, job.latency, Path(tmp))
        predictor, _ = anchor(predictor, net, ref)
    ref["measured_for"] = measured_for
    smallest = net.space.min() if strategy.space is None else strategy.space.min()
    small = {"flops": net.flops(smallest), "params": net.params(smallest)}
    if predictor is not None:
        small["latency_ms"] = float(predictor.predict([smallest])[0])
    budget = check_budget(constraints, {"latency_ms": ref.get("original", {}).get("median_ms"),
                                        "flops": ref["original_flops"], "params": ref["original_params"]}, small)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / REFERENCE, json.dumps(ref, indent=1))
    result, fitness = run_search(net, strategy, data, predictor, budget, job.search, job.fitness, out, job.search.seed,
                                 progress)
    best, reason = predicted_pick(result, fitness, budget)
    best = fitness.arranged(best)
    logger.info(f"picked by prediction: {reason}")
    atomic_write_text(out / "subnet.json", best.to_json(indent=1))
    pareto_plot(out / "pareto.png", result.pareto, pd.read_csv(out / UNIFORM), original_ms=ref.get("original", {}).get("median_ms"),
                original_accuracy=None, budget=budget, verified=None, chosen=None,
                objective="latency_ms" if predictor is not None else "flops")
    logger.info(f"searched {result.evaluations} subnets in {result.wall_s:.0f} s; picked within budget: {best.hash} "
        f"(score {fitness(best):.4f} ± {fitness.se(best):.4f}); outputs in {out}: pareto.csv, pareto.png, subnet.json, search_state.json")
    return {"out": str(out), "evaluations": result.evaluations, "best": best.hash, "budget": [c.describe() for c in budget]}

