"""``slimnas demo``: the whole pipeline on the embedded default (digits, MobileNetV2, this CPU)."""
from __future__ import annotations

import argparse

from ..pipeline import demo
from ..pipeline.demo import DEMO_OUT
from . import command


@command("demo", "Run the whole pipeline on built-in data on this CPU (no download; under 10 minutes on 2 cores).", """\
  slimnas demo                      # writes runs/demo: report.md, model.onnx, model.pt, pareto.png, ...
  slimnas demo --out /tmp/demo1     # rerun the same command to resume after a kill
  slimnas demo --seed 1 --out /tmp/demo_s1   # another seed: data split, training and search""")
def run(args: argparse.Namespace) -> int:
    demo(args.out, progress=not args.no_progress, seed=args.seed)
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=DEMO_OUT, help=f"run folder (default: {DEMO_OUT})")
    p.add_argument("--seed", type=int, default=0, help="seeds the data split, every training run and the search (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
