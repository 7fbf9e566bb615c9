"""``slimnas export``: model.pt, model.onnx (checked against onnxruntime) and model.engine (TensorRT)."""
from __future__ import annotations

import argparse

from ..pipeline import ExportConfig, export
from . import command
from .common import add_tensorrt_arguments


@command("export", "Export a slimmed model: model.pt, model.onnx (checked) and, with TensorRT, model.engine.", """\
  slimnas export runs/demo --out deploy/                       # the fine-tuned model of a `slimnas slim` run
  slimnas export runs/cafe --subnet runs/cafe_search/subnet.json --out deploy/   # a subnet of a `slimnas train` run
  slimnas export runs/demo --tensorrt --fp16 --out deploy/     # needs pip install slimnas[trt] and a GPU
  slimnas export runs/demo --fixed-batch --batch 8 --out deploy/   # model.onnx at batch 8 (default: dynamic batch)
  slimnas export runs/demo --int8 --int8-calibration 512 --out deploy/   # + model.int8.onnx (onnxruntime QDQ)""")
def run(args: argparse.Namespace) -> int:
    config = ExportConfig(onnx=not args.no_onnx, tensorrt=args.tensorrt, fp16=args.fp16, opset=args.opset,
                          int8=args.int8, int8_calibration=args.int8_calibration)
    export(args.run, args.out, args.subnet, config, batch=args.batch, device=args.device,
           dynamic_batch=not args.fixed_batch)
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a `slimnas slim` run folder, or a `slimnas train` run folder with --subnet")
    p.add_argument("--subnet", help="subnet JSON (e.g. from `slimnas search`) to export from a training run")
    p.add_argument("--out", help="output folder (default: the run folder)")
    add_tensorrt_arguments(p, "build model.engine (error if TensorRT is missing)")
    p.add_argument("--fp16", action="store_true", help="build the TensorRT engine in FP16")
    p.add_argument("--no-onnx", action="store_true", help="write model.pt only")
    p.add_argument("--batch", type=int, default=1,
                   help="batch of model.engine, and of model.onnx with --fixed-batch (default: 1)")
    p.add_argument("--fixed-batch", action="store_true",
                   help="model.onnx with a fixed batch of --batch instead of its dynamic batch axis")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--int8", action="store_true",
                   help="also model.int8.onnx: onnxruntime static quantization (QDQ), calibrated on training images, "
                        "its test accuracy measured in onnxruntime")
    p.add_argument("--int8-calibration", type=int, default=256, metavar="N",
                   help="training images to calibrate model.int8.onnx on (default: 256)")
    p.add_argument("--device", help="torch device to rebuild the supernet on (default: cpu/cuda)")
