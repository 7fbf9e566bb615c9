"""The search's fitness: a subnet's supernet accuracy on the validation split (carved from train/, never the
test split) after BatchNorm recalibration, taking the best of the strategy's arrangements (CafeNet).

Scores are kept by subnet hash with the winning arrangement, so export uses exactly the channels that were
scored. Every score is appended (and fsync'ed) to a JSON-lines file the moment it is known: a search killed
and rerun never scores a subnet twice, and the arrangement of every subnet it scored survives.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Optional

from ..evaluate import Evaluator
from ..subnet import Subnet
from .config import FitnessConfig


class SupernetFitness:
    """``fitness(subnet) -> top-1`` for :func:`slimnas.search.evolve`; ``arranged(subnet)`` for export."""

    def __init__(self, net, strategy, data, config: FitnessConfig, path: Optional[Path] = None, device=None,
                 seed: int = 0):
        self.net, self.strategy, self.data, self.config = net, strategy, data, config
        self.path = Path(path) if path is not None else None
        self.device = device if device is not None else next(net.parameters()).device
        self.seed = seed
        k = config.arrangements if config.arrangements is not None else getattr(strategy.options, "k", 1)
        self.k = max(1, int(k))
        self._evaluator: Optional[Evaluator] = None
        self.records: dict[str, dict] = {}
        if self.path is not None and self.path.is_file():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # a line cut short by a kill: drop it
                text = text[: text.rfind("\n") + 1]
                with open(self.path, "r+") as f:
                    f.truncate(len(text.encode()))
            for line in text.splitlines():
                row = json.loads(line)
                self.records[row["hash"]] = row

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            c = self.config
            self._evaluator = Evaluator(self.data.calib, self.data.val, calib_images=c.calib_images,
                                        val_images=c.val_images, batch_size=c.batch_size, device=self.device,
                                        seed=self.seed)
        return self._evaluator

    def _append(self, row: dict) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def score(self, subnet: Subnet) -> dict:
        """The record of ``subnet`` (computed once): accuracy, loss, images scored and the winning arrangement."""
        key = Subnet(subnet.widths).hash
        if key not in self.records:
            rng = random.Random(int(key, 16) ^ self.seed)  # the same arrangements on every rerun
            self.net.eval()
            result, best = self.evaluator.best_of(self.net, self.strategy.candidates(Subnet(subnet.widths), self.k, rng))
            row = {"hash": key, "accuracy": result.top1, "loss": result.loss, "n": result.n,
                   "subnet": best.to_dict()}
            self._append(row)
            self.records[key] = row
        return self.records[key]

    def __call__(self, subnet: Subnet) -> float:
        return float(self.score(subnet)["accuracy"])

    def arranged(self, subnet: Subnet) -> Subnet:
        """``subnet`` with the channels that won its score (scoring it first if need be)."""
        return Subnet.from_dict(self.score(subnet)["subnet"])
