"""``slimnas rank``: Kendall tau between a trained supernet's estimates and stand-alone fine-tuned accuracy."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluate import Evaluator
from ..rank import rank, sample_subnets
from ..train import TrainConfig
from ..train.run import load_run
from . import command


@command("rank", "Kendall tau between supernet-estimated and stand-alone fine-tuned accuracy of K subnets.", """\
  slimnas rank runs/cafe --subnets 20 --finetune-steps 200
  slimnas rank runs/demo --subnets 5 --finetune-steps 10 --arrangements 3""")
def run(args: argparse.Namespace) -> int:
    spec, net, strategy, data = load_run(args.run, args.device)
    device = next(net.parameters()).device
    subnets = sample_subnets(strategy.space, args.subnets, seed=args.seed)
    ev = Evaluator(data.calib, data.val, calib_images=args.calib_images, val_images=args.val_images, device=device, seed=args.seed)
    ft = TrainConfig(epochs=1, steps_per_epoch=args.finetune_steps, batch_size=spec.train.batch_size, optimizer=spec.train.optimizer,
                     lr=args.finetune_lr, weight_decay=spec.train.weight_decay, label_smoothing=spec.train.label_smoothing,
                     seed=args.seed)
    k = args.arrangements if args.arrangements is not None else getattr(strategy.options, "k", 1)
    df, tau = rank(net, strategy, data, subnets, ft, ev, arrangements=k, seed=args.seed, device=device, progress=True)
    out = Path(args.run) / "rank.csv"
    df.to_csv(out, index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"Kendall tau over {len(df)} subnets: {tau:.3f} (table in {out})")
    return 0


@run.arguments
def _(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder written by `slimnas train`")
    p.add_argument("--subnets", type=int, default=20, help="subnets to rank (default: 20; widest and narrowest included)")
    p.add_argument("--finetune-steps", type=int, default=200, help="stand-alone fine-tune steps per subnet (default: 200)")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--arrangements", type=int, help="CafeNet arrangements tried per subnet (default: the run's k)")
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--val-images", type=int, help="validation images scored (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
