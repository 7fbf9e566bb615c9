"""``slimnas search``: evolutionary search of a trained supernet run under latency/FLOPs/params budgets."""
from __future__ import annotations

import argparse

from ..pipeline import FitnessConfig, LatencyConfig, SearchJob, search
from ..search import SearchConfig
from . import command


@command("search", "Search a `slimnas train` run for the most accurate subnets within budgets (NSGA-II, resumable).", """\
  slimnas search runs/cafe --constraint 'latency<=0.6x' --out runs/cafe_search
  slimnas search runs/cafe --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 \\
      --constraint 'latency<=2ms' --constraint 'params<=1M' --population 50 --generations 20 --out runs/s2
  slimnas search runs/cafe --constraint 'flops<=0.5x' --time-limit 600 --out runs/s3   # rerun to resume

A rerun into the same --out resumes the search and reuses the original's timing of the first invocation
(so a relative budget stays what it was). A budget is an upper bound that may be met exactly: '<' reads as '<='.""")
def run(args: argparse.Namespace) -> int:
    job = SearchJob(
        run=args.run, constraints=tuple(args.constraint), out=args.out, table=args.table,
        latency=LatencyConfig(backend=args.backend, threads=args.threads, batch=args.batch, rounds=args.rounds,
                              steady_pct=args.steady_pct),
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
                   help="latency<=5ms, latency<=0.6x, flops<=150M, params<=1.2M (repeatable; '<' reads as '<=')")
    p.add_argument("--out", required=True, help="folder for pareto.csv, pareto.png, subnet.json, search_state.json")
    p.add_argument("--table", help="latency table folder (default: a matching one in latency_tables/)")
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
