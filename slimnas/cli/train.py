"""``slimnas train``: supernet training from a base checkpoint (also under ``torchrun`` for DDP)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DataConfig
from ..errors import SlimnasError
from ..train import TrainConfig
from ..train.run import RunSpec, train
from . import command
from .common import add_model_arguments, add_space_arguments, space_from_args


def parse_options(items: list[str]) -> dict:
    """``KEY=VALUE`` strategy options; values parsed as int, float, bool or left as text."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SlimnasError(f"strategy options are KEY=VALUE (e.g. k=3), got {item!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key.replace("-", "_")] = low == "true"
            continue
        for cast in (int, float):
            try:
                out[key.replace("-", "_")] = cast(value)
                break
            except ValueError:
                pass
        else:
            out[key.replace("-", "_")] = value
    return out


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits",
                   help="digits (built in), cifar10, cifar10:PATH, torchvision-cifar10:ROOT or an ImageFolder root (default: digits)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of train/ held out for validation (default: 0.1)")
    p.add_argument("--train-subset", type=int, help="use only this many training images (balanced)")
    p.add_argument("--val-subset", type=int, help="use only this many validation images")
    p.add_argument("--data-cache", help="where archives are extracted (default: ~/.cache/slimnas/data)")


def data_config(args: argparse.Namespace) -> DataConfig:
    return DataConfig(source=args.data, image_size=args.input_size, val_fraction=args.val_fraction, seed=args.seed,
                      train_subset=args.train_subset, val_subset=args.val_subset, cache_dir=args.data_cache)


@command("train", "Train a supernet from a base checkpoint (sandwich, cafenet or bsnas); resumable, DDP under torchrun.", """\
  slimnas train tests.nets:tiny_net --out runs/demo --epochs 1
  slimnas train mobilenet_v2 --weights cifar10_mobilenet_v2.pth --data cifar10 --strategy cafenet --opt k=3 --bins flops:4 --out runs/cafe
  slimnas train mobilenet_v2 --weights base.pth --data cifar10 --strategy cafenet --out runs/cafe_lat \
      --bins latency:4:latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32
  slimnas train mobilenet_v2 --weights base.pth --data cifar10 --strategy bsnas --max-ratio 1.5 --opt shrink_every=100 --out runs/bs
  slimnas train mobilenet_v2 --weights base.pth --data cifar10 --out runs/cafe --resume
  torchrun --nproc_per_node 2 -m slimnas train mobilenet_v2 --weights base.pth --data cifar10 --out runs/ddp

--resume takes the flags the run was started with: a resume with other settings is refused, naming them
(--no-progress, --workers and --device may change). Relative paths are stored absolute in OUT/config.json,
so the run can be resumed, searched and exported from any directory. Without --weights the model is
trained from its random initialisation (said in one line at the start).""")
def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    space = space_from_args(args)
    cfg = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                      optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                      warmup_fraction=args.warmup, label_smoothing=args.label_smoothing, amp=not args.no_amp,
                      seed=args.seed, num_workers=args.workers, eval_images=args.eval_images,
                      progress=not args.no_progress)
    spec = RunSpec(model=args.model, weights=args.weights, num_classes=args.num_classes, input_size=args.input_size,
                   space=space, data=data_config(args), strategy=args.strategy,
                   strategy_options=parse_options(args.opt), bins=args.bins, train=cfg, device=args.device)
    trainer = train(spec, out, resume=args.resume)
    if trainer.is_main:
        last = trainer.history[-1] if trainer.history else {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("val_"))
        print(f"trained {trainer.step} steps ({trainer.epoch} epochs) into {out}" + (f"; {shown}" if shown else ""))
        if args.bins:
            print(f"bin layout ({args.bins}): {out / 'bins.csv'}, {out / 'bins.png'}")
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.set_defaults(input_size=32)
    add_space_arguments(p)
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, steps.csv, epochs.csv, config.json)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--strategy", default="sandwich", help="sandwich | cafenet | bsnas | plain (default: sandwich)")
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help="a strategy option (repeatable), e.g. k=3, n_random=2")
    p.add_argument("--bins", help="cost-sensitive candidate widths: flops:N, latency:N:TABLE_DIR (a `slimnas profile` "
                   "table of this model, input size and space) or latency:N:TABLE.csv (group,width,latency_ms); "
                   "the layout goes to OUT/bins.csv and bins.png")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps-per-epoch", type=int, help="cap the steps of each epoch (quick runs)")
    p.add_argument("--batch-size", type=int, default=64, help="per process (default: 64)")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--warmup", type=float, default=0.05, help="share of steps for linear warm-up (default: 0.05)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data-loader processes (default: 0)")
    p.add_argument("--eval-images", type=int, default=1000, help="validation images per report at epoch ends (0: none)")
    p.add_argument("--no-amp", action="store_true", help="disable bfloat16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
