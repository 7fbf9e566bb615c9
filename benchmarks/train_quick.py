"""Supernet training benchmark: each strategy from the shared CIFAR-10 MobileNetV2 checkpoint.

Reports, per strategy, the base checkpoint's accuracy, the widest and narrowest (0.35x) subnets' accuracy
after supernet training (test subset, BN recalibrated), and Kendall tau over K subnets between the
supernet's estimate (validation split) and a short stand-alone fine-tune. Also writes the BS-NAS shrinking
log and the CafeNet FLOPs-bin layout. ``--quick`` (default) is sized for a 2-core CPU (< 30 min);
``--full`` is for a GPU machine.

    flock /tmp/slimnas-cpu.lock python benchmarks/train_quick.py --out benchmarks/results/train_quick
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from slimnas.data import DataConfig
from slimnas.evaluate import Evaluator
from slimnas.machine import fingerprint
from slimnas.rank import rank, sample_subnets
from slimnas.space import SpaceConfig
from slimnas.train import TrainConfig
from slimnas.train.bins import bin_table, flops_cost
from slimnas.train.run import RunSpec, train

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT.parent / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"
RATIOS = (0.35, 0.5, 0.625, 0.75, 0.875, 1.0)

PROFILES = {
    "quick": dict(train_subset=10000, val_subset=1000, test_subset=2000, epochs=2, steps=100, batch=64,
                  rank_subnets=20, finetune_steps=20, calib=2048, lr=0.002),
    "full": dict(train_subset=None, val_subset=None, test_subset=None, epochs=30, steps=None, batch=256,
                 rank_subnets=20, finetune_steps=400, calib=2048, lr=0.05),
}
STRATEGIES = {
    "sandwich": dict(strategy_options={"n_random": 2}),
    "cafenet": dict(strategy_options={"n_random": 2, "k": 2, "free_ratio": 0.1}, bins="flops:4"),
    # the evidence rule (min samples, Welch test) at a lower confidence: a quick run sees each choice a few times
    "bsnas": dict(strategy_options={"n_random": 2, "floor": 2, "min_samples": 4, "confidence": 0.8, "window_rounds": 3},
                  max_ratio=1.5),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/train_quick")
    p.add_argument("--full", action="store_true")
    p.add_argument("--strategies", default="sandwich,cafenet,bsnas")
    p.add_argument("--weights", type=Path, default=CKPT,
                   help="base checkpoint (default: the shared one; the committed run uses one from tools/train_base.py)")
    p.add_argument("--fresh", action="store_true", help="retrain strategies already finished in --out")
    args = p.parse_args()
    if not args.weights.is_file():
        print(f"error: base checkpoint {args.weights} not found: train one with tools/train_base.py or pass --weights",
              file=sys.stderr)
        sys.exit(2)
    recipe = args.weights.with_suffix(".json")
    base_info = {"weights": str(args.weights)}
    if recipe.is_file():
        info = json.loads(recipe.read_text())
        base_info.update({k: info.get(k) for k in ("command", "recipe", "test_top1", "test_images", "epochs_done", "seconds")})
    unknown = [n for n in args.strategies.split(",") if n not in STRATEGIES]
    if unknown:
        print(f"error: unknown strategy {', '.join(unknown)}: choose from {', '.join(STRATEGIES)}", file=sys.stderr)
        sys.exit(2)
    prof = PROFILES["full" if args.full else "quick"]
    out = Path(args.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        run_all(args, prof, out, base_info)
    except BaseException:
        if created and not any(out.iterdir()):  # failed before writing anything: leave no empty folder
            out.rmdir()
        raise


def run_all(args, prof: dict, out: Path, base_info: dict) -> None:
    t_start = time.time()
    rows = []
    for name in args.strategies.split(","):
        done = out / name / "row.json"
        if done.is_file() and not args.fresh:  # finished before: keep it (a killed benchmark resumes here)
            rows.append(json.loads(done.read_text()))
            continue
        extra = STRATEGIES[name]
        total = prof["epochs"] * (prof["steps"] or (prof["train_subset"] or 45000) // prof["batch"])
        opts = dict(extra["strategy_options"])
        if name == "bsnas":
            opts["shrink_every"] = max(1, total // 6)
        spec = RunSpec(model="mobilenet_v2", weights=str(args.weights), num_classes=10, input_size=32,
                       space=SpaceConfig(ratios=RATIOS, max_ratio=extra.get("max_ratio", 1.0)),
                       data=DataConfig("cifar10", train_subset=prof["train_subset"], val_subset=prof["val_subset"],
                                       test_subset=prof["test_subset"], cache_dir=str(Path.home() / ".cache/slimnas/data")),
                       strategy=name, strategy_options=opts, bins=extra.get("bins"),
                       train=TrainConfig(epochs=prof["epochs"], steps_per_epoch=prof["steps"], batch_size=prof["batch"],
                                         lr=prof["lr"], warmup_fraction=0.1, eval_images=0, progress=False,
                                         num_workers=0 if not args.full else 8))
        run_dir = out / name
        if args.fresh or not (run_dir / "checkpoint.pt").is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # no half-finished run to continue: start clean
        t0 = time.time()
        trainer = train(spec, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
        t_train = time.time() - t0
        net, st, data = trainer.model, trainer.strategy, trainer.data
        dev = trainer.device
        test_ev = Evaluator(data.calib, data.test, calib_images=prof["calib"], device=dev)
        val_ev = Evaluator(data.calib, data.val, calib_images=prof["calib"], device=dev)
        base = torch.load(args.weights, weights_only=True)
        import torchvision

        base_model = torchvision.models.mobilenet_v2(num_classes=10)
        base_model.load_state_dict(base)
        base_top1 = test_ev.evaluate_model(base_model.to(dev), recalibrate=False).top1
        widest = test_ev.evaluate(net, st.finalize(st.space.max())).top1
        original = test_ev.evaluate(net, st.finalize(net.space.original())).top1 if name == "bsnas" else widest
        narrowest_sub = st.finalize(st.space.min())
        narrowest = test_ev.evaluate(net, narrowest_sub).top1
        t1 = time.time()
        subnets = sample_subnets(st.space, prof["rank_subnets"], seed=0)
        ft = TrainConfig(epochs=1, steps_per_epoch=prof["finetune_steps"], batch_size=prof["batch"], lr=prof["lr"],
                         warmup_fraction=0.0, progress=False, eval_images=0)
        df, tau = rank(net, st, data, subnets, ft, val_ev, arrangements=getattr(st.options, "k", 1), device=dev)
        df.to_csv(run_dir / "rank.csv", index=False)
        rows.append({"strategy": name, "base_top1": base_top1, "widest_top1": widest, "original_width_top1": original,
                     "widest_minus_base": widest - base_top1,
                     "narrowest_top1": narrowest, "narrowest_mflops": net.flops(narrowest_sub) / 1e6,
                     "widest_mflops": net.flops(st.space.max()) / 1e6, "kendall_tau": tau, "rank_subnets": len(df),
                     "space_size_end": st.space.size(), "train_s": t_train, "rank_s": time.time() - t1})
        if name == "cafenet":
            pd.DataFrame(bin_table(st.space, flops_cost(net))).to_csv(out / "cafenet_flops_bins.csv", index=False)
            if (run_dir / "bins.png").is_file():
                shutil.copy(run_dir / "bins.png", out / "cafenet_flops_bins.png")
        if name == "bsnas" and (run_dir / "shrink.csv").is_file():
            shutil.copy(run_dir / "shrink.csv", out / "bsnas_shrink_log.csv")
        (run_dir / "row.json").write_text(json.dumps(rows[-1], indent=1))
        for f in ("checkpoint.pt",):
            (run_dir / f).unlink(missing_ok=True)  # weights are not committed
        pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
    meta = {"command": " ".join([sys.executable.split("/")[-1]] + sys.argv), "profile": "full" if args.full else "quick",
            "settings": prof, "base": base_info, "strategies": {k: STRATEGIES[k] for k in args.strategies.split(",")},
            "fingerprint": fingerprint(torch.get_num_threads()), "seconds": time.time() - t_start,
            "notes": "base/widest/narrowest on a seeded, class-balanced subset of CIFAR-10 test/; "
                     "tau on the validation split carved from train/"}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    (out / "README.md").write_text(report(pd.DataFrame(rows), meta, out))


def md_table(df: pd.DataFrame) -> str:
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def report(df: pd.DataFrame, meta: dict, out: Path) -> str:
    """The committed summary: base, widest/narrowest per strategy, Kendall tau, the shrink log and the bins."""
    base = meta["base"]
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    lines = [f"# Supernet training, {meta['profile']} profile", "",
             f"Command: `{meta['command']}` ({meta['seconds'] / 60:.1f} min; {meta['fingerprint'].get('cpu')}, "
             f"{meta['fingerprint'].get('cores')} cores)  ",
             f"Base checkpoint: `{base['weights']}`" + (f", trained by `{base['command']}` "
                                                         f"({base.get('epochs_done')} epochs, test top-1 {base.get('test_top1')} "
                                                         f"on {base.get('test_images')} images)" if base.get("command") else ""),
             "", "| strategy | base top-1 | widest top-1 | widest - base (points) | narrowest top-1 (MFLOPs) | "
             "Kendall tau (20 subnets) | train s | rank s |", "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['strategy']} | {pct(r['base_top1'])} | {pct(r['widest_top1'])} | {100 * r['widest_minus_base']:+.2f} | "
                     f"{pct(r['narrowest_top1'])} ({r['narrowest_mflops']:.2f}) | {r['kendall_tau']:.3f} | {r['train_s']:.0f} | {r['rank_s']:.0f} |")
    lines += ["", f"Settings: {json.dumps(meta['settings'])}. {meta['notes']}.", ""]
    shrink = out / "bsnas_shrink_log.csv"
    if shrink.is_file():
        log = pd.read_csv(shrink)
        lines += [f"## BS-NAS shrinking log ({len(log)} choices switched off; `bsnas_shrink_log.csv`)", "",
                  md_table(log.head(20)) if len(log) else "(nothing switched off)", ""]
    if (out / "cafenet_flops_bins.csv").is_file():
        lines += ["## CafeNet FLOPs-sensitive bins (`cafenet_flops_bins.csv`)", "", "![bins](cafenet_flops_bins.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from slimnas.errors import SlimnasError

    try:
        main()
    except SlimnasError as exc:  # a broken checkpoint, missing data, ...: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
