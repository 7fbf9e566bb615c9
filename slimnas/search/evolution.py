"""``evolve``: the NSGA-II search loop, with bounded repair, an accuracy cache and a resumable state file."""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import SlimnasError
from ..progress import Progress
from ..space import SearchSpace
from ..subnet import Subnet
from .config import SearchConfig
from .constraints import LABELS, Constraint, check_reachable, format_value
from .costs import CostFn, CostTable
from .nsga2 import select_survivors
from .population import initial_population, make_children
from .sensitivity import sensitivity_seeds
from .result import SearchResult, pareto_front
from .state import Evaluated, SearchState, rng_from_json, rng_to_json, space_digest

logger = logging.getLogger(__name__)

STATE_SAVE_INTERVAL_S = 1.0  # the accuracy cache is saved at most this often between generations


class _Stop(Exception):
    """Raised inside a generation when the evaluation budget or the time limit is spent."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _check_inputs(space: SearchSpace, costs: Mapping[str, CostFn], constraints: Sequence[Constraint],
                  objective: str) -> None:
    if len(space) == 0:
        raise SlimnasError("the search space has no searchable group: nothing to search")
    if objective not in costs:
        raise SlimnasError(f"objective {objective!r} has no cost function; give one of: {', '.join(costs) or 'none'}")
    seen = set()
    for c in constraints:
        if c.relative:
            raise SlimnasError(f"constraint {c.text or c.describe()!r} is relative: resolve it against the original model first")
        if c.column not in costs:
            raise SlimnasError(f"constraint on {c.label} needs a {c.column!r} cost function")
        if c.column in seen:
            raise SlimnasError(f"two constraints on {c.label}: keep one")
        seen.add(c.column)


def _settings(space: SearchSpace, constraints: Sequence[Constraint], config: SearchConfig, objective: str) -> dict:
    return {"config": config.settings(), "constraints": sorted((c.key() for c in constraints), key=lambda d: (d["metric"], d.get("target", ""))),
            "objective": objective, "space": space_digest(space)}


class _Evolution:
    """One invocation of the search: the state it resumes from and the machinery to continue it."""

    def __init__(self, space, accuracy, table: CostTable, config: SearchConfig, objective: str,
                 state: SearchState, state_path: Optional[Path], progress: bool):
        self.space, self.accuracy, self.table, self.config = space, accuracy, table, config
        self.objective, self.state, self.state_path = objective, state, state_path
        self.start = time.monotonic()
        self.wall_before = state.wall_s
        self.last_save = self.start
        total = config.population * (config.generations + 1)
        if config.max_evaluations is not None:
            total = min(total, config.max_evaluations)
        self.bar = Progress(total=total, initial=len(state.cache), desc="search", unit="subnet", enabled=progress)

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def save(self, force: bool = True) -> None:
        now = time.monotonic()
        if self.state_path is None or (not force and now - self.last_save < STATE_SAVE_INTERVAL_S):
            return
        self.state.wall_s = self.wall_before + self.elapsed()
        self.state.save(self.state_path)
        self.last_save = now

    def points(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """Minimised objectives: (-accuracy, objective cost)."""
        acc = np.array([self.state.cache[s.hash].accuracy for s in subnets])
        return np.stack([-acc, self.table.column(self.objective, subnets)], axis=1)

    def score(self, subnets: Sequence[Subnet], generation: int) -> None:
        """Accuracy of every subnet not in the cache, in order; raises _Stop when a budget is spent."""
        self.table.values(subnets)  # one vectorised cost call for the whole batch
        cache = self.state.cache
        for s in subnets:
            if s.hash in cache:
                continue
            if self.config.max_evaluations is not None and len(cache) >= self.config.max_evaluations:
                raise _Stop("max_evaluations")
            if self.config.time_limit_s is not None and self.elapsed() >= self.config.time_limit_s:
                raise _Stop("time_limit")
            acc = self.state.probes[s.hash] if s.hash in self.state.probes else self._evaluate(s)
            cache[s.hash] = Evaluated(s, generation, acc)
            self.bar.update(1)
            self.save(force=False)

    def _evaluate(self, subnet: Subnet) -> float:
        """The accuracy function, called once per subnet (candidate or probe), refusing a non-finite result."""
        acc = float(self.accuracy(subnet))
        if not math.isfinite(acc):
            raise SlimnasError(f"the accuracy of subnet {subnet.hash} is {acc}: the supernet or its data is broken")
        return acc

    def probe(self, subnet: Subnet) -> float:
        """A sensitivity probe's accuracy, scored once (also across resumes). Probes are mostly over budget, so they
        are kept apart from the candidates (every subnet in the cache and the history is feasible); the time limit
        applies to them too."""
        probes = self.state.probes
        if subnet.hash in self.state.cache:
            return self.state.cache[subnet.hash].accuracy
        if subnet.hash not in probes:
            if self.config.time_limit_s is not None and self.elapsed() >= self.config.time_limit_s:
                raise _Stop("time_limit")
            probes[subnet.hash] = self._evaluate(subnet)
            self.save(force=False)
        return probes[subnet.hash]

    def survive(self, candidates: list[Subnet], generation: int, rng: random.Random) -> None:
        keep = select_survivors(self.points(candidates), self.config.population)
        self.state.population = [candidates[i].hash for i in keep]
        self.state.generation = generation
        self.state.rng = rng_to_json(rng)
        self.save()

    def report(self, generation: int, new: int) -> None:
        pop = [self.state.cache[h] for h in self.state.population]
        best = max(pop, key=lambda e: e.accuracy)
        cost = self.table.column(self.objective, [best.subnet])[0]
        logger.info(f"generation {generation}/{self.config.generations}: {new} new subnets scored "
                 f"({len(self.state.cache)} in all), best accuracy {best.accuracy:.4f} at "
                 f"{LABELS[self.objective]} {format_value(self.objective, cost)}")

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> str:
        state, config = self.state, self.config
        rng = rng_from_json(state.rng) if state.rng is not None else random.Random(config.seed)
        try:
            if state.generation < 0:
                before = len(state.cache)
                seeds = sensitivity_seeds(self.space, self.probe, self.table, self.objective, config.sensitivity_levels)
                pop = initial_population(self.space, self.table, config, rng, seeds)
                self.score(pop, 0)
                self.survive(pop, 0, rng)
                self.report(0, len(state.cache) - before)
            while state.generation < config.generations:
                g = state.generation + 1
                before = len(state.cache)
                parents = [state.cache[h].subnet for h in state.population]
                children = make_children(self.space, parents, self.points(parents), self.table, config, rng)
                self.score(children, g)
                self.survive(parents + children, g, rng)
                self.report(g, len(state.cache) - before)
            reason = "generations"
        except _Stop as stop:
            reason = stop.reason
        except BaseException:  # an error or Ctrl-C in the accuracy function: keep what was scored
            self.save()
            raise
        finally:
            self.bar.close()
        if reason != "time_limit":  # a time-limited search continues when called again
            state.stopped = reason
        self.save()
        if reason != "generations":
            logger.info(f"search stopped early ({reason.replace('_', ' ')}) after {len(state.cache)} evaluations")
        return reason

    def result(self, stopped: str) -> SearchResult:
        return build_result(self.state, self.table, self.objective, stopped, self.wall_before + self.elapsed())


def build_result(state: SearchState, table: CostTable, objective: str, stopped: str, wall_s: float) -> SearchResult:
    entries = list(state.cache.items())
    subs = [e.subnet for _, e in entries]
    values = table.values(subs)
    history = pd.DataFrame({
        "hash": [h for h, _ in entries],
        "generation": np.array([e.generation for _, e in entries], dtype=int),
        "accuracy": np.array([e.accuracy for _, e in entries], dtype=float),
    })
    for j, k in enumerate(table.keys):
        history[k] = values[:, j]
    history["feasible"] = table.feasible(subs) if subs else np.zeros(0, dtype=bool)
    history["subnet"] = [s.to_json() for s in subs]
    return SearchResult(history, pareto_front(history, objective), len(entries), wall_s, stopped,
                        objective=objective, generations=max(state.generation, 0))


def evolve(space: SearchSpace,
           accuracy: Callable[[Subnet], float],
           costs: Mapping[str, CostFn],
           constraints: Sequence[Constraint],
           config: SearchConfig = SearchConfig(),
           objective: str = "latency_ms",
           state_path: Optional[Path] = None,
           progress: bool = True,
           extend: bool = True) -> SearchResult:
    """NSGA-II over ``space``: maximise ``accuracy``, minimise ``costs[objective]``, within ``constraints``.

    ``accuracy`` is called once per distinct subnet hash (also across resumes); ``costs`` are vectorised
    functions of a list of subnets, keyed ``latency_ms``/``flops``/``params``; ``constraints`` must be absolute.
    With ``state_path`` the search saves its state there and a rerun continues it (the same settings are
    required); a finished search is returned as saved. The result's ``wall_s`` counts all invocations. A search
    stopped by ``config.time_limit_s`` (a limit per invocation) carries on when called again, unless ``extend`` is
    False: then a saved state is returned as it is, as a pipeline stage that has finished needs it (its outputs were
    written from that state; searching on would change the history the later stages read).
    """
    _check_inputs(space, costs, constraints, objective)
    table = CostTable(costs, constraints)
    smallest = table.compute([space.min()], sorted({c.column for c in constraints}))
    check_reachable(constraints, {k: float(v[0]) for k, v in smallest.items()})
    settings = _settings(space, constraints, config, objective)
    state_path = Path(state_path) if state_path is not None else None
    if state_path is not None and state_path.exists():
        state = SearchState.load(state_path)
        state.check_settings(settings, state_path)
        if state.stopped is not None or not extend:
            stopped = state.stopped or "time_limit"
            logger.info(f"{state_path}: the search finished before ({stopped}); returning its result")
            return build_result(state, table, objective, stopped, state.wall_s)
        logger.info(f"{state_path}: resuming after generation {state.generation} with {len(state.cache)} subnets scored")
    else:
        state = SearchState(settings)
    run = _Evolution(space, accuracy, table, config, objective, state, state_path, progress)
    return run.result(run.run())
