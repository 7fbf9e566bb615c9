"""``slimnas search``: evolutionary search of a trained supernet run under latency/FLOPs/params budgets."""
from __future__ import annotations

import argparse

from ..pipeline import FitnessConfig, LatencyConfig, SearchJob, search
from ..search import SearchConfig
from . import command
from .common import target_configs


@command("search", "Search a `slimnas train` run for the most accurate subnets within budgets (NSGA-II, resumable).", """\
  slimnas search runs/cafe --constraint 'latency<=0.6x' --out runs/cafe_search
  slimnas search runs/cafe --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 \\
      --constraint 'latency<=2ms' --constraint 'params<=1M' --population 50 --generations 20 --out runs/s2
  slimnas search runs/cafe --constraint 'flops<=0.5x' --time-limit 600 --out runs/s3   # rerun to resume
  slimnas search runs/cafe --constraint 'latency<=0.6x' --target int8_t1:dtype=int8 \\
      --target fp32_b8:batch=8,table=tables/mbv2_32_b8 --constraint 'latency[int8_t1]<=0.3x' \\
      --constraint 'latency[fp32_b8]<=5ms' --out runs/s4   # every budget at once, each target by its own table

A rerun into the same --out resumes the search and reuses the original's timing of the first invocation on
every target (so a relative budget stays what it was). A budget is an upper bound that may be met exactly:
'<' reads as '<='.

Several latency targets, as in `slimnas slim`: --target NAME:KEY=VALUE,... takes backend, device, threads,
batch, dtype, table and relative_to (the timing flags are shared); 'latency[NAME]<=...' is a budget on it and
a plain 'latency<=...' one on the default target (--backend, --threads, --batch, --table). A target's table
is its table=DIR, else a matching one in latency_tables/ (found by its fingerprint); `slimnas profile` builds
one. A relative budget ('latency[int8_t1]<=0.3x') is a fraction of the FP32 original timed on that target's
own runtime in the same run (relative_to=fp32, the default; own: of the original in the target's dtype).
pareto.csv has one predicted latency column per target (latency_ms, latency_ms[NAME]).""")
def run(args: argparse.Namespace) -> int:
    job = SearchJob(
        run=args.run, constraints=tuple(args.constraint), out=args.out, table=args.table,
        latency=LatencyConfig(backend=args.backend, threads=args.threads, batch=args.batch, rounds=args.rounds,
                              steady_pct=args.steady_pct, targets=target_configs(args.target or [])),
        search=SearchConfig(population=args.population, generations=args.generations, seed=args.seed,
                            max_evaluations=args.max_evaluations, time_limit_s=args.time_limit),
        fitness=FitnessConfig(calib_images=args.calib_images, val_images=args.val_images, arrangements=args.arrangements),
        device=args.device)
    search(job, progress=not args.no_progress)
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder written by `slimnas train`")
    p.add_argument("--constraint", action="append", required=True, metavar="BUDGET",
                   help="latency<=5ms, latency<=0.6x (of the original, measured), latency[NAME]<=2ms (a --target), "
                        "flops<=150M, params<=1.2M (repeatable; '<' reads as '<=')")
    p.add_argument("--out", required=True, help="folder for pareto.csv, pareto.png, subnet.json, search_state.json")
    p.add_argument("--table", help="latency table folder of the default target (default: a matching one in latency_tables/)")
    p.add_argument("--target", action="append", metavar="NAME:KEY=VALUE,...",
                   help="a named latency target, e.g. int8_t1:dtype=int8,table=DIR (keys: backend, device, threads, "
                        "batch, dtype, table, relative_to; repeatable); budget it with --constraint 'latency[NAME]<=...'")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds when timing the original (default: 3)")
    p.add_argument("--steady-pct", type=float, default=5.0,
                   help="the original's timing is repeated until its even and odd rounds agree within this %% "
                        "(default: 5; 3 attempts, then an error)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--max-evaluations", type=int)
    p.add_argument("--time-limit", type=float, help="stop after this many seconds (rerun to continue)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib-images", type=int, default=512, help="BN recalibration images per subnet (default: 512)")
    p.add_argument("--val-images", type=int, help="validation images scored per subnet (default: all)")
    p.add_argument("--arrangements", type=int, help="CafeNet arrangements tried per subnet (default: the run's k)")
    p.add_argument("--device", help="torch device for scoring (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
