"""The search's fitness: a subnet's supernet accuracy on the validation split (carved from train/, never the
test split) after BatchNorm recalibration, taking the best of the strategy's arrangements (CafeNet).

Scores are kept by subnet hash with the winning arrangement, so export uses exactly the channels that were
scored. Every score is appended (and fsync'ed) to a JSON-lines file the moment it is known: a search killed
and rerun never scores a subnet twice, and the arrangement of every subnet it scored survives.
Reading the file never writes to it (see :mod:`slimnas.fileio`).

A score is an estimate with an error bar. Each record keeps the per-image outcomes on the fixed validation
images (which were right, and each image's cross-entropy), so every score carries its standard error and two
subnets are compared paired, on the same images (:meth:`SupernetFitness.paired`): the difference's error is
that of the per-image differences, much smaller than the two scores' errors combined, because most images
are right (or wrong) for both. ``FitnessConfig.estimator`` says which per-image value the score averages
(``top1``: 1 if right; ``loss``: minus the cross-entropy); ``benchmarks/fitness_estimators.py`` measured which
ranks subnets best for its variance. Records written before the per-image outcomes were kept are scored again
when a comparison needs them.
"""
from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SlimnasError
from ..evaluate import EvalResult, Evaluator, paired_difference, standard_error
from ..fileio import append_line, read_complete_lines
from ..subnet import Subnet
from .config import FitnessConfig


def _encode_bits(v: np.ndarray) -> str:
    return base64.b64encode(np.packbits(np.asarray(v, dtype=bool)).tobytes()).decode("ascii")


def _decode_bits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def _encode_floats(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def _decode_floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


def record_values(row: dict, estimator: str) -> np.ndarray:
    """The per-image values of a fitness record for ``estimator`` (higher is better)."""
    if estimator == "top1":
        return _decode_bits(row["correct"], int(row["n"])).astype(np.float64)
    return -_decode_floats(row["losses"])


class SupernetFitness:
    """``fitness(subnet) -> score`` for :func:`slimnas.search.evolve` (the configured estimator's mean over the
    validation images); ``se``/``paired`` for its uncertainty; ``arranged(subnet)`` for export."""

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
        key = subnet.without_indices().hash
        if key not in self.records:
            rng = random.Random(int(key, 16) ^ self.seed)  # the same arrangements on every rerun
            self.net.eval()
            result, best = self.evaluator.best_of(self.net, self.strategy.candidates(subnet.without_indices(), self.k, rng),
                                                  self.config.estimator)
            row = self._row(key, result, best)
            self._append(row)
            self.records[key] = row
        return self.records[key]

    @staticmethod
    def _row(key: str, result: EvalResult, best: Subnet) -> dict:
        return {"hash": key, "accuracy": result.top1, "loss": result.loss, "n": result.n,
                "se_top1": result.se("top1"), "se_loss": result.se("loss"),
                "correct": _encode_bits(result.correct), "losses": _encode_floats(result.losses),
                "subnet": best.to_dict()}

    def _full(self, subnet: Subnet) -> dict:
        """The record with its per-image outcomes (a record of an older run without them is scored again)."""
        row = self.score(subnet)
        if "correct" not in row:
            self.records.pop(row["hash"])
            row = self.score(subnet)
        return row

    def __call__(self, subnet: Subnet) -> float:
        row = self.score(subnet)
        return float(row["accuracy"]) if self.config.estimator == "top1" else -float(row["loss"])

    def values(self, subnet: Subnet) -> np.ndarray:
        """The per-image values whose mean is ``self(subnet)``, on the fixed validation images, in order."""
        return record_values(self._full(subnet), self.config.estimator)

    def se(self, subnet: Subnet) -> float:
        """The standard error of ``self(subnet)`` over the validation images."""
        return standard_error(self.values(subnet))

    def paired(self, a: Subnet, b: Subnet) -> tuple[float, float]:
        """``self(a) - self(b)`` and its standard error, paired on the same validation images."""
        return paired_difference(self.values(a), self.values(b))

    def arranged(self, subnet: Subnet) -> Subnet:
        """``subnet`` with the channels that won its score (scoring it first if need be)."""
        return Subnet.from_dict(self.score(subnet)["subnet"])
