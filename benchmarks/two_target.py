"""Issue 15 items 3 and 5, the must-show: a two-target search whose chosen subnet meets both budgets by
measurement, each on its own target (onnxruntime FP32 on 1 thread, onnxruntime INT8 on 1 thread).

Run the pipeline first (under the shared CPU lock)::

    flock /tmp/slimnas-cpu.lock python -m slimnas slim --config benchmarks/two_target.yaml --out RUN --no-progress

then ``python benchmarks/two_target.py RUN --wall SECONDS`` reads RUN/verify.csv and writes, per target, the
chosen subnet's measured latency against its budget (and the originals timed beside it in the same process)
into benchmarks/results/two_target/result.json, with the machine's fingerprint, and copies report.md,
config.yaml and verify.csv there.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "two_target"
COMMAND = ("flock /tmp/slimnas-cpu.lock python -m slimnas slim --config benchmarks/two_target.yaml "
           "--out /tmp/int8wt/bench2 --no-progress")


def per_target(v: pd.DataFrame) -> list[dict]:
    chosen = v[v["chosen"] == True]  # noqa: E712
    out = []
    for _, r in chosen.iterrows():
        same = v[(v["round"] == r["round"]) & (v["target"] == r["target"])]
        originals = {m: float(same[same["model"] == m]["median_ms"].iloc[0])
                     for m in same["model"].unique() if str(m).startswith("original")}
        out.append({"target": r["target"], "dtype": r["dtype"], "hash": r["hash"], "round": int(r["round"]),
                    "measured_ms": float(r["median_ms"]), "repeat_pct": float(r["repeat_pct"]),
                    "predicted_now_ms": float(r["predicted_now_ms"]), "budget_ms": float(r["budget_ms"]),
                    "budget_share": float(r["budget_share"]), "ratio_to_budget_original": float(r["ratio_to_original"]),
                    "originals_same_process_ms": originals, "meets": bool(r["meets_target"]),
                    "meets_every_budget": bool(r["meets_budget"])})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--wall", type=float, help="wall seconds of the slim run")
    args = p.parse_args(argv)
    from slimnas.machine import fingerprint

    run = Path(args.run)
    v = pd.read_csv(run / "verify.csv")
    rows = per_target(v)
    exports = json.loads((run / "exports.json").read_text()) if (run / "exports.json").is_file() else {}
    original = json.loads((run / "original.json").read_text())
    tuned = json.loads((run / "finetune" / "result.json").read_text()) if (run / "finetune" / "result.json").is_file() else {}
    result = {"command": COMMAND, "constraints": ["latency<=0.7x", "latency[int8_t1]<=0.6x"], "targets": rows,
              "all_met": all(r["meets"] for r in rows), "wall_s": args.wall,
              "candidates_timed": int(((v["model"] == "candidate") & (v["target"] == "default")).sum()),
              "original_val_top1": original.get("val_top1"), "chosen_val_top1": tuned.get("val_top1"),
              "int8": exports.get("int8"), "machine": fingerprint(threads=1)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "result.json").write_text(json.dumps(result, indent=1))
    for f in ("report.md", "config.yaml", "verify.csv", "stages.json"):
        if (run / f).is_file():
            shutil.copy2(run / f, OUT / f)
    print(json.dumps({k: result[k] for k in ("targets", "all_met", "wall_s")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
