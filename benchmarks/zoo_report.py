"""Conversion report for the model zoo: groups found, and the worst numerical gaps over random subnets.

For each model: channel groups (searchable / frozen), conversion time, and over N random subnets the
largest |supernet - exported| and |exported - onnxruntime| output differences and the largest relative gap
between analytic FLOPs/params and thop on the exported model; plus full-width and broadened-at-init vs the
original. Writes benchmarks/results/zoo.md and zoo.json.

    python benchmarks/zoo_report.py                 # the 10 models of the core issue, 5 subnets, 64 px
    python benchmarks/zoo_report.py --size 224 --subnets 3 --models mobilenet_v2 efficientnet_b0
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
from slimnas.export import onnx_max_abs_diff
from slimnas.machine import fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import calibrate  # noqa: E402  (a test helper: realistic BatchNorm statistics)
from tests.nets import TinyNet  # noqa: E402

ZOO = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b3",
       "mnasnet1_0", "resnet18", "resnet50", "regnet_x_400mf", "tinynet"]
RESULTS = Path(__file__).parent / "results"


@torch.no_grad()
def report(name: str, size: int, n: int) -> dict:
    torch.manual_seed(0)
    model = TinyNet(10) if name == "tinynet" else torchvision.models.get_model(name, num_classes=10)
    model = calibrate(model, (3, size, size))
    x = torch.randn(1, 3, size, size)
    want = model(x)
    t0 = time.perf_counter()
    net = slimnas.convert(model, size).eval()
    convert_s = time.perf_counter() - t0
    wide = slimnas.convert(model, size, max_ratio=1.5).eval()
    row = {"model": name, "groups": len(net.graph.groups), "searchable": len(net.space),
           "frozen_by_tracer": len(net.graph.notes), "convert_s": round(convert_s, 3),
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
            macs, params = thop.profile(plain, inputs=(x,), verbose=False)
            worst["flops_rel_err"] = max(worst["flops_rel_err"], abs(net.flops(s) / macs - 1))
            worst["params_rel_err"] = max(worst["params_rel_err"], abs(net.params(s) / params - 1))
    row.update(worst)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=ZOO)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--subnets", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for name in args.models:
        rows.append(report(name, args.size, args.subnets))
        print(json.dumps(rows[-1]))
    cmd = f"python benchmarks/zoo_report.py --size {args.size} --subnets {args.subnets} --models {' '.join(args.models)}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zoo.json").write_text(json.dumps({"command": cmd, "machine": fingerprint(), "rows": rows}, indent=1))
    cols = ["model", "groups", "searchable", "frozen_by_tracer", "convert_s", "full_vs_original", "broadened_vs_original",
            "supernet_vs_export", "export_vs_onnx", "flops_rel_err", "params_rel_err"]
    lines = [f"# Model zoo conversion report\n\nCommand: `{cmd}`  \nMachine: `{json.dumps(fingerprint())}`\n",
             "Targets: supernet vs export <= 1e-5, export vs onnxruntime <= 1e-4, FLOPs vs thop within 1%, "
             "full width and broadened (1.5x, at init) vs original <= 1e-5. Differences are max |a-b| over the logits of "
             f"{args.subnets} random subnets (seeded), fp32, {args.size}x{args.size} input.\n",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.2e}" if isinstance(r[c], float) and c != "convert_s" else str(r[c]) for c in cols) + " |")
    (RESULTS / "zoo.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'zoo.md'}")


if __name__ == "__main__":
    main()
