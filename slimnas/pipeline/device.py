"""The target device: its backend, its latency table (found, given or profiled) and end-to-end timings.

Whole models are timed as ONNX files in a fresh process, interleaved in rounds with the reference probe
(:func:`slimnas.latency.e2e.time_onnx_files`); the probe's median rescales the predictor to the machine's
speed of the moment.
"""
from __future__ import annotations

import logging
import json
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SlimnasError
from ..export import export_onnx
from ..latency import BackendConfig, LatencyPredictor, LatencyTable, TimingConfig, create_backend
from ..latency.backends.base import Backend
from ..latency.e2e import E2EConfig, time_onnx_files
from ..latency.fingerprint import DEVICE_KEYS, mismatches, space_hash
from ..latency.validate import device_of
from ..tables import table_dirs
from .config import LatencyConfig

logger = logging.getLogger(__name__)

E2E_BACKENDS = ("onnxruntime", "tensorrt")


INT8_BACKENDS = ("onnxruntime",)  # whole INT8 models are timed (and model.int8.onnx scored) by onnxruntime on the CPU


def make_backend(config: LatencyConfig, target: str = "default") -> Backend:
    """The backend the model will run on (refused here, before any work, when it cannot run); ``target`` names the
    latency target in the error (``latency.targets.NAME``)."""
    where = "latency" if target == "default" else f"latency.targets.{target}"
    if config.dtype == "int8" and (config.backend not in INT8_BACKENDS or config.device != "cpu"):
        raise SlimnasError(f"{where}: INT8 asked of backend {config.backend!r} on {config.device}, which cannot run it: "
                           "INT8 models run as onnxruntime QDQ graphs on the CPU; use backend onnxruntime, device cpu")
    if config.backend not in E2E_BACKENDS:
        raise SlimnasError(f"{where}: latency backend {config.backend!r} cannot time whole ONNX models for verification: "
                           f"use {' or '.join(E2E_BACKENDS)}")
    try:
        return create_backend(config.backend, BackendConfig(config.device, config.threads, config.batch, config.dtype))
    except SlimnasError as exc:
        raise SlimnasError(f"{where}: {exc}") from None


def find_table(net, backend: Backend, dirs: Optional[Sequence[Path]] = None) -> Optional[Path]:
    """A table whose fingerprint matches this device, runtime, input shape and search space, if one exists."""
    want = {**device_of(backend), "input_shape": list(net.input_shape), "space_hash": space_hash(net)}
    keys = [k for k in DEVICE_KEYS if k in want] + ["input_shape", "space_hash"]
    for d in dirs if dirs is not None else table_dirs():
        for fp_file in sorted(Path(d).glob("*/fingerprint.json")):
            try:
                fp = json.loads(fp_file.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if not mismatches(want, fp, keys) and (fp_file.parent / "entries.csv").is_file():
                return fp_file.parent
    return None


def open_predictor(table: Path, net, backend: Backend) -> LatencyPredictor:
    """The table's predictor for ``net`` on this device; a table for anything else is a one-line error."""
    t = LatencyTable.load(table)
    fp = t.fingerprint
    try:
        return LatencyPredictor(t, net, device=device_of(backend))
    except SlimnasError as exc:
        raise SlimnasError(f"{table} (measured for {fp.get('model')} at input {fp.get('input_shape')} on "
                           f"{fp.get('device_name')}, {fp.get('backend')} t{fp.get('threads')} b{fp.get('batch')}): {exc}") from None


def export_model_onnx(model: torch.nn.Module, path: Path, input_shape: Sequence[int], batch: int) -> Path:
    """A plain model as ONNX for timing (reused if present)."""
    if not path.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(model.eval(), path, tuple(input_shape), batch=batch, check=False)
    return path


def e2e_config(config: LatencyConfig, scale: int = 1) -> E2EConfig:
    """End-to-end timing as the latency tables are calibrated: latency = the quietest round's median.
    ``scale``: that many times the rounds (each of the same length), for a timing taken again (:func:`time_models`)."""
    return E2EConfig(rounds=config.rounds * scale, samples_per_round=max(3, -(-config.samples // config.rounds)),
                     statistic="best_round", processes=config.processes)


def _repeat_pct(half, between) -> float:
    """The larger of the even-vs-odd disagreement and the error across processes (either may be missing)."""
    vals = [abs(float(v)) for v in (half, between) if v is not None and np.isfinite(float(v))]
    return max(vals) if vals else float("nan")


def summary(record: dict, e2e: E2EConfig) -> dict:
    """One model's timing from the worker: its latency under ``e2e``'s statistic (``median_ms``: the quietest
    round's median, the statistic the tables are calibrated on), the median over all samples, p10, p90, the
    spread of the round medians, the round medians, and ``repeat_pct``: how far the statistic taken over the
    even rounds and over the odd rounds disagree, or its error across processes where that is larger (the
    measurement's own repeat error)."""
    half = record.get("best_half_diff_pct" if e2e.statistic == "best_round" else "half_diff_pct", float("nan"))
    return {"median_ms": e2e.latency_ms(record), "all_samples_median_ms": float(record["median_ms"]),
            "p10_ms": float(record["p10_ms"]),
            "p90_ms": float(record["p90_ms"]), "spread_pct": float(record["spread_pct"]),
            "repeat_pct": _repeat_pct(half, record.get("between_pct")),
            "round_medians_ms": [float(v) for v in record.get("round_medians_ms", [])], "n": int(record["n"])}


def time_models(paths: Sequence[Path], backend: Backend, config: LatencyConfig,
                dtypes: Optional[Sequence[str]] = None, probe: str = "conv") -> tuple[list[dict], float, list[float]]:
    """Time ONNX files end to end in one fresh process, interleaved: per-model summaries, probe median, probes.

    A shared machine is sometimes busy for a while: when some model's even and odd rounds disagree by
    ``config.steady_pct`` or more, the whole timing is repeated (``config.attempts`` in all) and the steadiest
    is kept (each model's ``attempt`` and ``rounds`` say which one it came from). Each repeat takes twice the
    rounds of the one before: the quietest round of a longer timing is less a matter of luck, so a machine that
    is noisy throughout (a VM whose 10-round timings disagreed by 6-11% with nothing else running) gets a
    longer measurement instead of the same short one again. ``dtypes`` (one per path): files timed in another
    dtype than the backend's (:func:`slimnas.latency.e2e.time_onnx_files`). ``probe``: the reference probe of
    the table the timings are set against (:attr:`slimnas.pipeline.targets.Target.probe`).
    """
    best = None
    for attempt in range(1, config.attempts + 1):
        e2e = e2e_config(config, scale=2 ** (attempt - 1))
        res = time_onnx_files(list(paths), backend.name, backend.config, TimingConfig(samples=config.samples), e2e, dtypes=dtypes,
                              probe=probe)
        models = [summary(m, e2e) for m in res["models"]]
        probes = [float(p) for p in res["probe_ms"]]
        worst = max((m["repeat_pct"] for m in models if np.isfinite(m["repeat_pct"])), default=0.0)
        for m in models:
            m["attempt"], m["rounds"] = attempt, e2e.rounds
        if best is None or worst < best[0]:
            best = (worst, models, e2e.probe_ms(probes), probes)
        if worst < config.steady_pct or config.rounds < 2:
            break
        if attempt < config.attempts:
            logger.info(f"the timing was unsteady (even and odd rounds disagree by {worst:.0f}%): timing again, "
                        f"{2 * e2e.rounds} rounds")
    return best[1], best[2], best[3]
