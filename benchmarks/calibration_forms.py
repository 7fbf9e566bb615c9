"""Calibration forms on held-out timings: the entries alone against the form the calibration picks now.

Each shipped table's committed validation (``benchmarks/results/<table>/validate.csv``: random subnets timed end
to end on the machine the table was profiled on, never used to fit it) is predicted twice: by the table's
calibration as committed before the analytic terms (entries only, ``--before``) and by a calibration fitted
again from the table's own end-to-end rows (``slimnas latency recalibrate``: each form scored by leave-one-out
error, the analytic terms ``weights``/``flops`` among them). No timing: it reads committed files.

    PYTHONPATH=. python benchmarks/calibration_forms.py --before 61476f6 --out benchmarks/results/latency_terms
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="git revision whose calibration.json files are the entries-only form")
    p.add_argument("--tables", nargs="*", default=None, help="table names under latency_tables/ (default: all with a validate.csv)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import numpy as np
    import pandas as pd

    from slimnas.errors import SlimnasError
    from slimnas.latency.predictor import LatencyPredictor
    from slimnas.latency.profiler import recalibrate
    from slimnas.latency.table import LatencyTable
    from slimnas.tables import supernet_for

    names = args.tables or sorted(d.name for d in (ROOT / "latency_tables").iterdir()
                                  if (ROOT / "benchmarks" / "results" / d.name / "validate.csv").is_file())
    rows = []
    for name in names:
        held = ROOT / "benchmarks" / "results" / name
        meta = json.loads((held / "validate.json").read_text())
        timed = pd.read_csv(held / "validate.csv")
        with tempfile.TemporaryDirectory(prefix="slimnas-forms-") as tmp:
            before, now = Path(tmp) / "before", Path(tmp) / "now"
            for d in (before, now):
                shutil.copytree(ROOT / "latency_tables" / name, d)
            try:
                old = subprocess.run(["git", "show", f"{args.before}:latency_tables/{name}/calibration.json"], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout
            except subprocess.CalledProcessError as exc:
                print(f"calibration_forms: error: {name} has no calibration.json at {args.before}: {exc.stderr.strip()}",
                      file=sys.stderr)
                return 2
            (before / "calibration.json").write_text(old)
            try:
                net = supernet_for(LatencyTable.load(now))
                cal = recalibrate(now, net)
            except SlimnasError as exc:
                print(f"calibration_forms: error: {name}: {exc}", file=sys.stderr)
                return 2
            rng = random.Random(meta.get("seed", 0))
            by_hash = {s.hash: s for s in (net.space.sample(rng) for _ in range(int(meta["samples"])))}
            missing = [h for h in timed["subnet"] if h not in by_hash]
            if missing:
                print(f"calibration_forms: error: {name}: validate.csv holds subnets its seed does not draw ({missing[0]})",
                      file=sys.stderr)
                return 2
            subs = [by_hash[h] for h in timed["subnet"]]
            measured = timed["measured_ms"].to_numpy(float)
            speeds = np.asarray(meta["speed_factors"], float)[timed["chunk"].to_numpy(int)]  # as validate() rescales
            for label, folder in (("entries only (before)", before), ("picked by leave-one-out (now)", now)):
                pred = LatencyPredictor(LatencyTable.load(folder), net)
                err = (pred.predict(subs) * speeds - measured) / measured
                rows.append({"table": name, "calibration": label, "subnets": len(subs),
                             "terms": ", ".join(f"{k} {v:.4g}" for k, v in pred.terms.items()) or "none",
                             "calibration_loo_pct": pred.error_pct, "heldout_rmspe_pct": float(100 * np.sqrt(np.mean(err ** 2))),
                             "within_10pct": float(np.mean(np.abs(err) < 0.1) * 100), "mean_error_pct": float(100 * err.mean())})
            rows[-1]["forms_loo_pct"] = cal["loo_rmspe_pct_by_ridge"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "heldout.json").write_text(json.dumps({"before": args.before, "rows": rows}, indent=1) + "\n")
    lines = ["| table | calibration | terms (ms per M weights / per MFLOP) | LOO on its 30 calibration subnets | held-out RMSPE | within ±10% | mean error |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['table']} | {r['calibration']} | {r['terms']} | {r['calibration_loo_pct']:.2f}% | {r['heldout_rmspe_pct']:.2f}% | "
              f"{r['within_10pct']:.1f}% | {r['mean_error_pct']:+.2f}% |" for r in rows]
    text = "\n".join(lines) + "\n"
    (args.out / "heldout.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
