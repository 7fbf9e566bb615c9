"""Latency-table benchmark: profile a model's width space, validate predictions, predictor throughput,
and (optionally) latency vs uniform width ratio.

    flock /tmp/slimnas-cpu.lock env PYTHONPATH=. python benchmarks/latency_accuracy.py \
        --model mobilenet_v2 --num-classes 10 --input-size 32 --samples 200

Writes latency_tables/<name>/ and benchmarks/results/<name>/ (validate.csv/json/png, summary.json).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import slimnas
from slimnas.latency import BackendConfig, LatencyPredictor, create_backend, profile
from slimnas.latency.e2e import time_onnx_files
from slimnas.latency.fingerprint import machine
from slimnas.latency.timing import TimingConfig
from slimnas.latency.validate import validate

ROOT = Path(__file__).resolve().parents[1]


def throughput(pred: LatencyPredictor, net, n: int = 10000) -> dict:
    rng = random.Random(1)
    subnets = [net.space.sample(rng) for _ in range(n)]
    t = time.perf_counter()
    a = pred.predict(subnets)
    from_subnets = time.perf_counter() - t
    w = net.widths_matrix(subnets)
    t = time.perf_counter()
    b = pred.predict(w)
    from_matrix = time.perf_counter() - t
    one = np.array([pred.predict([s])[0] for s in subnets[:200]])
    return {"n": n, "subnets_per_s_from_subnet_objects": n / from_subnets, "subnets_per_s_from_width_matrix": n / from_matrix,
            "vectorised_equals_per_subnet": bool(np.allclose(a[:200], one) and np.allclose(a, b))}


def uniform_sweep(size: int, num_classes: int, threads: int, out: Path, pred: LatencyPredictor, net) -> dict:
    """torchvision mobilenet_v2(width_mult=r) end to end for r in 0.25..1.0, plus the table's predictions."""
    import torchvision

    ratios = [round(r, 3) for r in np.arange(0.25, 1.0001, 0.05)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for r in ratios:
            m = torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=r).eval()
            p = Path(tmp) / f"w{r}.onnx"
            slimnas.export_onnx(m, p, (3, size, size), check=False)
            paths.append(p)
        res = time_onnx_files(paths, "onnxruntime", BackendConfig(threads=threads), TimingConfig(), rounds=5)
    flops = []
    for r in ratios:
        m = torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=r)
        flops.append(sum(p.numel() for p in m.parameters()))
    meas = [m["median_ms"] for m in res["models"]]
    spread = [m["spread_pct"] for m in res["models"]]
    p10 = [m["p10_ms"] for m in res["models"]]
    p90 = [m["p90_ms"] for m in res["models"]]
    pred.rescale(float(np.median(res["probe_ms"])))
    cand = [0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    pred_ms = [float(pred.predict([net.space.uniform(r)])[0]) for r in cand]
    nonmono = [(ratios[i], ratios[i + 1]) for i in range(len(ratios) - 1) if meas[i + 1] < meas[i] * 0.98]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(ratios, meas, yerr=[np.subtract(meas, p10), np.subtract(p90, meas)], fmt="o-", ms=4,
                label="torchvision width_mult, measured (median, p10-p90)")
    ax.plot(cand, pred_ms, "s--", label="slimnas space uniform(r), predicted")
    for a, b in nonmono:
        ax.axvspan(a, b, color="red", alpha=0.15)
    ax.set(xlabel="uniform width ratio", ylabel="latency (ms)",
           title=f"MobileNetV2 {size}x{size}, onnxruntime CPU, {threads} thread (red: latency drops as width grows)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "uniform_width.png", dpi=120)
    plt.close(fig)
    return {"ratios": ratios, "measured_ms": meas, "p10_ms": p10, "p90_ms": p90, "round_spread_pct": spread,
            "probe_ms": res["probe_ms"], "predicted_uniform": dict(zip(map(str, cand), pred_ms)),
            "non_monotonic_steps": nonmono}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--uniform-sweep", action="store_true")
    ap.add_argument("--skip-validate", action="store_true")
    args = ap.parse_args()
    name = f"{args.model}_{args.input_size}_onnxruntime_cpu_t{args.threads}_b1_fp32"
    table_dir = ROOT / "latency_tables" / name
    out = ROOT / "benchmarks" / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    net = slimnas.convert(slimnas.load_model(args.model, num_classes=args.num_classes), args.input_size)
    backend = create_backend("onnxruntime", BackendConfig(threads=args.threads))
    summary = {"command": " ".join(sys.argv), "machine": machine(), "backend": backend.describe()}
    t = time.time()
    table = profile(net, backend, table_dir, model=args.model,
                    model_args={"model": args.model, "num_classes": args.num_classes})
    summary["profile"] = {"wall_s_this_run": round(time.time() - t, 1), **{k: table.fingerprint.get(k) for k in
                          ("entries_measured", "entries_interpolated", "last_run", "probe_ms")},
                          "calibration": {k: v for k, v in (table.calibration() or {}).items() if k in ("a", "b", "loo_rmspe_pct", "fixed_ms", "n")},
                          "unit_spread_pct_median": float(table.units("measured")["spread_pct"].astype(float).median()),
                          "unit_spread_pct_p90": float(table.units("measured")["spread_pct"].astype(float).quantile(0.9))}
    pred = LatencyPredictor(table, net)
    summary["throughput"] = throughput(pred, net)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.skip_validate:
        summary["validate"] = validate(table_dir, samples=args.samples, out=out, rounds=args.rounds)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.uniform_sweep:
        summary["uniform_sweep"] = uniform_sweep(args.input_size, args.num_classes, args.threads, out, pred, net)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("profile", "throughput")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
