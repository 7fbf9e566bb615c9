"""``slimnas bins``: lay out cost-sensitive bins (FLOPs or a latency table) and show which widths each group keeps."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SlimnasError
from ..train.layout import USAGE, make_layout
from . import command
from .common import add_model_arguments, add_space_arguments, supernet_from_args


@command("bins", "Show the bin layout (the widths each group keeps) that `slimnas train --bins` would use.", """\
  slimnas bins mobilenet_v2 --num-classes 10 --input-size 32 --bins flops:4
  slimnas bins mobilenet_v2 --num-classes 10 --input-size 32 \\
      --bins latency:4:latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 --out runs/bins""")
def run(args: argparse.Namespace) -> int:
    net = supernet_from_args(args)
    layout = make_layout(args.bins, net)
    if layout is None:
        raise SlimnasError(f"--bins is empty: give {USAGE}")
    print(f"{layout.kind} bins from {layout.source}, one step = {layout.step * layout.scale:.4g} {layout.unit}: "
          f"{layout.space.size():.3g} of {layout.full.size():.3g} subnets kept")
    print(layout.summary())
    if args.out:
        paths = layout.write(Path(args.out))
        print("wrote " + ", ".join(map(str, paths)))
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_space_arguments(p)
    p.add_argument("--bins", required=True, help=USAGE)
    p.add_argument("--out", help="folder for bins.csv (every candidate, kept or not, with its cost) and bins.png")
