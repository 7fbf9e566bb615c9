"""How far off the latency predictor was for the candidates that slim runs verified on the device.

Reads the ``verify.csv`` of each slim run folder given (every candidate timed end to end beside the original)
and reports, per run, the candidates' measured / predicted latency (prediction at the speed of the same round's
original): median and range, and the same for the candidates the run chose. A predictor that is right on
average can still be off for the shapes a search prefers; this shows it on the runs that matter.

    python benchmarks/verify_errors.py runs/headline/ablation/*/seed*/0.5x/slim --out benchmarks/results/headline/ablation/verify_errors.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="slim run folders (each with a verify.csv)")
    p.add_argument("--out", type=Path, help="markdown file for the table (default: print only)")
    args = p.parse_args(argv)
    import pandas as pd

    missing = [str(r) for r in args.runs if not (r / "verify.csv").is_file()]
    if missing:
        print(f"verify_errors: error: no verify.csv in {', '.join(missing)}: give slim run folders", file=sys.stderr)
        return 2
    lines = ["| run | candidates timed | measured / predicted: median (min–max) | chosen: measured / predicted | chosen: share of budget |",
             "|---|---|---|---|---|"]
    for run in args.runs:
        v = pd.read_csv(run / "verify.csv")
        c = v[(v["model"] == "candidate") & (v["target"] == "default")]
        r = c["median_ms"] / c["predicted_now_ms"]
        ch = c[c["chosen"] == True]  # noqa: E712
        rc = (ch["median_ms"] / ch["predicted_now_ms"]).iloc[0] if len(ch) else float("nan")
        share = (ch["median_ms"] / ch["budget_ms"]).iloc[0] if len(ch) else float("nan")
        name = "/".join(run.parts[-4:-1])
        lines.append(f"| {name} | {len(c)} | {r.median():.3f} ({r.min():.3f}–{r.max():.3f}) | {rc:.3f} | {share:.0%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
