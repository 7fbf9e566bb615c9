"""Measured latency, relative to the base model timed in the same fresh process.

Every call starts ``slimnas.latency.worker`` processes (one by default) that times the base model and the given models in
interleaved rounds with the reference probe (:func:`slimnas.latency.e2e.time_onnx_files`). A model's latency is
the project's end-to-end statistic (:class:`~slimnas.latency.E2EConfig`; by default the quietest round's median,
since other jobs on a shared machine only ever slow a round down) and its ratio to the base is taken within
the run, so a change of machine speed cancels out; budgets are fractions of the base, as DESIGN.md asks.
The repeat error of a ratio is how far the ratio from the even rounds and the ratio from the odd rounds
disagree (two independent half-length measurements taken side by side). A timing may run in several fresh
processes (``E2EConfig.processes``): one process's ratios were off by up to 20% on a shared VM while its own
rounds agreed within 1-2%, so the ratio is then the median over processes and the repeat error includes the
spread across them.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch import nn

from slimnas.export import export_onnx, layer_shapes
from slimnas.latency.backends import BackendConfig
from slimnas.latency.e2e import E2EConfig, median_se_pct, time_onnx_files
from slimnas.latency.timing import TimingConfig


@dataclass(frozen=True)
class Measurement:
    latency_ms: float  # under the run's statistic (quietest round's median by default)
    median_ms: float  # all rounds' samples pooled
    p10_ms: float
    p90_ms: float
    ratio: float  # latency / the base's latency, same run, same statistic
    ratio_p10: float  # 10th and 90th percentiles of the per-round ratios (round median / base round median)
    ratio_p90: float
    repeat_pct: float  # |ratio from the even rounds - ratio from the odd rounds| / ratio, in %
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(model.eval(), path, input_shape)
    return path


def _stat(rounds: np.ndarray, statistic: str) -> float:
    return float(rounds.min() if statistic == "best_round" else np.median(rounds))


def ratio_stats(model_rounds: Sequence[float], base_rounds: Sequence[float], statistic: str) -> tuple[float, float, float, float]:
    """(ratio, p10 and p90 of the per-round ratios, even-vs-odd repeat error in %) of one model to the base."""
    m, b = np.asarray(model_rounds, float), np.asarray(base_rounds, float)
    per_round = m / b

    def ratio(idx: slice) -> float:
        if statistic == "best_round":
            return _stat(m[idx], statistic) / _stat(b[idx], statistic)
        return float(np.median(per_round[idx]))

    r = ratio(slice(None))
    repeat = abs(ratio(slice(0, None, 2)) - ratio(slice(1, None, 2))) / r * 100 if len(m) >= 2 else float("nan")
    return r, float(np.percentile(per_round, 10)), float(np.percentile(per_round, 90)), repeat


class Meter:
    """Times ONNX files against one base ONNX file, interleaved, in a fresh process per call."""

    def __init__(self, base_onnx: Path, config: MeterConfig = MeterConfig()):
        self.base_onnx = Path(base_onnx)
        self.config = config

    def measure(self, paths: Sequence[Path], e2e: E2EConfig,
                dtypes: Optional[Sequence[str]] = None) -> tuple[Measurement, list[Measurement], dict]:
        """(base, each model, raw worker output) from ``e2e.processes`` fresh timing processes: with several, a
        model's ratio is the median over processes of its ratio within each one, and its repeat error the larger
        of two: how far that median taken over every process's even rounds and over its odd rounds disagree (the
        even-vs-odd error of the combined ratio, which shrinks as processes are added, where the median of the
        processes' own errors would not), and the standard error of the median across processes.

        ``dtypes`` (one per path): ``"int8"`` times that FP32 file as its INT8 (QDQ) graph, quantized in the worker
        with slimnas's settings, beside the FP32 base in the same rounds; a file already quantized is timed as it
        is (``"fp32"``, the default)."""
        c = self.config
        raw = time_onnx_files([self.base_onnx, *paths], c.backend, BackendConfig("cpu", c.threads, c.batch),
                              TimingConfig(), e2e, dtypes=None if dtypes is None else ["fp32", *dtypes])
        procs = raw["processes"]
        out = []
        for i, m in enumerate(raw["models"]):
            each = [ratio_stats(r["models"][i]["round_medians_ms"], r["models"][0]["round_medians_ms"], e2e.statistic)
                    for r in procs]
            ratios = np.array([e[0] for e in each])
            ratio = float(np.median(ratios))
            per_round = np.concatenate([np.asarray(r["models"][i]["round_medians_ms"], float)
                                        / np.asarray(r["models"][0]["round_medians_ms"], float) for r in procs])
            between = float(median_se_pct(np.log(ratios)))
            halves = [[ratio_stats(r["models"][i]["round_medians_ms"][h::2], r["models"][0]["round_medians_ms"][h::2],
                                   e2e.statistic)[0] for r in procs] for h in (0, 1)] if e2e.rounds >= 2 else None
            own = abs(np.median(halves[0]) - np.median(halves[1])) / ratio * 100 if halves else float("nan")
            repeat = max(float(own), between) if np.isfinite(own) else between
            out.append(Measurement(e2e.latency_ms(m), m["median_ms"], m["p10_ms"], m["p90_ms"], ratio,
                                   float(np.percentile(per_round, 10)), float(np.percentile(per_round, 90)), repeat,
                                   m["n"]))
        return out[0], out[1:], raw
