"""Issue 14's end-to-end must-show: `slimnas slim` on timm's mobilenetv3_large_100, and its model.pt loaded back.

Run the pipeline first (under the shared CPU lock; benchmarks/timm_slim.yaml names the model by
``model.name: "timm.models.mobilenetv3:mobilenetv3_large_100"``, a ``package.module:factory`` that slimnas calls
with ``num_classes``)::

    flock /tmp/slimnas-cpu.lock python -m slimnas slim --config benchmarks/timm_slim.yaml --out RUN --no-progress

then ``python benchmarks/timm_slim.py RUN --wall SECONDS`` loads ``RUN/model.pt`` back with
:func:`slimnas.load_exported` (no supernet, no run folder), compares it with ``RUN/model.onnx`` in onnxruntime
and with the original's widths, and copies report.md, config.yaml and verify.csv beside a README.md into
benchmarks/results/timm_slim/.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import slimnas
from slimnas.models import build_model, layer_shapes, read_exported

OUT = Path(__file__).resolve().parent / "results" / "timm_slim"
COMMAND = ("flock /tmp/slimnas-cpu.lock python -m slimnas slim --config benchmarks/timm_slim.yaml "
           "--out /tmp/timm_slim_run --no-progress")


def load_back(run: Path) -> dict:
    meta = read_exported(run / "model.pt")["slimnas"]
    model = slimnas.load_exported(run / "model.pt")
    original = build_model(meta["arch"], num_classes=meta["num_classes"])
    size = int(meta["input"]["input_shape"][-1]) if meta.get("input") else 32
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).numpy()
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    y_onnx = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    narrower = [n for n, s in layer_shapes(model).items() if s != layer_shapes(original)[n]]
    classes = sorted({type(model.get_submodule(n)).__module__ + "." + type(model.get_submodule(n)).__qualname__
                      for n in narrower})
    return {"arch": meta["arch"], "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "input": size, "max_abs_diff_vs_model_onnx": float(np.abs(y - y_onnx).max()),
            "narrower_layers": len(narrower), "layers": len(layer_shapes(model)), "narrower_classes": classes,
            "params": sum(p.numel() for p in model.parameters()),
            "original_params": sum(p.numel() for p in original.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--wall", type=float, required=True, help="the slim command's wall time in seconds")
    args = ap.parse_args()
    check = load_back(args.run)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "config.yaml", "verify.csv"):
        shutil.copyfile(args.run / name, OUT / name)
    (OUT / "loadback.json").write_text(json.dumps(check, indent=1) + "\n")
    print(json.dumps(check, indent=1))


if __name__ == "__main__":
    main()
