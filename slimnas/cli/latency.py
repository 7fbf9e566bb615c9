"""``slimnas latency validate``: predicted vs measured end-to-end latency of random subnets."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SlimnasError
from ..latency.validate import validate
from . import command


@command("latency", "Check a latency table: predicted vs measured end-to-end latency of random subnets.", """\
  slimnas latency validate --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 --samples 200
  slimnas latency validate --table T --samples 50 --out runs/validate_mbv2""")
def run(args: argparse.Namespace) -> int:
    if args.action != "validate":  # pragma: no cover - argparse restricts the choices
        raise SlimnasError(f"unknown action {args.action!r}")
    if args.samples < 2:
        raise SlimnasError(f"--samples must be at least 2, got {args.samples}")
    out = Path(args.out) if args.out else Path(args.table) / "validate"
    validate(args.table, samples=args.samples, seed=args.seed, out=out, rounds=args.rounds)
    print(f"wrote {out}/validate.csv, validate.json, validate.png")
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("validate",))
    p.add_argument("--table", required=True, help="latency table directory (from `slimnas profile`)")
    p.add_argument("--samples", type=int, default=50, help="random subnets to export and time (default: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default: 3)")
    p.add_argument("--out", help="folder for validate.csv/json/png (default: TABLE/validate)")
