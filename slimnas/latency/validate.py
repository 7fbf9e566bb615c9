"""``validate``: predicted vs measured end-to-end latency of random subnets, on the table's own backend.

N random subnets of the supernet the caller gives (the latency layer loads no model or checkpoint) are
exported (ONNX, or plain PyTorch modules for the torch backend), then timed end to end in a fresh process,
interleaved in rounds with the reference probe (optionally in chunks, resumable); the table's calibrated
predictions are rescaled by the probe of that same run. Reports the share within ±10%, RMSPE and Kendall's τ against the statistic the table
was calibrated on (and against the other one), with the measurement's own repeat error beside them, and
writes a CSV, a JSON summary and a scatter plot.
"""
from __future__ import annotations

import logging
import json
import random
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from scipy.stats import kendalltau

from ..fileio import atomic_write_text
from ..space import KERNEL_KNOB
from .backends import BackendConfig, create_backend
from .e2e import STATISTICS, E2EConfig, export_subnets, time_onnx_files
from .fingerprint import DEVICE_KEYS, machine
from .predictor import LatencyPredictor
from .table import LatencyTable
from .timing import TimingConfig

logger = logging.getLogger(__name__)


def kendall_tau(a, b) -> float:
    """Kendall's τ-b of two sequences (scipy's)."""
    return float(kendalltau(a, b).statistic)


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    rel = (pred - meas) / meas
    return {"n": int(len(meas)), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "rmspe_pct": float(np.sqrt(np.mean(rel ** 2)) * 100), "mean_error_pct": float(np.mean(rel) * 100),
            "max_abs_error_pct": float(np.max(np.abs(rel)) * 100), "kendall_tau": kendall_tau(pred, meas) if len(meas) >= 2 else float("nan")}


def device_of(backend) -> dict:
    return {**machine(), **backend.describe()}


def e2e_for(table: LatencyTable, rounds: Optional[int] = None) -> E2EConfig:
    """End-to-end settings that match how the table's calibration was measured (its statistic)."""
    statistic = (table.calibration() or {}).get("e2e_statistic", "median")
    base = E2EConfig(**{**(table.fingerprint.get("e2e") or {}), "statistic": statistic})
    return base if rounds is None else replace(base, rounds=rounds)


def _time_chunks(net, subnets, backend, timing, e2e, work: Path, chunk: int, max_chunks: Optional[int],
                 original: bool = False, probe: str = "conv") -> list[dict]:
    """Time ``subnets`` in chunks (each in its own fresh worker run); a finished chunk is kept in
    ``work/chunk_NNN.json`` and not timed again. Returns the chunks finished so far, in order.

    ``original``: each chunk also times the supernet's original subnet in the same rounds (kept apart, under
    ``"original"``: a chunk's ``"models"`` stay one per subnet), the anchor of :func:`_compare`'s anchored metrics.
    ``probe``: the table's reference probe, timed in every round."""
    size = chunk or len(subnets)
    parts = [subnets[i:i + size] for i in range(0, len(subnets), size)]
    done, timed = [], 0
    for k, part in enumerate(parts):
        f = work / f"chunk_{k:03d}.json"
        job = {"subnets": [s.hash for s in part], "e2e": asdict(e2e), "timing": asdict(timing),
               **({"original": net.space.original().hash} if original else {}), **({"probe": probe} if probe != "conv" else {})}
        if f.is_file():
            data = json.loads(f.read_text())
            if data.get("job") == job:
                done.append(data)
                continue
        if max_chunks is not None and timed >= max_chunks:
            break
        t0 = time.time()
        timed_subnets = [*part, net.space.original()] if original else part
        paths = export_subnets(net, timed_subnets, work / backend.model_format, backend.config.batch, fmt=backend.model_format)
        res = time_onnx_files(paths, backend.name, backend.config, timing, e2e, probe=probe)
        for p in paths:
            p.unlink(missing_ok=True)
        models = res["models"]
        data = {"job": job, "models": models[:len(part)], "probe_ms": res["probe_ms"], "time": time.time(),
                **({"original": models[-1]} if original else {})}
        atomic_write_text(f, json.dumps(data) + "\n")
        done.append(data)
        timed += 1
        logger.info(f"chunk {k + 1}/{len(parts)}: {len(part)} subnets exported and timed in {time.time() - t0:.0f} s")
    return done


