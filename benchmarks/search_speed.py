"""Search-speed benchmark: `slimnas slim` on CIFAR-10 MobileNetV2 at 32x32, the search limited to 10 minutes.

The shared checkpoint (``../shared/checkpoints/cifar10_mobilenet_v2.pth``) becomes a supernet, trained briefly
with the sandwich rule; then the evolutionary search runs for ``--minutes`` of wall time on this CPU, scoring
every candidate by its supernet accuracy on the validation split carved from ``train/`` (BN recalibrated),
with latency predicted from the shipped onnxruntime table. The Pareto candidates nearest the budget are
measured end to end (onnxruntime, one thread, batch 1, interleaved with the original); the chosen one must meet
the budget by measurement. Reported: candidates evaluated in the time, the chosen subnet's measured latency
(quietest-round median, p10-p90 and the measurement's repeat error) against the budget, and its predicted
latency against the measured one. The supernet training and the final fine-tune are timed but are not part of
the search time.

    flock /tmp/slimnas-cpu.lock python benchmarks/search_speed.py            # the committed run
    python benchmarks/search_speed.py --minutes 1 --out /tmp/ss              # a quick look

Rerunning with the same ``--work`` resumes (the pipeline's run folder is resumable stage by stage).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT.parent / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"
TABLE = ROOT / "latency_tables" / "mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32"
TARGETS = {"evaluations_in_10_min": 300, "prediction_error_pct": 10.0}


def config(args):
    from slimnas.data import DataConfig
    from slimnas.pipeline.config import (ExportConfig, FinetuneConfig, FitnessConfig, LatencyConfig, ModelConfig,
                                         SlimConfig, SupernetConfig, VerifyConfig)
    from slimnas.search import SearchConfig
    from slimnas.train import TrainConfig

    small = dict(batch_size=64, optimizer="adamw", lr=0.001, weight_decay=0.01, warmup_fraction=0.1,
                 eval_images=0, label_smoothing=0.1)
    return SlimConfig(
        model=ModelConfig(name="mobilenet_v2", weights=str(args.weights), num_classes=10, input_size=32),
        data=DataConfig(source=args.data, val_fraction=0.1),
        latency=LatencyConfig(table=str(args.table), backend="onnxruntime", device="cpu", threads=1, batch=1,
                              rounds=10, samples=100),
        constraints=(f"latency<={args.budget}x",),
        supernet=SupernetConfig(strategy="sandwich", options={"n_random": 2},
                                train=TrainConfig(epochs=1, steps_per_epoch=args.supernet_steps, **small)),
        fitness=FitnessConfig(calib_images=args.calib_images, val_images=args.val_images, batch_size=256),
        search=SearchConfig(population=args.population, generations=1000, time_limit_s=60.0 * args.minutes),
        verify=VerifyConfig(top_k=4, rounds=3),
        finetune=FinetuneConfig(train=TrainConfig(epochs=1, steps_per_epoch=args.finetune_steps, **small), distill=True),
        export=ExportConfig(onnx=True, tensorrt=False),
        device="cpu", seed=args.seed)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_speed"),
                   help="committed results folder (default: %(default)s)")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "slimnas" / "bench" / "search_speed"),
                   help="the pipeline's run folder (resumable; default: %(default)s)")
    p.add_argument("--minutes", type=float, default=10.0, help="search wall-time limit (default: %(default)s)")
    p.add_argument("--budget", type=float, default=0.6, help="latency budget as a fraction of the original (default: %(default)s)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--val-images", type=int, default=1000, help="validation images per fitness score (default: %(default)s)")
    p.add_argument("--calib-images", type=int, default=256, help="BN recalibration images per score (default: %(default)s)")
    p.add_argument("--supernet-steps", type=int, default=150)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--weights", type=Path, default=CKPT)
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--data", default="cifar10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete --work first instead of resuming")
    args = p.parse_args()
    if not args.weights.is_file():
        print(f"error: checkpoint {args.weights} not found: pass --weights PATH", file=sys.stderr)
        return 2
    for flag, value in (("--minutes", args.minutes), ("--budget", args.budget)):
        if not value > 0:
            print(f"error: {flag} must be positive, got {value}", file=sys.stderr)
            return 2

    from slimnas.errors import SlimnasError
    from slimnas.fileio import atomic_write_text
    from slimnas.machine import fingerprint
    from slimnas.pipeline import slim

    work, out = Path(args.work), Path(args.out)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    command = "python benchmarks/search_speed.py " + " ".join(sys.argv[1:])
    t0 = time.time()
    try:
        summary = slim(config(args), work, command=command, progress=sys.stderr.isatty())
    except SlimnasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    wall = time.time() - t0
    s, c = summary["search"], summary["chosen"]
    per_10_min = s["evaluations"] / s["wall_s"] * 600.0 if s["wall_s"] else float("nan")
    err = c.get("error_pct")
    met = {
        "evaluations": bool(s["evaluations"] >= TARGETS["evaluations_in_10_min"] and s["wall_s"] <= 60.0 * args.minutes + 30),
        "measured_within_budget": bool(c["budget_ms"] is not None and c["median_ms"] <= c["budget_ms"]),
        "prediction_within_10pct": bool(err is not None and abs(err) <= TARGETS["prediction_error_pct"]),
    }
    result = {
        "command": command, "device": fingerprint(threads=1), "budget": summary["budget"],
        "search": {**s, "per_10_min": per_10_min, "minutes": args.minutes, "val_images": args.val_images,
                   "calib_images": args.calib_images, "population": args.population},
        "chosen": c, "original": summary["original"], "stages_s": summary["stages"], "wall_s": wall,
        "targets": TARGETS, "met": met, "run_folder": str(work),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1, default=str))
    for f in ("pareto.png", "pareto.csv", "verify.csv", "report.md", "subnet.json", "config.yaml"):
        if (work / f).is_file():
            shutil.copyfile(work / f, out / f)
    atomic_write_text(out / "README.md", report(result))
    print(report(result))
    return 0 if all(met.values()) else 1


def report(r: dict) -> str:
    s, c, o = r["search"], r["chosen"], r["original"]
    d = r["device"]
    ok = lambda b: "met" if b else "**missed**"  # noqa: E731
    lines = [
        "# Search speed: CIFAR-10 MobileNetV2 at 32x32 (onnxruntime CPU, 1 thread, batch 1)", "",
        f"Command: `{r['command']}` (under `flock /tmp/slimnas-cpu.lock`)  ",
        f"Device: {d.get('cpu')}, {d.get('cores')} cores, {d.get('os')}, torch {d.get('torch')}, {d.get('date')}", "",
        "| figure | measured | target | |", "|---|---|---|---|",
        f"| candidates evaluated (search wall {s['wall_s']:.0f} s, limit {s['minutes']:g} min) | {s['evaluations']} "
        f"({s['per_10_min']:.0f} per 10 min) | >= 300 in 10 min | {ok(r['met']['evaluations'])} |",
        f"| chosen subnet, measured latency (quietest-round median; p10-p90) | {c['median_ms']:.4f} ms "
        f"({c['p10_ms']:.4f}-{c['p90_ms']:.4f}) | <= budget {c['budget_ms']:.4f} ms | {ok(r['met']['measured_within_budget'])} |",
        f"| its repeat error (even vs odd rounds) | {c.get('repeat_pct', float('nan')):.2f}% | | |",
        f"| predicted (at the speed of the moment) vs measured | {c['predicted_now_ms']:.4f} vs {c['median_ms']:.4f} ms "
        f"({c['error_pct']:+.1f}%) | within 10% | {ok(r['met']['prediction_within_10pct'])} |",
        f"| original, measured in the same round | {c['original_now_ms']:.4f} ms (chosen/original {c['ratio_to_original']:.3f}) | | |",
        f"| chosen: supernet val top-1 ± SE / after {c.get('finetune_steps')} fine-tune steps: val, test | "
        f"{c['supernet_top1']:.4f} ± {c.get('supernet_se') or float('nan'):.4f} / {c['val_top1']:.4f}, {c['test_top1']:.4f} | | |",
        f"| chosen: share of the latency budget (measured), and why | {(c.get('budget_share') or float('nan')) * 100:.0f}%: "
        f"{c.get('pick_reason') or '–'} | | |",
        f"| original: val / test top-1 | {o.get('val_top1', float('nan')):.4f} / {o.get('test_top1', float('nan')):.4f} | | |",
        "",
        f"Each candidate is scored on {s['val_images']} validation images (carved from train/) after BN recalibration on "
        f"{s['calib_images']} training images; population {s['population']}. Stage times (s): "
        + ", ".join(f"{k} {v.get('wall_s', 0):.0f}" for k, v in r["stages_s"].items()) + f"; whole run {r['wall_s']:.0f} s.", "",
        "![pareto](pareto.png)", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
