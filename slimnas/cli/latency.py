"""``slimnas latency validate``: predicted vs measured end-to-end latency of random subnets;
``slimnas latency calibrate``: fit a table's calibration again from its own end-to-end rows."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SlimnasError
from . import command

ACTIONS = ("validate", "calibrate")


def default_out(table: Path) -> Path:
    """Where ``validate`` writes without ``--out``: a run folder of its own, never the table's folder (a
    shipped table may sit in a read-only installation, and its folder holds only what ``profile`` made)."""
    return Path("runs") / f"validate_{table.resolve().name}"


def refuse_other_device(table) -> None:
    """One line naming the fingerprint keys that forbid using ``table`` on this machine and runtime, if any."""
    from ..latency import BackendConfig, create_backend
    from ..latency.fingerprint import DEVICE_KEYS, mismatches
    from ..latency.validate import device_of

    fp = table.fingerprint
    backend = create_backend(fp["backend"], BackendConfig(fp.get("device", "cpu"), int(fp["threads"]), int(fp["batch"]),
                                                          fp.get("dtype", "fp32")))
    bad = mismatches(device_of(backend), fp, DEVICE_KEYS)
    if bad:
        raise SlimnasError(f"{table.path} was measured on another machine/runtime: {'; '.join(bad)} "
                           "(profile this machine with `slimnas profile`)")


@command("latency", "Check a latency table (predicted vs measured end-to-end latency), or fit its calibration again.", """\
  slimnas latency validate --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 --samples 200
  slimnas latency calibrate --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32   # no timing
  slimnas latency validate --table T --samples 50 --out runs/validate_mbv2
  slimnas latency validate --table T --samples 200 --chunk 50 --max-chunks 2 --out runs/v   # rerun to go on""")
def run(args: argparse.Namespace) -> int:
    if args.action not in ACTIONS:
        what = "no action given" if args.action is None else f"unknown action {args.action!r}"
        raise SlimnasError(f"{what}: use one of {', '.join(ACTIONS)} (slimnas latency --help)")
    if args.table_word is not None:
        if args.table is not None and args.table != args.table_word:
            raise SlimnasError(f"two tables given ({args.table_word} and --table {args.table}): give one")
        args.table = args.table_word
    if args.table is None:
        raise SlimnasError(f"latency {args.action} needs --table FOLDER (a table from `slimnas profile`)")
    if args.action == "validate" and args.samples < 2:
        raise SlimnasError(f"--samples must be at least 2, got {args.samples}")
    if args.action == "validate" and args.chunk < 0:
        raise SlimnasError(f"--chunk must be 0 (all at once) or a positive number of subnets, got {args.chunk}")
    from ..latency import LatencyTable
    from ..tables import resolve_table, supernet_for

    table = LatencyTable.load(resolve_table(args.table))
    if args.action == "calibrate":
        from ..latency.profiler import recalibrate

        cal = recalibrate(table.path, supernet_for(table))
        slopes = ", ".join(f"{k} {v:.3f}" for k, v in cal["slopes"].items())
        units = {"weights": "ms per M weights", "flops": "ms per MFLOP"}
        terms = ", ".join(f"{k} {v:.4g} {units.get(k, '')}".rstrip() for k, v in cal.get("terms", {}).items()) or "none"
        print(f"wrote {table.path / 'calibration.json'}: slopes {slopes}, terms {terms}, b {cal['b']:.4f} ms, "
              f"leave-one-out RMSPE {cal['loo_rmspe_pct']:.2f}% on {cal['n']} subnets")
        return 0
    from ..latency.validate import validate

    refuse_other_device(table)  # before the model is built: a table for another machine is refused at once
    out = Path(args.out) if args.out else default_out(table.path)
    result = validate(table.path, supernet_for(table), samples=args.samples, seed=args.seed, out=out, rounds=args.rounds,
                      chunk=args.chunk, max_chunks=args.max_chunks)
    if result["finished"]:
        print(f"wrote {out}/validate.csv, validate.json, validate.png")
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    # Checked in run(), not by argparse: a wrong action or a missing --table is one line, not the usage.
    p.add_argument("action", nargs="?", metavar="ACTION", help=f"{' or '.join(ACTIONS)}")
    # the table may also come as a second word (`slimnas latency calibrate T`): a stray word then reaches run(),
    # which names the wrong action, instead of argparse's "unrecognized arguments"
    p.add_argument("table_word", nargs="?", metavar="TABLE", help="the same as --table")
    p.add_argument("--table", help="latency table directory (from `slimnas profile`, or a shipped table's name); required")
    p.add_argument("--samples", type=int, default=50, help="random subnets to export and time (default: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (default: the table's, 10 for new tables)")
    p.add_argument("--chunk", type=int, default=0, help="time the subnets in chunks of this many, resumable (default: all at once)")
    p.add_argument("--max-chunks", type=int, help="stop after timing this many new chunks; rerun to go on")
    p.add_argument("--out", help="folder for validate.csv/json/png (default: runs/validate_<table folder's name>)")
