"""Train a base checkpoint: torchvision mobilenet_v2(num_classes=10) on CIFAR-10 at 32 px, seeded.

Writes ``OUT.pth`` (a plain state_dict) and ``OUT.json`` (recipe, per-epoch log, test top-1). The full recipe
takes hours on a 2-core CPU; ``--epochs 1 --steps-per-epoch 20`` is a smoke run. Example:

    python tools/train_base.py --out checkpoints/cifar10_mobilenet_v2 --epochs 25
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision

from slimnas.data import DataConfig, load_data
from slimnas.evaluate import Evaluator
from slimnas.train import Trainer, TrainConfig, make_strategy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="path without extension for .pth and .json")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--warmup", type=float, default=0.15)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    out = Path(args.out)
    data = load_data(DataConfig(args.data, image_size=32, seed=args.seed))
    torch.manual_seed(args.seed)
    model = torchvision.models.mobilenet_v2(num_classes=data.num_classes)
    cfg = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                      optimizer="sgd", lr=args.lr, weight_decay=args.weight_decay, warmup_fraction=args.warmup,
                      label_smoothing=args.label_smoothing, seed=args.seed, num_workers=args.workers,
                      eval_images=2000)
    t0 = time.time()
    trainer = Trainer(model, make_strategy("plain", model), data, cfg, run_dir=out.with_suffix(".run"))
    history = trainer.fit(resume=args.resume)
    top1 = None
    if data.test is not None:
        ev = Evaluator(data.calib, data.test, calib_images=1, val_images=None)
        top1 = ev.evaluate_model(trainer.model, recalibrate=False).top1
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(trainer.model.state_dict(), out.with_suffix(".pth"))
    recipe = {"architecture": "torchvision.models.mobilenet_v2(num_classes=10)", "input": "3x32x32",
              "data": data.description, "normalisation": {"mean": data.mean, "std": data.std},
              "recipe": {**cfg.to_dict(), "schedule": "linear warm-up then cosine", "augmentation":
                         "reflect-pad 4 + random crop 32 + horizontal flip"},
              "test_top1": top1, "validation": "10% of train/, seeded, per class", "log": history,
              "seconds": time.time() - t0, "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps(recipe, indent=1))
    print(f"test top-1 {top1}; wrote {out.with_suffix('.pth')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
