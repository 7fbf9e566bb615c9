"""Fine-tune recipes for a finished `slimnas demo` run, probed on its validation split (test is not looked at).

Loads the run's trained supernet, its chosen subnet (``subnet.json``) and the original (``base/model.pth``), then
fine-tunes the chosen subnet stand-alone with each recipe into a scratch folder (the original: ``base/model.pth``, else the config's ``model.weights``) and scores it exactly as the
pipeline does (BatchNorm recalibrated on the same training images, eval mode, the whole validation split):

    flock /tmp/slimnas-cpu.lock python benchmarks/demo_finetune_probe.py /tmp/demo_s0 --recipe base:6:0.001 \
        --recipe long:20:0.001 --recipe long_hi:20:0.003 --recipe from_base:20:0.001:base

A recipe is ``name:epochs:lr[:start]``; ``start`` is ``supernet`` (the pipeline's: the subnet's weights in the
trained supernet) or ``base`` (the same widths sliced from the original, converted afresh). Epochs are capped at
20 steps each like the demo's (the digits training split has 16 batches of 64). Writes ``finetune_probe.json``
into the run folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--recipe", action="append", required=True)
    p.add_argument("--alpha", type=float, default=None, help="distillation weight (default: the run's)")
    args = p.parse_args()

    from slimnas.models import load_model
    from slimnas.pipeline.config import load_config
    from slimnas.pipeline.finetune import finetune
    from slimnas.subnet import Subnet
    from slimnas.supernet import ConvertConfig, convert
    from slimnas.train.run import load_run

    cfg = load_config(args.run / "config.yaml")
    _, net, _, data = load_run(args.run / "supernet", "cpu")
    chosen = Subnet.from_json((args.run / "subnet.json").read_text())
    num_classes = cfg.model.num_classes or data.num_classes
    weights = str(args.run / "base" / "model.pth") if (args.run / "base" / "model.pth").is_file() else cfg.model.weights
    teacher = load_model(cfg.model.name, num_classes=num_classes, weights=weights)
    out_file = args.run / "finetune_probe.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for spec in args.recipe:
        name, epochs, lr, *rest = spec.split(":")
        start = rest[0] if rest else "supernet"
        src = net
        if start == "base":
            torch.manual_seed(cfg.seed)
            src = convert(load_model(cfg.model.name, num_classes=num_classes, weights=weights), cfg.model.input_size,
                          ConvertConfig(space=cfg.space))
        ft = cfg.finetune
        ft = replace(ft, train=replace(ft.train, epochs=int(epochs), lr=float(lr)),
                     alpha=ft.alpha if args.alpha is None else args.alpha)
        with tempfile.TemporaryDirectory(prefix="ftprobe-") as tmp:
            t0 = time.time()
            r = finetune(src, chosen, data, teacher, ft, cfg.fitness, Path(tmp), None, num_classes, "cpu", cfg.seed)
            wall = time.time() - t0
        r = {k: v for k, v in r.items() if not k.startswith("test")}  # tuning looks at validation only
        results[name] = {"epochs": int(epochs), "lr": float(lr), "start": start, "alpha": ft.alpha, "wall_s": round(wall, 1),
                         **r}
        print(name, json.dumps(results[name]), flush=True)
        out_file.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