def validate(table_path, supernet, samples: int = 50, seed: int = 0, out: Optional[Path] = None, rounds: Optional[int] = None,
             timing: Optional[TimingConfig] = None, chunk: int = 0, max_chunks: Optional[int] = None) -> dict:
    """Time ``samples`` random subnets of ``supernet`` (the network the table was made for; the caller builds
    it, e.g. with :func:`slimnas.tables.supernet_for`) end to end and compare with the table's predictions.

    ``chunk`` > 0 times them in chunks of that many, each in a worker run of its own with its own reference
    probe (predictions of a chunk are rescaled by that chunk's probe); with ``out`` given, finished chunks are
    kept under ``out/work`` and a rerun (after a kill, or after stopping at ``max_chunks`` new chunks) goes on
    from there. Without ``out`` nothing is written anywhere (the table folder is only read). Returns the
    summary, or ``{"finished": False, ...}`` while chunks remain.
    """
    table = LatencyTable.load(table_path)
    fp = table.fingerprint
    backend = create_backend(fp["backend"], BackendConfig(fp.get("device", "cpu"), int(fp["threads"]),
                                                          int(fp["batch"]), fp.get("dtype", "fp32")))
    net = supernet
    predictor = LatencyPredictor(table, net, device=device_of(backend))
    rng = random.Random(seed)
    subnets = [net.space.sample(rng) for _ in range(samples)]
    timing = timing or TimingConfig(**fp.get("timing", {}))
    e2e = e2e_for(table, rounds)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="slimnas-validate-") as tmp:
        work = Path(out) / "work" if out is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        chunks = _time_chunks(net, subnets, backend, timing, e2e, work, chunk, max_chunks, original=True, probe=table.probe)
    n_done = sum(len(c["models"]) for c in chunks)
    if n_done < samples:
        logger.info(f"{n_done}/{samples} subnets timed; run again to time the rest")
        return {"finished": False, "timed": n_done, "samples": samples}
    result, rows = _compare(predictor, net, subnets, chunks, e2e)
    result.update({"finished": True, "table": str(table.path), "probe": table.probe, "samples": samples, "seed": seed, "chunk": chunk,
                   "e2e": asdict(e2e), "wall_s_this_run": round(time.time() - t0, 1),
                   "device": {k: fp.get(k) for k in DEVICE_KEYS}})
    if out is not None:
        out = Path(out)
        rows.to_csv(out / "validate.csv", index=False)
        atomic_write_text(out / "validate.json", json.dumps(result, indent=2) + "\n")
        scatter(rows, result, out / "validate.png", title=f"{fp.get('model')} {fp['input_shape']} {fp['backend']} t{fp['threads']}")
        result["files"] = [str(out / n) for n in ("validate.csv", "validate.json", "validate.png")]
    m = result["metrics"]
    logger.info(f"{samples} subnets: {100 * m['within_10pct']:.1f}% within ±10%, RMSPE {m['rmspe_pct']:.2f}%, "
        f"Kendall τ {m['kendall_tau']:.3f} against the {e2e.statistic} statistic "
        f"(its repeat error {result['repeat_error_pct'][e2e.statistic]:.2f}%)")
    a = result.get("metrics_anchored_on_original")
    if a:
        logger.info(f"anchored on the original timed beside them (as a slim run predicts): {100 * a['within_10pct']:.1f}% "
                    f"within ±10%, RMSPE {a['rmspe_pct']:.2f}%, mean error {a['mean_error_pct']:+.1f}%")
    return result


