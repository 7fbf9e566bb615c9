"""Latency-table benchmark: profile a model's width space, validate predictions, predictor throughput,
calibration ablations, and (optionally) latency vs uniform width ratio.

    flock /tmp/slimnas-cpu.lock env PYTHONPATH=. python benchmarks/latency_accuracy.py \
        --model mobilenet_v2 --num-classes 10 --input-size 32 --samples 200

Writes latency_tables/<name>/ and benchmarks/results/<name>/ (validate.csv/json/png, summary.json). Every step
resumes: a finished table is not profiled again, finished validation chunks are kept (``--chunk 100
--max-chunks 1`` times one chunk per call, so each locked call stays short), and summary.json is updated,
not replaced. ``--uniform-sweep`` only adds the sweep (and the torchvision width 0.75 vs 1.0 check).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import slimnas
from slimnas.fileio import atomic_write_text
from slimnas.latency import BackendConfig, E2EConfig, LatencyPredictor, LatencyTable, create_backend, profile
from slimnas.latency.e2e import time_onnx_files
from slimnas.latency.fingerprint import machine
from slimnas.latency.profiler import calibrate_from_table, calibration_rows
from slimnas.latency.timing import TimingConfig
from slimnas.latency.validate import metrics, validate

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


def profile_summary(table: LatencyTable, wall_s: float) -> dict:
    cal = table.calibration() or {}
    measured = table.units("measured")
    passes = measured.groupby(["signature", "cin", "cout"])["median_ms"].agg(["min", "max", "size"])
    passes = passes[passes["size"] > 1]
    disagreement = (passes["max"] / passes["min"] - 1) * 100
    return {"wall_s": wall_s, **{k: table.fingerprint.get(k) for k in ("entries_measured", "entries_interpolated", "last_run",
                                                                       "probe_ms", "e2e", "passes")},
            "probes": int(len(table.of_kind("probe"))),
            "pass_disagreement_pct": {"median": float(disagreement.median()), "p90": float(disagreement.quantile(0.9)),
                                      "max": float(disagreement.max())} if len(passes) else None,
            "calibration": {k: cal.get(k) for k in ("slopes", "a", "b", "ridge", "loo_rmspe_pct", "loo_rmspe_pct_by_ridge",
                                                    "drift_corrected", "fixed_ms", "n", "e2e_statistic")},
            "unit_spread_pct_median": float(measured["spread_pct"].astype(float).median()),
            "unit_spread_pct_p90": float(measured["spread_pct"].astype(float).quantile(0.9))}


def ablation(table: LatencyTable, net, rows: pd.DataFrame, result: dict) -> dict:
    """The same validation measurements against calibrations fitted other ways on the table's end-to-end rows."""
    subnets_cal, measured_cal, probe_ms = calibration_rows(table, net)
    rng = random.Random(result["seed"])
    subnets = [net.space.sample(rng) for _ in range(result["samples"])]
    assert [s.hash for s in subnets] == list(rows["subnet"])
    speeds = np.asarray(result["speed_factors"])[rows["chunk"].to_numpy()]
    out = {}
    for drift in (False, True):
        for label, ridges in (("one slope", [math.inf]), ("per kind (ridge by LOO)", None)):
            pred = LatencyPredictor(table, net)
            pred, cal = pred.calibrated(subnets_cal, measured_cal, probe_ms, drift_corrected=drift, ridges=ridges)
            m = metrics(pred.predict(subnets) * speeds, rows["measured_ms"].to_numpy())
            out[f"{label}, drift correction {'on' if drift else 'off'}"] = {
                "within_10pct": m["within_10pct"], "rmspe_pct": m["rmspe_pct"], "kendall_tau": m["kendall_tau"],
                "mean_error_pct": m["mean_error_pct"], "loo_rmspe_pct": cal["loo_rmspe_pct"], "ridge": cal["ridge"],
                "slopes": cal["slopes"], "b": cal["b"]}
    return out


