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
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TABLES = ("mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32", "mobilenet_v2_224_onnxruntime_cpu_t1_b1_fp32",
          "efficientnet_b0_224_onnxruntime_cpu_t1_b1_fp32")


def scores(predicted: np.ndarray, measured: np.ndarray) -> dict:
    err = (predicted - measured) / measured
    return {"within10": 100 * float(np.mean(np.abs(err) <= 0.10)), "rmspe": 100 * float(np.sqrt(np.mean(err ** 2))),
            "mean": 100 * float(err.mean())}


def refit_two_fold(predicted: np.ndarray, measured: np.ndarray, seed: int = 0) -> dict:
    """Fit measured ~ a * predicted + b (relative least squares) on one half, score the other half; both ways."""
    idx = np.random.default_rng(seed).permutation(len(predicted))
    halves = (idx[: len(idx) // 2], idx[len(idx) // 2:])
    out_pred = np.empty_like(predicted)
    for fit, test in (halves, halves[::-1]):
        a = np.c_[predicted[fit], np.ones(len(fit))] / measured[fit, None]
        coef = np.linalg.lstsq(a, np.ones(len(fit)), rcond=None)[0]
        out_pred[test] = coef[0] * predicted[test] + coef[1]
    return scores(out_pred, measured)


def repeat_error(half_diff_pct: pd.Series) -> float:
    return float(np.sqrt(np.mean(half_diff_pct.to_numpy() ** 2)) / np.sqrt(2))


def analyse(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        path, name = folder / "validate.csv", folder.name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `slimnas latency validate --out {folder}` (or "
                                    "benchmarks/latency_accuracy.py) first")
        d = pd.read_csv(path)
        p = d.predicted_ms.to_numpy()
        rows.append({"table": name, "n": len(d),
                     "quietest": scores(p, d.best_round_ms.to_numpy()), "pooled": scores(p, d.median_ms.to_numpy()),
                     "pooled_refit": refit_two_fold(p, d.median_ms.to_numpy()),
                     "repeat_quietest": repeat_error(d.best_half_diff_pct), "repeat_pooled": repeat_error(d.half_diff_pct),
                     "round_spread": float(d.round_spread_pct.median())})
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
        lines.append(f"| {r['table']} | {r['n']} | {q['within10']:.1f}% / {q['rmspe']:.2f}% | {r['repeat_quietest']:.2f}% | "
                     f"{p['within10']:.1f}% / {p['rmspe']:.2f}% ({p['mean']:+.1f}%) | {f['within10']:.1f}% / {f['rmspe']:.2f}% | "
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
