"""``slimnas latency validate``: predicted vs measured end-to-end latency of random subnets;
``slimnas latency calibrate``: fit a table's calibration again from its own end-to-end rows."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SlimnasError
from ..latency.profiler import recalibrate
from ..latency.validate import validate
from . import command


@command("latency", "Check a latency table (predicted vs measured end-to-end latency), or fit its calibration again.", """\
  slimnas latency validate --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 --samples 200
  slimnas latency calibrate --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32   # no timing
  slimnas latency validate --table T --samples 50 --out runs/validate_mbv2
  slimnas latency validate --table T --samples 200 --chunk 50 --max-chunks 2 --out runs/v   # rerun to go on""")
def run(args: argparse.Namespace) -> int:
    if args.action == "calibrate":
        cal = recalibrate(args.table)
        slopes = ", ".join(f"{k} {v:.3f}" for k, v in cal["slopes"].items())
        print(f"wrote {Path(args.table) / 'calibration.json'}: slopes {slopes}, b {cal['b']:.4f} ms, "
              f"leave-one-out RMSPE {cal['loo_rmspe_pct']:.2f}% on {cal['n']} subnets")
        return 0
    if args.samples < 2:
        raise SlimnasError(f"--samples must be at least 2, got {args.samples}")
    out = Path(args.out) if args.out else Path(args.table) / "validate"
    if args.chunk < 0:
        raise SlimnasError(f"--chunk must be 0 (all at once) or a positive number of subnets, got {args.chunk}")
    result = validate(args.table, samples=args.samples, seed=args.seed, out=out, rounds=args.rounds, chunk=args.chunk,
                      max_chunks=args.max_chunks)
    if result["finished"]:
        print(f"wrote {out}/validate.csv, validate.json, validate.png")
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("validate", "calibrate"))
    p.add_argument("--table", required=True, help="latency table directory (from `slimnas profile`)")
    p.add_argument("--samples", type=int, default=50, help="random subnets to export and time (default: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (default: the table's, 10 for new tables)")
    p.add_argument("--chunk", type=int, default=0, help="time the subnets in chunks of this many, resumable (default: all at once)")
    p.add_argument("--max-chunks", type=int, help="stop after timing this many new chunks; rerun to go on")
    p.add_argument("--out", help="folder for validate.csv/json/png (default: TABLE/validate)")
