"""``slimnas inspect``: print a model's channel groups."""
from __future__ import annotations

import argparse

import pandas as pd

from ..inspect import describe
from . import command
from .common import add_model_arguments, add_space_arguments, supernet_from_args


@command("inspect", "Show the channel groups that tracing finds, with candidate widths and FLOPs shares.", """\
  slimnas inspect mobilenet_v2
  slimnas inspect mobilenet_v2 --num-classes 10 --weights cifar10_mobilenet_v2.pth --input-size 32
  slimnas inspect resnet50 --ratios 0.5,0.75,1 --max-ratio 1.5 --members 10
  slimnas inspect mypackage.models:build_net --input-size 64""")
def run(args: argparse.Namespace) -> int:
    net = supernet_from_args(args)
    table = describe(net, members=args.members)
    n_search = len(net.space)
    print(f"{type(net.model).__name__} at {args.input_size}x{args.input_size}: {len(net.graph.groups)} channel groups, "
          f"{n_search} searchable, {net.space.size():.3g} subnets; {net.flops(net.space.original()) / 1e6:.1f} MFLOPs, "
          f"{net.params(net.space.original()) / 1e6:.2f} M params")
    table["flops_share"] = table["flops_share"].map(lambda v: f"{100 * v:.1f}%")
    table["width"] = table["width"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    with pd.option_context("display.max_rows", None, "display.max_colwidth", 90, "display.width", 250):
        print(table.to_string(index=False))
    if net.graph.notes:
        print("\nfrozen by the tracer:")
        for note in net.graph.notes:
            print(f"  - {note}")
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_space_arguments(p)
    p.add_argument("--members", type=int, default=3, help="member layers to list per group (default: 3)")
