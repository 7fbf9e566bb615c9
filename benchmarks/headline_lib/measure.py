"""Measured latency, relative to the base model timed in the same fresh process.

Every call starts one ``slimnas.latency.worker`` process that times the base model and the given models in
interleaved rounds with the reference probe (:func:`slimnas.latency.e2e.time_onnx_files`). A model's ratio to
the base is the median over rounds of (its round median / the base's round median), so a change of machine
speed between rounds cancels out; budgets are fractions of the base, as DESIGN.md asks.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from slimnas.export import export_onnx, layer_shapes
from slimnas.latency.backends import BackendConfig
from slimnas.latency.e2e import time_onnx_files
from slimnas.latency.timing import TimingConfig


@dataclass(frozen=True)
class Measurement:
    median_ms: float
    p10_ms: float
    p90_ms: float
    spread_pct: float  # max - min of the per-round medians, in % of the median
    ratio: float  # median over rounds of this model's round median / the base's round median
    ratio_p10: float  # 10th and 90th percentiles of the per-round ratios
    ratio_p90: float
    halves_pct: float  # the ratio's repeat error: first half of the rounds vs second half, in % of the ratio
    n: int  # timed samples

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MeterConfig:
    backend: str = "onnxruntime"
    threads: int = 1
    batch: int = 1


def architecture_key(model: nn.Module) -> str:
    """A short hash of every conv/BN/linear layer's shape: equal keys, equal latency."""
    text = json.dumps(layer_shapes(model), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def onnx_for(model: nn.Module, folder: Path, input_shape: tuple[int, ...], name: str | None = None) -> Path:
    """``model`` as ONNX in ``folder`` (named by its architecture unless ``name`` is given; reused if present)."""
    path = Path(folder) / f"{name or architecture_key(model)}.onnx"
    if not path.is_file():
        torch.set_num_threads(max(1, torch.get_num_threads()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(model.eval(), path, input_shape)
    return path


def ratio_stats(ratios: np.ndarray) -> tuple[float, float, float, float]:
    """Median, p10, p90 of per-round ratios, and how far the two halves' medians disagree (in %)."""
    med = float(np.median(ratios))
    half = len(ratios) // 2
    halves = abs(float(np.median(ratios[:half])) - float(np.median(ratios[half:]))) / med * 100 if half else 0.0
    return med, float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90)), halves


class Meter:
    """Times ONNX files against one base ONNX file, interleaved, in a fresh process per call."""

    def __init__(self, base_onnx: Path, config: MeterConfig = MeterConfig()):
        self.base_onnx = Path(base_onnx)
        self.config = config

    def measure(self, paths: Sequence[Path], rounds: int, samples: int) -> tuple[Measurement, list[Measurement], dict]:
        """(base, each model, raw worker output) from one timing process."""
        c = self.config
        raw = time_onnx_files([self.base_onnx, *paths], c.backend, BackendConfig("cpu", c.threads, c.batch),
                              TimingConfig(samples=max(rounds, samples)), rounds=rounds)
        base_rounds = np.array(raw["models"][0]["round_medians_ms"])
        out = []
        for m in raw["models"]:
            ratios = np.array(m["round_medians_ms"]) / base_rounds
            out.append(Measurement(m["median_ms"], m["p10_ms"], m["p90_ms"], m["spread_pct"], *ratio_stats(ratios), m["n"]))
        return out[0], out[1:], raw
