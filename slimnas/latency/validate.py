"""``validate``: predicted vs measured end-to-end latency of random subnets, on the table's own backend.

N random subnets are exported to ONNX, then timed end to end in a fresh process, interleaved in rounds with
the reference probe; the table's calibrated predictions are rescaled by the probe of that same run. Reports
the share within ±10%, RMSPE and Kendall's τ, and writes a CSV, a JSON summary and a scatter plot.
"""
from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import SlimnasError
from ..models import load_model
from ..stats import kendall_tau
from ..space import SpaceConfig
from ..supernet import ConvertConfig, convert
from .backends import BackendConfig, create_backend
from .e2e import export_subnets, time_onnx_files
from .fingerprint import DEVICE_KEYS, machine
from .predictor import LatencyPredictor
from .table import LatencyTable
from .timing import TimingConfig


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    rel = (pred - meas) / meas
    return {"n": int(len(meas)), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "rmspe_pct": float(np.sqrt(np.mean(rel ** 2)) * 100), "mean_error_pct": float(np.mean(rel) * 100),
            "max_abs_error_pct": float(np.max(np.abs(rel)) * 100), "kendall_tau": kendall_tau(pred, meas) if len(meas) >= 2 else float("nan")}


def supernet_for(table: LatencyTable):
    """Rebuild the supernet a table was made for, from its fingerprint's ``model_args``."""
    args = table.fingerprint.get("model_args") or {}
    if not args.get("model"):
        raise SlimnasError(f"{table.path}'s fingerprint does not record how to build its model (model_args)")
    model = load_model(args["model"], num_classes=args.get("num_classes"), weights=args.get("weights"))
    space = SpaceConfig(ratios=tuple(args.get("ratios", SpaceConfig().ratios)), divisor=args.get("divisor", 8),
                        max_ratio=args.get("max_ratio", 1.0))
    return convert(model, tuple(table.fingerprint["input_shape"]), ConvertConfig(space=space))


def device_of(backend) -> dict:
    return {**machine(), **backend.describe()}


def validate(table_path, samples: int = 50, seed: int = 0, out: Optional[Path] = None, rounds: int = 3,
             timing: Optional[TimingConfig] = None, log=print) -> dict:
    table = LatencyTable.load(table_path)
    fp = table.fingerprint
    backend = create_backend(fp["backend"], BackendConfig(fp.get("device", "cpu"), int(fp["threads"]),
                                                          int(fp["batch"]), fp.get("dtype", "fp32")))
    net = supernet_for(table)
    predictor = LatencyPredictor(table, net, device=device_of(backend))
    rng = random.Random(seed)
    subnets = [net.space.sample(rng) for _ in range(samples)]
    timing = timing or TimingConfig(**fp.get("timing", {}))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="slimnas-validate-") as tmp:
        paths = export_subnets(net, subnets, Path(tmp))
        log(f"exported {len(paths)} subnets in {time.time() - t0:.0f} s; timing them end to end (fresh process)")
        res = time_onnx_files(paths, backend.name, backend.config, timing, rounds=rounds)
    probe_now = float(np.median(res["probe_ms"]))
    speed = predictor.rescale(probe_now)
    pred = predictor.predict(subnets)
    meas = np.array([m["median_ms"] for m in res["models"]])
    result = {"table": str(table.path), "samples": samples, "seed": seed, "rounds": rounds,
              "probe_table_ms": predictor.reference_probe_ms, "probe_now_ms": probe_now, "speed_factor": speed,
              "probe_rounds_ms": res["probe_ms"], "calibration": {"a": predictor.a, "b": predictor.b,
              "loo_rmspe_pct": predictor.error_pct}, "metrics": metrics(pred, meas),
              "metrics_without_probe_rescale": metrics(pred / speed, meas),
              "median_repeat_spread_pct": float(np.median([m["spread_pct"] for m in res["models"]])),
              "wall_s": round(time.time() - t0, 1), "device": {k: fp.get(k) for k in DEVICE_KEYS}}
    rows = pd.DataFrame({"subnet": [s.hash for s in subnets], "predicted_ms": pred, "measured_ms": meas,
                         "p10_ms": [m["p10_ms"] for m in res["models"]], "p90_ms": [m["p90_ms"] for m in res["models"]],
                         "n": [m["n"] for m in res["models"]], "round_spread_pct": [m["spread_pct"] for m in res["models"]],
                         "flops_m": [net.flops(s) / 1e6 for s in subnets]})
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(out / "validate.csv", index=False)
        (out / "validate.json").write_text(json.dumps(result, indent=2) + "\n")
        scatter(rows, result, out / "validate.png", title=f"{fp.get('model')} {fp['input_shape']} {fp['backend']} t{fp['threads']}")
        result["files"] = [str(out / n) for n in ("validate.csv", "validate.json", "validate.png")]
    m = result["metrics"]
    log(f"{samples} subnets: {100 * m['within_10pct']:.1f}% within ±10%, RMSPE {m['rmspe_pct']:.2f}%, "
        f"Kendall τ {m['kendall_tau']:.3f} (probe rescale ×{speed:.3f})")
    return result


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
    ax.set(xlabel="measured median (ms)", ylabel="predicted (ms)", xlim=(lo, hi), ylim=(lo, hi),
           title=f"{title}\n{100 * m['within_10pct']:.0f}% within ±10%, RMSPE {m['rmspe_pct']:.1f}%, τ {m['kendall_tau']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
