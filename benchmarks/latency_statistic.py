"""Which measured median should a latency predictor be judged against on a shared machine? An analysis of the
committed validation runs (no new timing): ``benchmarks/results/<table>/validate.csv`` from
``benchmarks/latency_accuracy.py``.

Each validated subnet was timed over R interleaved rounds, and two statistics were kept: the quietest round's
median (``best_round_ms``, what slimnas calibrates on) and the median of all samples pooled (``median_ms``). This
script reports, per table:

- the predictor against each statistic as shipped (calibrated on the quietest round);
- the predictor re-fitted to the pooled statistic (scale and offset fitted on one half of the subnets, scored on
  the other half, both ways): how well the table's *shape* follows the pooled median once the bias is removed;
- each statistic's own repeat error (even rounds vs odd rounds, RMS / sqrt 2): the floor under any RMSPE
  measured against it.

    PYTHONPATH=. python benchmarks/latency_statistic.py            # writes benchmarks/results/latency_statistic.md
    PYTHONPATH=. python benchmarks/latency_statistic.py --runs runs/v1 runs/v2 --out runs/statistic.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from slimnas.latency.validate import metrics

HERE = Path(__file__).resolve().parent
TABLES = ("mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32", "mobilenet_v2_224_onnxruntime_cpu_t1_b1_fp32",
          "efficientnet_b0_224_onnxruntime_cpu_t1_b1_fp32")


def refit_two_fold(predicted: np.ndarray, measured: np.ndarray, seed: int = 0) -> dict:
    """Fit measured ~ a * predicted + b (relative least squares) on one half, score the other half; both ways."""
    idx = np.random.default_rng(seed).permutation(len(predicted))
    halves = (idx[: len(idx) // 2], idx[len(idx) // 2:])
    out_pred = np.empty_like(predicted)
    for fit, test in (halves, halves[::-1]):
        a = np.c_[predicted[fit], np.ones(len(fit))] / measured[fit, None]
        coef = np.linalg.lstsq(a, np.ones(len(fit)), rcond=None)[0]
        out_pred[test] = coef[0] * predicted[test] + coef[1]
    return metrics(out_pred, measured)


def analyse(folders: list[Path]) -> list[dict]:
    """Per validation folder: the metrics and repeat errors its ``validate.json`` holds, plus the 2-fold re-fit."""
    rows = []
    for folder in folders:
        csv, summary = folder / "validate.csv", folder / "validate.json"
        for path in (csv, summary):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: run `slimnas latency validate --out {folder}` (or "
                                        "benchmarks/latency_accuracy.py) first")
        v = json.loads(summary.read_text())
        d = pd.read_csv(csv)
        rows.append({"table": folder.name, "n": len(d),
                     "quietest": v["metrics_by_statistic"]["best_round"], "pooled": v["metrics_by_statistic"]["median"],
                     "pooled_refit": refit_two_fold(d.predicted_ms.to_numpy(), d.median_ms.to_numpy()),
                     "repeat_quietest": v["repeat_error_pct"]["best_round"], "repeat_pooled": v["repeat_error_pct"]["median"],
                     "round_spread": v["median_round_spread_pct"]})
    return rows


def markdown(rows: list[dict], command: str = "", reading: bool = True) -> str:
    suffix = f" {command}" if command else ""
    lines = ["# Which median? The latency predictor against the two end-to-end statistics", "",
             f"Command: `PYTHONPATH=. python benchmarks/latency_statistic.py{suffix}` (reads `validate.csv` files; "
             "no new timing).", "",
             "| table | subnets | vs quietest round: within ±10% / RMSPE | its repeat error | vs pooled median: within ±10% / RMSPE "
             "(mean error) | pooled, predictor re-fitted to it (2-fold): within ±10% / RMSPE | pooled's repeat error | "
             "one subnet's round medians spread (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q, p, f = r["quietest"], r["pooled"], r["pooled_refit"]
        lines.append(f"| {r['table']} | {r['n']} | {100 * q['within_10pct']:.1f}% / {q['rmspe_pct']:.2f}% | {r['repeat_quietest']:.2f}% | "
                     f"{100 * p['within_10pct']:.1f}% / {p['rmspe_pct']:.2f}% ({p['mean_error_pct']:+.1f}%) | "
                     f"{100 * f['within_10pct']:.1f}% / {f['rmspe_pct']:.2f}% | "
                     f"{r['repeat_pooled']:.2f}% | {r['round_spread']:.1f}% |")
    lines.append("")
    if not reading:  # the reading below is of the three committed runs
        return "\n".join(lines)
    lines += ["Reading: the pooled median carries the other jobs on this shared 2-core machine (one subnet's round medians "
              "spread by the last column), so predictions calibrated on the quietest round sit 13–15% below it. Re-fitting "
              "the same predictions to the pooled median removes that bias but not the noise: what remains is below the "
              "pooled statistic's own repeat error for MobileNetV2 at 32 and 1.7–1.8 times it at 224, and the targets "
              "(>= 95% within ±10%, RMSPE <= 5%) stay missed against the pooled median for both MobileNetV2 tables even "
              "then. The quietest round repeats to 0.5–3%, it is the statistic slimnas calibrates on, verifies budgets "
              "with and reports, and the targets are met against it.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=HERE / "results", help="folder holding <table>/validate.csv")
    p.add_argument("--runs", type=Path, nargs="+", help="validation folders (each with validate.csv) instead of the "
                   "three committed tables' runs")
    p.add_argument("--out", type=Path, default=HERE / "results" / "latency_statistic.md")
    args = p.parse_args(argv)
    from slimnas.fileio import atomic_write_text

    try:
        text = markdown(analyse(args.runs or [args.results / name for name in TABLES]), " ".join(sys.argv[1:] if argv is None else argv),
                        reading=args.runs is None)
    except FileNotFoundError as exc:
        print(f"latency_statistic: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