def _compare(predictor: LatencyPredictor, net, subnets, chunks: list[dict], e2e: E2EConfig) -> tuple[dict, pd.DataFrame]:
    """Predictions (each chunk rescaled by its own probe) against the measurements, in both statistics."""
    models = [m for c in chunks for m in c["models"]]
    chunk_of = np.concatenate([np.full(len(c["models"]), k) for k, c in enumerate(chunks)])
    speeds = np.array([e2e.probe_ms(c["probe_ms"]) / predictor.reference_probe_ms for c in chunks])
    predictor = predictor.at_speed(1.0)
    unscaled = predictor.predict(subnets)
    pred = unscaled * speeds[chunk_of]
    stats = {name: replace(e2e, statistic=name) for name in STATISTICS}
    meas = {name: np.array([cfg.latency_ms(m) for m in models]) for name, cfg in stats.items()}
    result = {"statistic": e2e.statistic, "metrics": metrics(pred, meas[e2e.statistic]),
              "metrics_without_probe_rescale": metrics(unscaled, meas[e2e.statistic]),
              "metrics_by_statistic": {name: metrics(pred, meas[name]) for name in stats},
              "repeat_error_pct": {name: cfg.repeat_error_pct(models) for name, cfg in stats.items()},
              "median_round_spread_pct": float(np.median([m["spread_pct"] for m in models])),
              "probe_table_ms": predictor.reference_probe_ms, "speed_factors": speeds.tolist(),
              "probe_rounds_ms": [c["probe_ms"] for c in chunks],
              **_anchored(predictor, net, unscaled, chunk_of, chunks, meas[e2e.statistic], e2e),
              "calibration": {"slopes": dict(predictor.calibration.slopes), "a": predictor.a, "b": predictor.b,
                              "terms": dict(predictor.terms),
                              "ridge": predictor.calibration.ridge, "loo_rmspe_pct": predictor.error_pct,
                              "drift_corrected": predictor.drift_corrected}}
    rows = pd.DataFrame({"subnet": [s.hash for s in subnets], "predicted_ms": pred, "measured_ms": meas[e2e.statistic],
                         "median_ms": meas["median"], "best_round_ms": meas["best_round"],
                         "p10_ms": [m["p10_ms"] for m in models], "p90_ms": [m["p90_ms"] for m in models],
                         "n": [m["n"] for m in models], "round_spread_pct": [m["spread_pct"] for m in models],
                         "half_diff_pct": [m["half_diff_pct"] for m in models],
                         "best_half_diff_pct": [m["best_half_diff_pct"] for m in models], "chunk": chunk_of,
                         "flops_m": [net.flops(s) / 1e6 for s in subnets]})
    if net.space.stages:  # elastic depth: how many skippable blocks each subnet keeps
        n_blocks = sum(len(st.blocks) for st in net.space.stages)
        rows["blocks_kept"] = [n_blocks - len(net.space.dropped(s)) for s in subnets]
    if net.space.kernels:  # elastic kernels: the mean kernel size over the elastic convs
        rows["kernel_mean"] = [float(np.mean([net.space.value(s, KERNEL_KNOB + k.name) for k in net.space.kernels]))
                               for s in subnets]
    return result, rows


def _anchored(predictor: LatencyPredictor, net, unscaled: np.ndarray, chunk_of: np.ndarray, chunks: list[dict],
              meas: np.ndarray, e2e: E2EConfig) -> dict:
    """The predictions as a slim run uses them: anchored on the original timed in the same rounds (each chunk's
    predictions times its measured/predicted original, :func:`slimnas.pipeline.prepare.anchor`), which takes out
    whatever slowed the whole machine between profiling and now. The error of a relative budget is this one's.
    Empty when the chunks did not time the original (chunks cached by an older version)."""
    if not chunks or not all("original" in c for c in chunks):
        return {}
    orig_pred = float(predictor.predict([net.space.original()])[0])
    factors = np.array([e2e.latency_ms(c["original"]) / orig_pred for c in chunks])
    return {"metrics_anchored_on_original": metrics(unscaled * factors[chunk_of], meas),
            "original_measured_over_predicted": factors.tolist()}


def scatter(rows: pd.DataFrame, result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(rows["measured_ms"], rows["predicted_ms"], s=10)
    lo = float(min(rows["measured_ms"].min(), rows["predicted_ms"].min())) * 0.9
    hi = float(max(rows["measured_ms"].max(), rows["predicted_ms"].max())) * 1.1
    x = np.linspace(lo, hi, 10)
    ax.plot(x, x, "k-", lw=1)
    ax.plot(x, 1.1 * x, "k--", lw=0.7)
    ax.plot(x, 0.9 * x, "k--", lw=0.7)
    m = result["metrics"]
    what = {"best_round": "quietest round's median", "median": "median of all samples"}.get(result.get("statistic"), "median")
    ax.set(xlabel=f"measured, {what} (ms)", ylabel="predicted (ms)", xlim=(lo, hi), ylim=(lo, hi),
           title=f"{title}\n{100 * m['within_10pct']:.1f}% within ±10%, RMSPE {m['rmspe_pct']:.1f}%, τ {m['kendall_tau']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
