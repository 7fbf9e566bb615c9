"""Issue 16's latency bar for elastic depth: a table of a depth space, validated end to end as a user would.

    flock /tmp/slimnas-cpu.lock python benchmarks/depth_latency.py --out benchmarks/results/depth_latency

1. ``slimnas profile mobilenet_v2 --num-classes 10 --input-size 32 --depth --out OUT/table``: the units are the
   width-only table's; its calibration subnets (random ones among them) drop blocks, and the calibration may fit
   the ``blocks`` term (skippable blocks kept) beside the others.
2. ``slimnas latency validate --table OUT/table --samples 60 --out OUT/validate``: 60 random subnets of the depth
   space (widths and depths drawn together) timed end to end in fresh processes and compared with the predictions.
With ``--kernel-sizes 3,5,7`` the space's depthwise convs choose their kernel size too (``slimnas profile ...
--kernel-sizes 3,5,7``): one unit per kernel size, validated on subnets that draw widths, depths and kernels together.

3. By default (``--no-width-only`` skips it), the same two commands without ``--depth`` into ``OUT/width_table`` and
   ``OUT/width_validate``, right after: the width-only table on the same machine in the same run, to tell what depth
   changes from what the machine does.

Goal (issue 16): >= 95% of the subnets within +-10% of their measured latency. The validation reports it both raw
(the table's own calibration, as the FP32 tables' bar) and anchored on the original timed beside the subnets (what a
slim run predicts with). Writes ``results.json`` (the validations' metrics, the calibration's form and its
leave-one-out errors by form, the error by blocks kept), ``README.md`` and ``depth_latency.png`` (predicted against
measured, coloured by blocks kept; the error against blocks kept).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str]) -> float:
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/depth_latency.py --out benchmarks/results/depth_latency")
    ap.add_argument("--out", default="benchmarks/results/depth_latency")
    ap.add_argument("--samples", type=int, default=60, help="subnets validated end to end (default: 60)")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--kernel-sizes", default=None, metavar="K,K,...",
                    help="the depthwise convs' kernel choices too, e.g. 3,5,7 (default: the checkpoint's kernels only)")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild results.json, README.md and the plot from the folders a finished run left in --out "
                         "(no timing)")
    ap.add_argument("--no-width-only", dest="width_only", action="store_false",
                    help="skip the width-only table timed beside the depth one")
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    if args.kernel_sizes:  # checked here as `slimnas profile` checks it, before any folder is made
        from slimnas.cli.common import parse_kernels
        from slimnas.errors import SlimnasError
        from slimnas.space import SpaceConfig

        try:
            SpaceConfig(kernel_sizes=parse_kernels(args.kernel_sizes))
        except SlimnasError as e:
            print(f"depth_latency: error: {e}", file=sys.stderr)
            return 2
    if args.report_only and not ((out / "validate" / "validate.json").is_file() and (out / "results.json").is_file()):
        print(f"depth_latency: error: --report-only needs a finished run in {out} (validate/validate.json and "
              "results.json); run without --report-only first", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    table, val = out / "table", out / "validate"
    slim = [sys.executable, "-m", "slimnas"]
    profile_cmd = [*slim, "profile", "mobilenet_v2", "--num-classes", "10", "--input-size", str(args.input_size), "--depth",
                   *(["--kernel-sizes", args.kernel_sizes] if args.kernel_sizes else []), "--out", str(table)]
    validate_cmd = [*slim, "latency", "validate", "--table", str(table), "--samples", str(args.samples), "--out", str(val)]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.report_only:  # the outputs are there: nothing is timed again, the first run's wall times and date stay
        previous = json.loads((out / "results.json").read_text())
        stamp = previous.get("run_utc", "(date of the first run not recorded)")
    wall = previous["wall_s"] if args.report_only else {}

    def run(key: str, cmd: list[str]) -> None:
        if not args.report_only:
            wall[key] = _run(cmd)

    run("profile_s", profile_cmd)
    val.mkdir(exist_ok=True)
    run("validate_s", validate_cmd)
    width = None
    if args.width_only:
        wt, wv = out / "width_table", out / "width_validate"
        wv.mkdir(exist_ok=True)
        width_cmds = [[*slim, "profile", "mobilenet_v2", "--num-classes", "10", "--input-size", str(args.input_size),
                       "--out", str(wt)],
                      [*validate_cmd[:6], str(wt), *validate_cmd[7:-1], str(wv)]]
        run("width_profile_s", width_cmds[0])
        run("width_validate_s", width_cmds[1])
        wres = json.loads((wv / "validate.json").read_text())
        wcal = json.loads((wt / "calibration.json").read_text())
        width = {"commands": [" ".join(c[3:]).replace(str(ROOT) + "/", "") for c in width_cmds],
                 "metrics": wres["metrics"], "metrics_anchored_on_original": wres.get("metrics_anchored_on_original"),
                 "repeat_error_pct": wres["repeat_error_pct"], "median_round_spread_pct": wres["median_round_spread_pct"],
                 "calibration": {"terms": wcal.get("terms"), "loo_rmspe_pct": wcal.get("loo_rmspe_pct")}}

    import numpy as np
    import pandas as pd

    res = json.loads((val / "validate.json").read_text())
    rows = pd.read_csv(val / "validate.csv")
    cal = json.loads((table / "calibration.json").read_text())
    rows["error_pct"] = 100 * (rows["predicted_ms"] - rows["measured_ms"]) / rows["measured_ms"]
    def error_by(groups) -> dict:
        return {k: {"n": len(g), "mean_error_pct": float(g["error_pct"].mean()),
                    "within_10pct": float((g["error_pct"].abs() <= 10).mean())} for k, g in groups}

    by_kept = {int(k): v for k, v in error_by(rows.groupby("blocks_kept")).items()}
    by_kernel = {}
    if "kernel_mean" in rows:  # elastic kernels: the error by the mean kernel size, in three bins
        # a random draw over 3/5/7 puts the mean near 5 (sd about 0.4 over MobileNetV2's 17 convs): bins around it
        bins = pd.cut(rows["kernel_mean"], bins=[0, 4.7, 5.3, 99], labels=["< 4.7", "4.7-5.3", "> 5.3"])
        by_kernel = {str(k): v for k, v in error_by(rows.groupby(bins, observed=True)).items()}
    m = res["metrics"]
    summary = {
        "commands": [" ".join(c[3:]).replace(str(ROOT) + "/", "") for c in (profile_cmd, validate_cmd)],
        "device": res["device"], "samples": args.samples, "wall_s": wall, "run_utc": stamp,
        "metrics": m, "metrics_anchored_on_original": res.get("metrics_anchored_on_original"),
        "repeat_error_pct": res["repeat_error_pct"], "statistic": res["statistic"],
        "median_round_spread_pct": res["median_round_spread_pct"], "width_only": width,
        "calibration": {"terms": cal.get("terms"), "ridge": cal.get("ridge"), "loo_rmspe_pct": cal.get("loo_rmspe_pct"),
                        "loo_rmspe_pct_by_form": cal.get("loo_rmspe_pct_by_ridge"), "n": cal.get("n")},
        "by_blocks_kept": by_kept, "kernel_sizes": args.kernel_sizes, "by_mean_kernel": by_kernel,
        "goal": {"within_10pct": 0.95, "met": bool(m["within_10pct"] >= 0.95),
                 "met_anchored": bool((res.get("metrics_anchored_on_original") or {}).get("within_10pct", 0) >= 0.95)},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    sc = a.scatter(rows["measured_ms"], rows["predicted_ms"], c=rows["blocks_kept"], cmap="viridis", s=18)
    lo, hi = rows[["measured_ms", "predicted_ms"]].min().min(), rows[["measured_ms", "predicted_ms"]].max().max()
    xs = np.linspace(lo, hi, 2)
    a.plot(xs, xs, "k-", lw=0.8)
    a.fill_between(xs, 0.9 * xs, 1.1 * xs, color="grey", alpha=0.2, label="±10%")
    a.set_xlabel("measured (ms)")
    a.set_ylabel("predicted (ms)")
    a.set_title(f"{100 * m['within_10pct']:.0f}% within ±10%, RMSPE {m['rmspe_pct']:.1f}%")
    a.legend(loc="upper left")
    fig.colorbar(sc, ax=a, label="skippable blocks kept (of 10)")
    b.scatter(rows["blocks_kept"], rows["error_pct"], s=14)
    b.axhline(0, color="k", lw=0.8)
    b.axhspan(-10, 10, color="grey", alpha=0.2)
    b.set_xlabel("skippable blocks kept")
    b.set_ylabel("prediction error (%)")
    b.set_title("error by depth")
    fig.suptitle(f"MobileNetV2 {args.input_size}px, elastic {'kernels, ' if args.kernel_sizes else ''}depth and width, onnxruntime 1 thread ({res['device'].get('cpu_model')})")
    fig.tight_layout()
    fig.savefig(out / "depth_latency.png", dpi=110)

    terms = ", ".join(f"{k} {v:.3g}" for k, v in (cal.get("terms") or {}).items()) or "none"
    an = res.get("metrics_anchored_on_original") or {}

    def pair(metric: dict, anchored: dict, key: str, pct: bool) -> str:
        f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.2f}%")
        return f"{f(metric[key])} raw, {f(anchored[key])} anchored" if anchored else f(metric[key])

    space = f"depth and kernel-size ({args.kernel_sizes})" if args.kernel_sizes else "depth"
    drawn = "widths, depths and kernel sizes" if args.kernel_sizes else "widths and depths"
    width_rows = []
    if width:
        wm, wa = width["metrics"], width["metrics_anchored_on_original"] or {}
        width_rows = [
            f"| the same for the width-only table, timed right after | report | {pair(wm, wa, 'within_10pct', True)}; "
            f"RMSPE {pair(wm, wa, 'rmspe_pct', False)}; mean error {wm['mean_error_pct']:+.1f}%; round spread "
            f"{width['median_round_spread_pct']:.0f}% |"]
    lines = [
        f"# Latency table of a {space} space (issue 16)", "",
        f"Run {stamp} on {res['device'].get('cpu_model')} "
        f"({res['device'].get('cores')} cores), onnxruntime {res['device'].get('backend_version')}, 1 thread, batch 1.", "",
        "Commands (from the repository root):", "",
        *[f"    slimnas {c}" for c in summary["commands"] + (width["commands"] if width else [])], "",
        "| figure | goal | measured |", "|---|---|---|",
        f"| subnets within ±10% ({args.samples} random subnets, {drawn}), the table's own calibration | >= 95% | "
        f"**{100 * m['within_10pct']:.1f}%** ({'met' if summary['goal']['met'] else 'missed'}) |",
        *([f"| ... anchored on the original timed beside them (as a slim run predicts) | >= 95% | "
           f"**{100 * an['within_10pct']:.1f}%** ({'met' if summary['goal']['met_anchored'] else 'missed'}) |"] if an else []),
        f"| RMSPE | report | {pair(m, an, 'rmspe_pct', False)}; mean error {m['mean_error_pct']:+.1f}% raw |",
        f"| Kendall τ | report | {m['kendall_tau']:.3f} |",
        f"| repeat error of the measurement ({res['statistic']}) | report | {res['repeat_error_pct'][res['statistic']]:.2f}% |",
        f"| calibration form | report | ridge {cal.get('ridge')}, terms: {terms}; leave-one-out {cal.get('loo_rmspe_pct'):.2f}% |",
        f"| median spread of a subnet's timing rounds (how busy the machine was) | report | {res['median_round_spread_pct']:.0f}% |",
        *width_rows,
        "", "Error by skippable blocks kept:", "", "| blocks kept | subnets | mean error | within ±10% |", "|---|---|---|---|",
        *[f"| {k} | {v['n']} | {v['mean_error_pct']:+.1f}% | {100 * v['within_10pct']:.0f}% |" for k, v in by_kept.items()],
        *(["", "Error by the mean kernel size of the elastic convs:", "", "| mean kernel | subnets | mean error | within ±10% |",
            "|---|---|---|---|",
            *[f"| {k} | {v['n']} | {v['mean_error_pct']:+.1f}% | {100 * v['within_10pct']:.0f}% |" for k, v in by_kernel.items()]]
          if by_kernel else []),
        "", "Leave-one-out error of each calibration form on the table's own calibration subnets:", "",
        *[f"- `{k}`: {v:.2f}%" for k, v in sorted((cal.get("loo_rmspe_pct_by_ridge") or {}).items(), key=lambda kv: kv[1])],
        "", "![predicted against measured](depth_latency.png)", "",
    ]
    (out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
