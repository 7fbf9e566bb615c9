"""The search's fitness: a subnet's supernet accuracy on the validation split (carved from train/, never the
test split) after BatchNorm recalibration, taking the best of the strategy's arrangements (CafeNet).

Scores are kept by subnet hash with the winning arrangement, so export uses exactly the channels that were
scored. Every score is appended (and fsync'ed) to a JSON-lines file the moment it is known: a search killed
and rerun never scores a subnet twice, and the arrangement of every subnet it scored survives.
Reading the file never writes to it (see :mod:`slimnas.fileio`).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Optional

from ..errors import SlimnasError
from ..evaluate import Evaluator
from ..fileio import append_line, read_complete_lines
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
            # Only read: a last line without its newline (cut short by a kill) is left out here and cut off by
            # the next append.
            for n, line in enumerate(read_complete_lines(self.path).splitlines(), 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise SlimnasError(f"{self.path} line {n} is not a fitness record; delete that line (or the file) and rerun") from None
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
        append_line(self.path, json.dumps(row, separators=(",", ":")) + "\n")

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
