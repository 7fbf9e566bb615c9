"""``slimnas profile``: build (or resume) a latency table for a model's width space on one backend."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SlimnasError
from ..latency import BackendConfig, ProfileConfig, TimingConfig, backend_names, create_backend, profile
from ..latency.probe import PROBES
from . import command
from .common import add_model_arguments, add_space_arguments, parse_kernels, parse_ratios, supernet_from_args


MIN_SAMPLES = 30  # timed samples per table entry: the timing protocol's floor (see slimnas.latency.timing)


def default_table_dir(args: argparse.Namespace) -> Path:
    name = Path(str(args.model)).stem.replace(":", "_").replace(".", "_")
    return Path("latency_tables") / (f"{name}_{args.input_size}_{args.backend}_{args.device}_t{args.threads}"
                                     f"_b{args.batch}_{args.dtype}")


@command("profile", "Measure a latency table for a model's width space on this device (resumable).", """\
  slimnas profile mobilenet_v2 --num-classes 10 --input-size 32 --backend onnxruntime --threads 1
  slimnas profile mobilenet_v2 --input-size 224 --out latency_tables/mbv2_224   # rerun to resume
  slimnas profile efficientnet_b0 --backend torch --device cuda --dtype fp16
  slimnas profile mobilenet_v2 --num-classes 10 --input-size 32 --dtype int8   # INT8 (onnxruntime, QDQ)""")
def run(args: argparse.Namespace) -> int:
    if args.passes < 1:
        raise SlimnasError(f"--passes must be at least 1, got {args.passes}")
    if args.samples < MIN_SAMPLES:
        raise SlimnasError(f"--samples must be at least {MIN_SAMPLES} (timed samples per table entry), got {args.samples}")
    backend = create_backend(args.backend, BackendConfig(args.device, args.threads, args.batch, args.dtype))
    net = supernet_from_args(args)
    out = Path(args.out) if args.out else default_table_dir(args)
    config = ProfileConfig(timing=TimingConfig(samples=args.samples), grid_step=args.grid_step,
                           refine_tol=args.refine_tol, calibration_subnets=args.calibration_subnets, passes=args.passes,
                           probe=args.probe)
    model_args = {"model": args.model, "num_classes": args.num_classes, "weights": args.weights,
                  "ratios": list(parse_ratios(args.ratios)), "divisor": args.divisor, "max_ratio": args.max_ratio,
                  **({"conv_groups": args.conv_groups} if args.conv_groups != "whole" else {}),
                  **({"depth": True} if args.depth else {}),
                  **({"kernel_sizes": list(parse_kernels(args.kernel_sizes))} if args.kernel_sizes else {})}
    profile(net, backend, out, model=str(args.model), config=config, model_args=model_args)
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_space_arguments(p)
    p.add_argument("--backend", default="onnxruntime", choices=backend_names(), help="runtime to time (default: onnxruntime)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="intra-op threads, fixed and recorded (default: 1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp32 (default); fp16 (torch/TensorRT on CUDA); int8: onnxruntime CPU, every unit and subnet "
                        "timed as its statically quantized (QDQ) graph, with the settings model.int8.onnx is exported with")
    p.add_argument("--samples", type=int, default=30, help=f"timed samples per entry (at least {MIN_SAMPLES}; default: 30)")
    p.add_argument("--grid-step", type=int, default=2, help="coarse grid: every k-th candidate width (default: 2)")
    p.add_argument("--refine-tol", type=float, default=0.05, help="refine cells missing interpolation by more (default: 0.05)")
    p.add_argument("--passes", type=int, default=2, help="time every measured entry this many times, keep the best (default: 2)")
    p.add_argument("--calibration-subnets", type=int, default=30, help="whole subnets timed end to end for calibration (default: 30)")
    p.add_argument("--out", help="table directory (default: latency_tables/<model>_<size>_<backend>_...)")
    p.add_argument("--probe", choices=PROBES, default=None,
                   help="the reference probe that follows the machine's speed (slimnas.latency.probe): conv (a dense "
                        "3x3 kernel) or net (a small whole network); default: net for int8 tables, conv otherwise; "
                        "a resumed table keeps its own")
