"""``slimnas slim``: the whole pipeline from a YAML config and/or flags (flags override the file)."""
from __future__ import annotations

import argparse
import shlex
from dataclasses import replace

from ..pipeline import SlimConfig, dump_config, load_config, slim
from .. import paths
from ..pipeline.config import DEFAULT_OUT, with_overrides
from ..pipeline.schema import parse_assignment
from . import command
from .common import add_tensorrt_arguments, parse_target


def overrides_from_args(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """The flags as (the flag as typed, nested config mapping), in the order they apply (``--set`` last)."""
    out: list[tuple[str, dict]] = []
    simple = {"model": ("model", "name"), "weights": ("model", "weights"), "num_classes": ("model", "num_classes"),
              "input_size": ("model", "input_size"), "data": ("data", "source"), "table": ("latency", "table"),
              "backend": ("latency", "backend"), "threads": ("latency", "threads"), "batch": ("latency", "batch"),
              "strategy": ("supernet", "strategy"), "supernet_run": ("supernet", "run"), "tensorrt": ("export", "tensorrt"),
              "fp16": ("export", "fp16"), "seed": ("seed",), "out": ("out",)}
    for attr, path in simple.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        d = value
        for key in reversed(path):
            d = {key: d}
        out.append((f"--{attr.replace('_', '-')} {value}", d))
    for t in getattr(args, "target", None) or []:
        out.append((f"--target {t}", {"latency": {"targets": parse_target(t)}}))
    if args.constraint:
        out.append((" ".join(f"--constraint {c}" for c in args.constraint), {"constraints": list(args.constraint)}))
    out += [(f"--set {s}", parse_assignment(s)) for s in args.set or []]
    return out


def config_from_args(args: argparse.Namespace) -> SlimConfig:
    overrides = overrides_from_args(args)
    if args.config:
        return load_config(args.config, overrides)
    return with_overrides(SlimConfig(), overrides)


@command("slim", "Slim a model to a latency budget on this device: train, search, verify, fine-tune, export.", """\
  slimnas slim --config slim.yaml                       # see `slimnas slim --print-config` for every key
  slimnas slim --model mobilenet_v2 --weights c10.pth --num-classes 10 --input-size 32 --data cifar10 \\
      --constraint 'latency<=0.5x' --out runs/mbv2_half
  slimnas slim --config slim.yaml --constraint 'latency<=5ms' --constraint 'params<=1.5M' --set search.generations=40
  slimnas slim --supernet-run runs/cafenet --constraint 'latency<=0.6x' --out runs/from_run
  slimnas slim --config slim.yaml --target int8_t1:dtype=int8 --target fp32_t2:threads=2 \\
      --constraint 'latency[int8_t1]<=0.3x' --constraint 'latency[fp32_t2]<=2ms'   # every budget, each measured
  slimnas slim --config slim.yaml --out runs/a          # rerun after a kill: finished stages are skipped
  slimnas slim --config slim.yaml --set supernet.train.epochs=3 --print-config   # the resolved config, nothing run

Paths in a YAML config are relative to the config file, paths in flags to the working directory; the run
folder stores them absolute. A budget is an upper bound that may be met exactly: 'latency<0.5x' reads as
'latency<=0.5x'. Without model.weights (--weights) and without a base: section the model is slimmed from
its random initialisation (said in one line at the start).

Several latency targets: latency.targets.NAME in the YAML config (or --target NAME:KEY=VALUE,...) takes
backend, device, threads, batch, dtype, table and relative_to; 'latency[NAME]<=...' is a budget on it and a
plain 'latency<=...' one on the latency: section itself. One subnet must meet every budget, each verified by
measurement on its own target. A relative budget ('latency[int8_t1]<=0.3x') is a fraction of the FP32
original timed on that target's own runtime in the same run (relative_to: fp32, the default; own: of the
original in the target's dtype).""")
def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.print_config:  # the values the run uses: the seed in every section, the data at the model's size
        shown = replace(config.seeded(), out=config.out or paths.absolute(DEFAULT_OUT))
        print(dump_config(shown), end="")
        return 0
    slim(config, args.out, command="slimnas " + shlex.join(args.argv), progress=not args.no_progress)
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (every key optional; flags below override it)")
    p.add_argument("--out", help="run folder (default: the config's out, else runs/slim)")
    p.add_argument("--model", help="torchvision name, package.module:factory, or a saved slimnas model")
    p.add_argument("--weights", help="the model's trained state_dict file")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-size", type=int)
    p.add_argument("--data", help="digits, cifar10, cifar10:PATH or an ImageFolder root")
    p.add_argument("--constraint", action="append", metavar="BUDGET",
                   help="latency<=5ms, latency<=0.6x (of the original, measured), latency[NAME]<=2ms (a --target), flops<=150M, params<=1.2M "
                        "(repeatable; '<' reads as '<=')")
    p.add_argument("--table", help="latency table folder (default: a matching shipped one, else one is profiled)")
    p.add_argument("--target", action="append", metavar="NAME:KEY=VALUE,...",
                   help="a named latency target, e.g. int8_t1:dtype=int8,threads=1 (keys of latency.targets.NAME; "
                        "repeatable); budget it with --constraint 'latency[NAME]<=...'")
    p.add_argument("--backend", help="onnxruntime (default) or tensorrt")
    p.add_argument("--threads", type=int, help="intra-op threads on the device (default: 1)")
    p.add_argument("--batch", type=int, help="batch size on the device (default: 1)")
    p.add_argument("--strategy", help="supernet training: sandwich, cafenet (default) or bsnas")
    p.add_argument("--supernet-run", help="reuse a finished `slimnas train` run folder")
    add_tensorrt_arguments(p, "build model.engine (needs slimnas[trt] and a GPU)")
    p.add_argument("--fp16", action="store_true", default=None, help="build the TensorRT engine in FP16")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="any config value, e.g. search.population=30 or finetune.train.epochs=5 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
