"""Conversion report for the model zoo: groups found, and the worst numerical gaps over random subnets.

For each model: channel groups (searchable / frozen), min/original FLOPs (``net.space.min()`` over
``net.space.original()``: 1.0 means nothing is searchable), conversion time, and over N random subnets the
largest |supernet - exported| and |exported - onnxruntime| output differences and the largest relative gap
between analytic FLOPs/params and thop on the exported model; plus full-width and broadened-at-init vs the
original. thop counts by exact type, so a subclass of a torch layer (timm's BatchNormAct2d, Conv2dSame) is
counted with its base class's rule. Models named ``timm:<name>`` come from timm, without weights.
Writes benchmarks/results/zoo.md and zoo.json.

    python benchmarks/zoo_report.py                 # the torchvision models of the core issue, two grouped-conv
                                                    # models and issue 14's timm models, 5 subnets, 64 px
    python benchmarks/zoo_report.py --size 224 --subnets 3 --models mobilenet_v2 timm:efficientnet_b0
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import thop
import torch
import torchvision

import slimnas
from slimnas.cost import thop_custom_ops
from slimnas.export import onnx_max_abs_diff
from slimnas.fileio import atomic_write_text
from slimnas.machine import fingerprint
from slimnas.supernet import ConvertConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import calibrate  # noqa: E402  (a test helper: realistic BatchNorm statistics)
from tests.nets import TinyNet  # noqa: E402

ZOO = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b3",
       "mnasnet1_0", "resnet18", "resnet50", "regnet_x_400mf", "tinynet", "resnext50_32x4d", "regnet_y_400mf"]
TIMM = ["efficientnet_b0", "tf_efficientnet_b0", "mobilenetv2_100", "mobilenetv3_large_100", "mnasnet_100", "lcnet_050",
        "mixnet_s", "ghostnet_100", "rexnet_100", "cspresnet50", "repvgg_a0"]
ZOO += [f"timm:{n}" for n in TIMM]
# Issue 14's figures before the op-level rules (min/original FLOPs at 64 px), and what still blocks a model.
BEFORE = {"timm:efficientnet_b0": 0.987, "timm:tf_efficientnet_b0": 0.987, "timm:mobilenetv2_100": 1.000,
          "timm:mnasnet_100": 1.000, "timm:mobilenetv3_large_100": 0.944, "timm:lcnet_050": 0.992,
          "timm:mixnet_s": 0.972, "timm:ghostnet_100": 0.926, "timm:rexnet_100": 0.979, "timm:cspresnet50": 1.000,
          "timm:repvgg_a0": 1.000, "mobilenet_v2": 0.106, "resnet50": 0.070, "resnext50_32x4d": 0.279,
          "regnet_y_400mf": 0.368, "regnet_x_400mf": 0.429}
BLOCKER = {"tinynet": "a tiny test net (stem and head groups at 16-32 channels)",
           "shufflenet_v2_x1_0": "channel shuffle (view + transpose), frozen and named"}
RESULTS = Path(__file__).parent / "results"


def build(name: str) -> torch.nn.Module:
    if name == "tinynet":
        return TinyNet(10)
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name[5:], pretrained=False, num_classes=10)  # no weights: nothing downloaded
    return torchvision.models.get_model(name, num_classes=10)


def report(name: str, size: int, n: int, grouped: bool = True) -> dict:
    torch.manual_seed(0)
    model = calibrate(build(name), (3, size, size))
    x = torch.randn(1, 3, size, size)
    want = model(x)
    t0 = time.perf_counter()
    config = ConvertConfig(grouped=grouped)
    net = slimnas.convert(model, size, config).eval()
    convert_s = time.perf_counter() - t0
    wide = slimnas.convert(model, size, config, max_ratio=1.5).eval()
    row = {"model": name, "groups": len(net.graph.groups), "searchable": len(net.space),
           "frozen_by_tracer": len(net.graph.notes), "convert_s": round(convert_s, 3),
           "min_over_original": round(net.flops(net.space.min()) / net.flops(net.space.original()), 3),
           "before": BEFORE.get(name, ""), "blocker": BLOCKER.get(name, ""),
           "logit_max": round(float(want.abs().max()), 2),
           "full_vs_original": float((net(x) - want).abs().max()),
           "broadened_vs_original": float((wide(x) - want).abs().max())}
    worst = {"supernet_vs_export": 0.0, "export_vs_onnx": 0.0, "flops_rel_err": 0.0, "params_rel_err": 0.0}
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            s = net.space.sample(rng)
            net.set_subnet(s)
            plain = slimnas.export_subnet(net, s).eval()
            worst["supernet_vs_export"] = max(worst["supernet_vs_export"], float((net(x) - plain(x)).abs().max()))
            path = slimnas.export_onnx(plain, Path(tmp) / f"{i}.onnx", (3, size, size))
            worst["export_vs_onnx"] = max(worst["export_vs_onnx"], onnx_max_abs_diff(plain, path, x))
            macs, params = thop.profile(plain, inputs=(x,), verbose=False, custom_ops=thop_custom_ops(plain))
            worst["flops_rel_err"] = max(worst["flops_rel_err"], abs(net.flops(s) / macs - 1))
            worst["params_rel_err"] = max(worst["params_rel_err"], abs(net.params(s) / params - 1))
    row.update(worst)
    return row


def write(rows: list[dict], args: argparse.Namespace) -> None:
    cmd = (f"python benchmarks/zoo_report.py --size {args.size} --subnets {args.subnets} "
           f"--{'' if args.grouped else 'no-'}grouped --models {' '.join(args.models)}")
    partial = "" if len(rows) == len(args.models) else f" (partial: {len(rows)} of {len(args.models)} models)"
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "zoo.json", json.dumps({"command": cmd + partial, "machine": fingerprint(), "rows": rows},
                                                       indent=1))
    cols = ["model", "groups", "searchable", "frozen_by_tracer", "before", "min_over_original", "blocker", "convert_s",
            "logit_max", "full_vs_original", "broadened_vs_original", "supernet_vs_export", "export_vs_onnx",
            "flops_rel_err", "params_rel_err"]
    plain = ("convert_s", "min_over_original", "before", "logit_max")
    lines = [f"# Model zoo conversion report\n\nCommand: `{cmd}`{partial}  \nMachine: `{json.dumps(fingerprint())}`\n",
             "Targets: supernet vs export <= 1e-5, export vs onnxruntime <= 1e-4, FLOPs vs thop within 1%, "
             "full width and broadened (1.5x, at init) vs original <= 1e-5. Differences are max |a-b| over the logits of "
             f"{args.subnets} random subnets (seeded), fp32, {args.size}x{args.size} input. min_over_original: FLOPs of "
             "net.space.min() / FLOPs of net.space.original() (target <= 0.20); before: issue 14's figure before the "
             "op-level rules and grouped convs; blocker: what keeps a model above the target; logit_max: the largest "
             "|logit| of the original (differences are absolute). Converted with ConvertConfig(grouped=--grouped). "
             "thop counts a subclass of a torch layer (timm's BatchNormAct2d, Conv2dSame) with its base class's rule.\n",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.2e}" if isinstance(r[c], float) and c not in plain else str(r[c])
                                       for c in cols) + " |")
    atomic_write_text(RESULTS / "zoo.md", "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=ZOO)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--subnets", type=int, default=5)
    ap.add_argument("--grouped", action=argparse.BooleanOptionalAction, default=True,
                    help="convert with ConvertConfig(grouped=True): grouped convs searchable (default: on)")
    args = ap.parse_args()
    rows: list[dict] = []
    for name in args.models:
        rows.append(report(name, args.size, args.subnets, args.grouped))
        print(json.dumps(rows[-1]), flush=True)
        write(rows, args)  # after every model, atomically: a long run that is stopped still leaves its rows
    print(f"wrote {RESULTS / 'zoo.md'}")


if __name__ == "__main__":
    main()
