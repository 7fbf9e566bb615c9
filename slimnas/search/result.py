"""What a search hands back: every evaluated subnet, the Pareto front, and why it stopped."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..errors import SlimnasError
from ..subnet import Subnet
from .nsga2 import pareto_mask


@dataclass
class SearchResult:
    """``history``: one row per evaluated subnet, in evaluation order (hash, generation, accuracy, one column per
    cost, feasible, subnet JSON); ``pareto``: its non-dominated feasible rows, objective ascending."""

    history: pd.DataFrame
    pareto: pd.DataFrame
    evaluations: int
    wall_s: float
    stopped: str  # "generations" | "max_evaluations" | "time_limit"
    objective: str = "latency_ms"  # the cost minimised beside accuracy
    generations: int = 0  # generations completed after the initial population
    _by_hash: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def subnet(self, hash: str) -> Subnet:
        if not self._by_hash:
            self._by_hash = dict(zip(self.history["hash"], self.history["subnet"]))
        text = self._by_hash.get(hash)
        if text is None:
            raise SlimnasError(f"no subnet with hash {hash} in this search; see the hash column of its history")
        return Subnet.from_json(text)

    def best(self) -> Subnet:
        """The highest-accuracy feasible subnet (ties: the lower objective, then the hash)."""
        ok = self.history[self.history["feasible"]]
        if ok.empty:
            raise SlimnasError("the search evaluated no feasible subnet")
        top = ok.sort_values(["accuracy", self.objective, "hash"], ascending=[False, True, True], kind="stable")
        return Subnet.from_json(top["subnet"].iloc[0])


def pareto_front(history: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The feasible rows no other feasible row beats in both accuracy (higher) and ``objective`` (lower)."""
    ok = history[history["feasible"]]
    if ok.empty:
        return ok.copy()
    mask = pareto_mask(ok[[objective, "accuracy"]].to_numpy(float) * [1.0, -1.0])
    front = ok[mask]
    return front.sort_values([objective, "accuracy", "hash"], ascending=[True, False, True], kind="stable").reset_index(drop=True)
