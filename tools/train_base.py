"""Train a base checkpoint: torchvision mobilenet_v2(num_classes=10) on CIFAR-10 at 32 px, seeded and resumable.

Writes ``OUT.pth`` (a plain state_dict) and ``OUT.json`` (recipe, per-epoch log, test top-1), both atomically
at the end. Before saving, the BatchNorm running statistics are re-estimated exactly on ``--bn-images`` training
images (evaluation transform): the statistics a short or fast-changing run accumulates by momentum lag behind
its weights (MobileNetV3 after a short run scored chance in eval mode while its recalibrated validation top-1
was 0.28), and a checkpoint is used in eval mode. ``OUT.json`` scores the saved checkpoint as it is (eval mode)
and, for comparison, with the training's running statistics (``test_top1_running_stats``); the per-epoch
``val_top1_bn_recalibrated`` is validation top-1 after such a recalibration (``eval_images`` images). While it
runs, ``OUT.run/`` holds the recipe (``recipe.json``), a checkpoint after every epoch,
``steps.csv`` and ``epochs.csv``. After a kill (kill -9 included) rerun the same command with ``--resume``:
it continues from the last finished epoch with the same step count and learning-rate schedule. The full
recipe takes hours on a 2-core CPU; nothing is downloaded (``--data cifar10`` reads the shared tarball).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  # the full recipe (hours on a 2-core CPU; run it under the shared CPU lock)
  python tools/train_base.py --out checkpoints/cifar10_mobilenet_v2 --epochs 25
  # another torchvision architecture (or package.module:factory): --model
  python tools/train_base.py --out checkpoints/cifar10_mobilenet_v3_small --model mobilenet_v3_small --epochs 25
  # after a kill: the same command plus --resume
  python tools/train_base.py --out checkpoints/cifar10_mobilenet_v2 --epochs 25 --resume
  # a smoke run: 2 epochs of 5 steps on a 2,000-image CIFAR-10 subset
  python tools/train_base.py --out /tmp/base_smoke --epochs 2 --steps-per-epoch 5 --train-subset 2000 --eval-images 200
  # the built-in digits (no files needed), a tiny model of the tests
  python tools/train_base.py --out /tmp/digits --data digits --model tests.nets:tiny_net --epochs 1"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="path without extension: OUT.pth, OUT.json and the run folder OUT.run/")
    p.add_argument("--model", default="mobilenet_v2", help="torchvision name or package.module:factory (default: mobilenet_v2)")
    p.add_argument("--data", default="cifar10", help="cifar10 (the shared tarball), digits, or an ImageFolder root")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--train-subset", type=int, help="train on this many images only (class-balanced; smoke runs)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--steps-per-epoch", type=int, help="cap the steps of each epoch (smoke runs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--warmup", type=float, default=0.15, help="share of steps for the linear warm-up")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--eval-images", type=int, default=2000, help="validation images scored at each epoch end (0: none)")
    p.add_argument("--bn-images", type=int, default=2000,
                   help="training images that re-estimate the BatchNorm statistics before saving (default: 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data-loader processes")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue OUT.run/ from its last checkpoint")
    return p.parse_args(argv)


# the trainer's per-epoch column, named after what it measures: validation top-1 after BN recalibration
RENAMED = {"val_top1_model": "val_top1_bn_recalibrated"}


def epoch_log(run_dir: Path) -> list[dict]:
    """Every finished epoch's row from ``epochs.csv`` (including those before a resume), numbers parsed; the
    trainer's ``val_top1_model`` is named ``val_top1_bn_recalibrated``, after what it measures."""
    path = run_dir / "epochs.csv"
    if not path.is_file():
        return []
    def number(v: str):
        if v in ("", None):
            return None
        return int(v) if v.lstrip("-").isdigit() else float(v)

    with open(path, newline="") as f:
        return [{RENAMED.get(k, k): number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train_base(args: argparse.Namespace) -> dict:
    import torch

    from slimnas.data import DataConfig, load_data
    from slimnas.errors import SlimnasError
    from slimnas.evaluate import Evaluator, accuracy, recalibrate_bn
    from slimnas.fileio import atomic_torch_save, atomic_write_text
    from slimnas.models import load_model
    from slimnas.train import Trainer, TrainConfig, make_strategy
    from slimnas.train.trainer import CHECKPOINT

    out = Path(args.out)
    run_dir = out.with_suffix(".run")
    data = load_data(DataConfig(args.data, image_size=args.input_size, seed=args.seed, train_subset=args.train_subset))
    torch.manual_seed(args.seed)
    model = load_model(args.model, num_classes=data.num_classes)
    cfg = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                      optimizer="sgd", lr=args.lr, weight_decay=args.weight_decay, warmup_fraction=args.warmup,
                      label_smoothing=args.label_smoothing, seed=args.seed, num_workers=args.workers,
                      eval_images=args.eval_images, progress=not args.no_progress)
    recipe = {"architecture": f"{args.model}(num_classes={data.num_classes})",
              "input": f"3x{args.input_size}x{args.input_size}", "data": data.description,
              "train_subset": args.train_subset, "normalisation": {"mean": data.mean, "std": data.std},
              "recipe": {**cfg.to_dict(), "schedule": "linear warm-up then cosine",
                         "augmentation": "reflect-pad size/8 + random crop + horizontal flip (digits: no flip)"},
              "validation": "10% of train/, seeded, per class", "torch": torch.__version__,
              "command": " ".join(["python", "tools/train_base.py"] + sys.argv[1:])}
    trainer = Trainer(model, make_strategy("plain", model), data, cfg, run_dir=run_dir)
    started = (run_dir / CHECKPOINT).is_file()
    if started and not args.resume:
        raise SlimnasError(f"{run_dir} already holds a run: add --resume to continue it, or choose another --out")
    if not started:
        atomic_write_text(run_dir / "recipe.json", json.dumps(recipe, indent=1))
    trainer.fit(resume=args.resume)  # a resume with another schedule is refused here
    if args.bn_images < 1:
        raise SlimnasError(f"--bn-images must be at least 1, got {args.bn_images}")
    model = trainer.model.eval()
    val = Evaluator(data.calib, data.val, calib_images=args.bn_images, val_images=args.eval_images or None,
                    seed=args.seed, device=trainer.device)
    test = Evaluator(data.calib, data.test, calib_images=1, device=trainer.device) if data.test is not None else None
    running = accuracy(model, test.val).top1 if test is not None else None  # the training's momentum statistics
    recalibrate_bn(model, val.calib)  # kept: the checkpoint is saved with statistics that fit its weights
    top1 = accuracy(model, test.val).top1 if test is not None else None
    log = epoch_log(run_dir)
    result = {**recipe, "test_top1": top1, "test_images": len(data.test) if data.test is not None else 0,
              "val_top1": accuracy(model, val.val).top1, "val_images": sum(len(y) for _, y in val.val),
              "bn_images": min(args.bn_images, len(data.calib)), "test_top1_running_stats": running,
              "bn": "running statistics re-estimated on bn_images training images (evaluation transform) before saving; "
                    "test_top1 and val_top1 score the saved checkpoint in eval mode",
              "epochs_done": trainer.epoch, "steps_done": trainer.step, "log": log,
              "seconds": sum(r.get("seconds") or 0.0 for r in log)}
    if running is not None and abs(running - top1) > 0.01:
        print(f"train_base: note: with the training's running BatchNorm statistics the model scored test top-1 "
              f"{running:.4f}, with re-estimated ones {top1:.4f}: the checkpoint is saved with the re-estimated ones",
              file=sys.stderr)
    atomic_torch_save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, out.with_suffix(".pth"))
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    from slimnas.errors import SlimnasError

    try:
        result = train_base(args)
    except SlimnasError as exc:
        print(f"train_base: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"test top-1 {result['test_top1']} (eval mode, as saved; BN statistics re-estimated on {result['bn_images']} "
          f"training images); wrote {out.with_suffix('.pth')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
