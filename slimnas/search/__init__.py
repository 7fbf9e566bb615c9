"""Evolutionary multi-objective width search (NSGA-II) under latency, FLOPs and parameter budgets.

The algorithm, as :func:`evolve` runs it:

1. **Budgets.** Constraints (``latency<=5ms``, ``flops<=0.5x``, ``params<=2M``, parsed by
   :func:`parse_constraint`; relative ones resolved against the original model) are checked first against
   ``space.min()``: if even the smallest subnet breaks one, the search refuses with the smallest achievable
   value. Any number of constraints apply at once.
2. **Initial population.** ``space.min()``, the largest feasible uniform-ratio subnet (found by bisection
   over ``space.uniform``) and a few narrower uniform ones, then random samples. Every subnet that breaks a
   budget is *repaired*: random groups step down one candidate width at a time, at most ``repair_tries``
   steps (vectorised over the batch), then a fresh sample stepped down the same way, then ``space.min()``.
   No unbounded rejection loop anywhere; the population holds only feasible, distinct subnets.
3. **Generations.** Objectives: maximise accuracy, minimise one cost (``objective``, latency by default).
   The population is ranked by non-dominated sorting with crowding distance. Children: a share
   ``crossover_fraction`` are crossovers of two binary-tournament winners (by rank, then crowding), then
   mutated; the rest are mutants of one winner (each group resampled with ``mutation_prob``, at least one
   changed). Children are repaired, de-duplicated, costed in one vectorised call per metric, and scored;
   accuracy is cached by subnet hash and never computed twice. (mu + lambda) survival keeps the best
   ``population`` of parents and children by (rank, crowding).
4. **Stop** after ``generations``, ``max_evaluations`` accuracy calls or ``time_limit_s``. The result's
   ``history`` holds every scored subnet with its costs; ``pareto`` is the non-dominated set of the history.
5. **Resume.** With ``state_path``, the state (settings, generation, population, the random generator's
   state, the accuracy cache) is written atomically after every generation, and the cache also between
   generations. After a kill -9, a rerun replays the interrupted generation from the saved generator state,
   taking the scores it already has from the cache, so it ends with the same history and Pareto set as an
   uninterrupted run with the same seed. Another setting in the same file is refused.

Everything random comes from one ``random.Random(seed)``: the same seed and accuracy function give the same
history and Pareto set.
"""
from .config import SearchConfig
from .constraints import Constraint, format_value, parse_constraint, parse_constraints, resolve_constraints
from .costs import supernet_costs
from .evolution import evolve
from .nsga2 import crowding_distance, non_dominated_sort, pareto_mask
from .result import SearchResult

__all__ = [
    "Constraint", "SearchConfig", "SearchResult", "crowding_distance", "evolve", "format_value",
    "non_dominated_sort", "parse_constraint", "parse_constraints", "pareto_mask", "resolve_constraints",
    "supernet_costs",
]