def timed_interleaved(models: dict, size: int, threads: int, rounds: int) -> tuple[list[dict], list[float]]:
    """Export torch models to ONNX and time them together (fresh process, interleaved rounds)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, m in models.items():
            p = Path(tmp) / f"{name}.onnx"
            slimnas.export_onnx(m.eval(), p, (3, size, size), check=False)
            paths.append(p)
        res = time_onnx_files(paths, "onnxruntime", BackendConfig(threads=threads), TimingConfig(),
                              E2EConfig(rounds=rounds))
    return res["models"], res["probe_ms"]


def uniform_sweep(size: int, num_classes: int, threads: int, pred: LatencyPredictor, net, rounds: int) -> dict:
    """torchvision mobilenet_v2(width_mult=r) end to end for r in 0.25..1.0, plus the table's predictions.

    A step to a wider ratio is flagged when it is not slower beyond the measurement's noise: its relative
    change is below 2·√2 times the sweep's repeat error (two standard deviations of a difference of two).
    """
    import torchvision

    from slimnas.latency.e2e import repeat_error_pct

    ratios = [round(r, 3) for r in np.arange(0.25, 1.0001, 0.05)]
    models = {f"w{r}": torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=r) for r in ratios}
    res, probes = timed_interleaved(models, size, threads, rounds)
    flops = [sum(p.numel() for p in m.parameters()) for m in models.values()]
    best = [m["best_round_ms"] for m in res]
    med = [m["median_ms"] for m in res]
    rep = repeat_error_pct([m["best_half_diff_pct"] for m in res])
    threshold = 2 * math.sqrt(2) * rep
    steps = []
    for i in range(len(ratios) - 1):
        change = (best[i + 1] - best[i]) / best[i] * 100
        kind = "faster" if change < -threshold else ("flat" if change <= threshold else "slower")
        steps.append({"from": ratios[i], "to": ratios[i + 1], "change_pct": change, "kind": kind})
    pred = pred.rescale(min(probes))
    cand = sorted({0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0})
    pred_ms = [float(pred.predict([net.space.uniform(r)])[0]) for r in cand]
    return {"ratios": ratios, "best_round_ms": best, "median_ms": med, "p10_ms": [m["p10_ms"] for m in res],
            "p90_ms": [m["p90_ms"] for m in res], "params": flops, "rounds": rounds, "repeat_error_pct": rep,
            "threshold_pct": threshold, "steps": steps, "probe_ms": probes,
            "predicted_uniform": dict(zip(map(str, cand), pred_ms))}


def plot_uniform(u: dict, size: int, threads: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    ax.plot(u["ratios"], u["best_round_ms"], "o-", ms=4, label="torchvision width_mult, measured (quietest round's median)")
    ax.plot(u["ratios"], u["median_ms"], ".:", color="grey", ms=3, lw=0.8, label="same, median of all rounds")
    cand = [float(r) for r in u["predicted_uniform"]]
    ax.plot(cand, list(u["predicted_uniform"].values()), "s--", label="slimnas space uniform(r), predicted from the table")
    for s in u["steps"]:
        if s["kind"] != "slower":
            ax.axvspan(s["from"], s["to"], color="red" if s["kind"] == "faster" else "orange", alpha=0.2)
    ax.set(xlabel="uniform width ratio", ylabel="latency (ms)",
           title=f"MobileNetV2 {size}x{size}, onnxruntime CPU, {threads} thread, {u['rounds']} interleaved rounds\n"
                 f"shaded: a step to a wider ratio that is not slower beyond the noise "
                 f"(orange: within +{u['threshold_pct']:.1f}%; red: faster)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def torchvision_075_vs_1(size: int, threads: int, rounds: int) -> dict:
    """torchvision's own mobilenet_v2 (1000 classes) at width 0.75 and 1.0, timed interleaved in a fresh process."""
    import torchvision

    models = {f"w{r}": torchvision.models.mobilenet_v2(width_mult=r) for r in (0.75, 1.0)}
    res, probes = timed_interleaved(models, size, threads, rounds)
    macs = {}
    for name, m in models.items():
        import thop
        import torch

        macs[name] = thop.profile(m.eval(), inputs=(torch.randn(1, 3, size, size),), verbose=False)[0] / 1e6
    a, b = res
    return {"rounds": rounds, "w0.75": {k: a[k] for k in ("best_round_ms", "median_ms", "p10_ms", "p90_ms", "best_half_diff_pct")},
            "w1.0": {k: b[k] for k in ("best_round_ms", "median_ms", "p10_ms", "p90_ms", "best_half_diff_pct")},
            "ratio_best_round": a["best_round_ms"] / b["best_round_ms"], "ratio_median": a["median_ms"] / b["median_ms"],
            "round_ratios": [x / y for x, y in zip(a["round_medians_ms"], b["round_medians_ms"])],
            "mmacs": macs, "probe_ms": probes}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, help="validation rounds (default: the table's)")
    ap.add_argument("--chunk", type=int, default=0)
    ap.add_argument("--max-chunks", type=int)
    ap.add_argument("--uniform-sweep", action="store_true", help="only the latency vs uniform width sweep (+ torchvision check)")
    ap.add_argument("--sweep-rounds", type=int, default=30)
    ap.add_argument("--skip-validate", action="store_true")
    ap.add_argument("--recalibrate", action="store_true", help="fit the table's calibration again (no timing) first")
    args = ap.parse_args()
    name = f"{args.model}_{args.input_size}_onnxruntime_cpu_t{args.threads}_b1_fp32"
    table_dir = ROOT / "latency_tables" / name
    out = ROOT / "benchmarks" / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}

    def save() -> None:
        atomic_write_text(summary_file, json.dumps(summary, indent=2) + "\n")

    summary.setdefault("commands", []).append(" ".join(sys.argv))
    summary.update({"machine": machine(), "backend": create_backend("onnxruntime", BackendConfig(threads=args.threads)).describe()})
    net = slimnas.convert(slimnas.load_model(args.model, num_classes=args.num_classes), args.input_size)
    fp = table_dir / "fingerprint.json"
    if fp.is_file() and "entries_measured" in json.loads(fp.read_text()) and "profile" in summary:
        table = LatencyTable.load(table_dir)  # finished earlier: its profiling figures are in the summary already
    else:
        t = time.time()
        table = profile(net, create_backend("onnxruntime", BackendConfig(threads=args.threads)), table_dir, model=args.model,
                        model_args={"model": args.model, "num_classes": args.num_classes})
        summary["profile"] = profile_summary(table, round(time.time() - t, 1))
    if args.recalibrate:
        calibrate_from_table(table, net)
    summary["profile"].update({k: v for k, v in profile_summary(table, 0).items() if k == "calibration"})
    pred = LatencyPredictor(table, net)
    summary["throughput"] = throughput(pred, net)
    save()
    if args.uniform_sweep:
        summary["uniform_sweep"] = uniform_sweep(args.input_size, args.num_classes, args.threads, pred, net, args.sweep_rounds)
        summary["torchvision_075_vs_1"] = torchvision_075_vs_1(args.input_size, args.threads, args.sweep_rounds)
    elif not args.skip_validate:
        v = validate(table_dir, net, samples=args.samples, seed=args.seed, out=out, rounds=args.rounds, chunk=args.chunk,
                     max_chunks=args.max_chunks)
        if v["finished"]:
            summary["validate"] = v
            summary["ablation"] = ablation(table, net, pd.read_csv(out / "validate.csv", dtype={"subnet": str}), v)
    if "uniform_sweep" in summary:
        plot_uniform(summary["uniform_sweep"], args.input_size, args.threads, out / "uniform_width.png")
    save()
    print(json.dumps({k: summary.get(k) for k in ("profile", "throughput")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
