"""Supernet accuracy against training steps, per distillation variant: which teacher, and how many steps.

Trains the sandwich supernet of the shared CIFAR-10 MobileNetV2 checkpoint (32 px, a balanced training subset,
a validation split carved from train/) once per variant:

- ``inplace``: in-place distillation from the widest only (the default before the frozen teacher);
- ``teacher``: the frozen original checkpoint teaches every subnet (``teacher=original``), no in-place term;
- ``both``: the original teaches the widest, the widest and the original teach the others (``teacher=both``).

At the chosen step counts the widest, a median (uniform 0.6) and the narrowest subnet are scored on the same
validation images after BatchNorm recalibration on the same training images. Each accuracy comes with its
standard error sqrt(p(1-p)/N); differences between variants are paired on the images (the same images for all).
One schedule per variant (warm-up, then cosine over ``--steps``): the accuracy at step s is that run's at step s,
not that of a run of s steps. A killed run resumes per variant (epoch checkpoints in ``--work``).

    flock /tmp/slimnas-cpu.lock python benchmarks/supernet_curve.py --out benchmarks/results/supernet_curve
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from slimnas.data import DataConfig, load_data
from slimnas.evaluate import Evaluator, bn_state_restored, recalibrate_bn
from slimnas.fileio import atomic_write_text
from slimnas.machine import fingerprint
from slimnas.models import load_model
from slimnas.space import SpaceConfig
from slimnas.supernet import ConvertConfig, convert
from slimnas.train import TrainConfig, Trainer, make_strategy

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT.parent / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"
VARIANTS = {
    "inplace": {},
    "teacher": {"teacher": "original"},
    "both": {"teacher": "both"},
}
SUBNETS = ("widest", "median", "narrowest")


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n)


@torch.no_grad()
def score(net, subnet, ev: Evaluator) -> tuple[np.ndarray, float]:
    """Per-image correctness and mean cross-entropy of ``subnet`` after BN recalibration (statistics restored)."""
    with net.use(subnet), bn_state_restored(net):
        recalibrate_bn(net, ev.calib)
        net.eval()
        correct, loss, n = [], 0.0, 0
        for x, y in ev.val:
            out = net(x).float()
            correct.append((out.argmax(1) == y).numpy())
            loss += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            n += len(y)
        net.train()
    return np.concatenate(correct), loss / n


class _Pause(Exception):
    pass


class CurveTrainer(Trainer):
    """Scores the three subnets at the epoch ends that fall on a requested step count (the trainer's report hook),
    and pauses after the checkpoint at ``stop`` (the variants advance in turns; a new trainer resumes the run)."""

    def __init__(self, *args, at: set[int], stop: int, sink, **kw):
        super().__init__(*args, **kw)
        self.at, self.stop, self.sink = at, stop, sink

    def _report(self) -> dict[str, float]:
        if self.step in self.at:
            self.sink(self.step, self.model)
        return {}

    def save_checkpoint(self) -> None:
        super().save_checkpoint()
        if self.step >= self.stop and self.epoch < self.config.epochs:
            raise _Pause


def run_variant(name: str, args, data, ev: Evaluator, work: Path, rows: list[dict], correct: dict, stop: int) -> float:
    """Train variant ``name`` up to step ``stop`` (resuming its run), scoring at the requested steps; seconds spent."""
    ck = work / name / "checkpoint.pt"
    if ck.is_file() and torch.load(ck, map_location="cpu", weights_only=True)["step"] >= stop:
        return 0.0
    torch.manual_seed(0)
    teacher = load_model("mobilenet_v2", num_classes=10, weights=str(CHECKPOINT)).eval()
    net = convert(teacher, 32, ConvertConfig(space=SpaceConfig()))  # convert copies: the teacher stays the original
    space = net.space
    subnets = {"widest": space.max(), "median": space.uniform(0.6), "narrowest": space.min()}
    options = {"n_random": args.n_random}
    if VARIANTS[name]:
        options.update(teacher_alpha=args.teacher_alpha, temperature=args.temperature, **VARIANTS[name])
    strategy = make_strategy("sandwich", net, **options)
    cfg = TrainConfig(epochs=args.steps // args.every, steps_per_epoch=args.every, batch_size=args.batch_size,
                      optimizer="sgd", lr=args.lr, momentum=0.9, weight_decay=4e-5, warmup_fraction=0.1,
                      label_smoothing=0.1, eval_images=1, seed=0, progress=False)

    def sink(step: int, model) -> None:
        if all((name, step, s) in correct for s in SUBNETS):
            return
        for label, sub in subnets.items():
            c, loss = score(model, sub, ev)
            p = float(c.mean())
            rows[:] = [r for r in rows if (r["variant"], r["step"], r["subnet"]) != (name, step, label)]
            rows.append({"variant": name, "step": step, "subnet": label, "flops_m": round(net.flops(sub) / 1e6, 3),
                         "top1": round(p, 4), "se": round(se(p, len(c)), 4), "val_loss": round(loss, 4), "n": len(c)})
            correct[(name, step, label)] = c
            print(f"{name:8s} step {step:4d} {label:9s} top1 {p:.4f} ± {se(p, len(c)):.4f}  loss {loss:.3f}", flush=True)
        save(args.out, rows, correct, args)

    if 0 in args.at:
        sink(0, net)
    t0 = time.time()
    trainer = CurveTrainer(net, strategy, data, cfg, run_dir=work / name, device="cpu",
                           teacher=teacher if strategy.wants_teacher() else None,
                           at={s for s in args.at if s > 0}, stop=stop, sink=sink)
    try:
        trainer.fit(resume=True)
    except _Pause:
        pass
    return time.time() - t0


def save(out: Path, rows: list[dict], correct: dict, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (list(VARIANTS).index(r["variant"]), r["step"], SUBNETS.index(r["subnet"])))
    with open(out / "curve.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "curve.csv.tmp").replace(out / "curve.csv")
    atomic_write_text(out / "correct.json", json.dumps({"|".join(map(str, k)): np.packbits(v).tobytes().hex()
                                                        for k, v in sorted(correct.items())}))


def load_previous(out: Path) -> tuple[list[dict], dict]:
    rows, correct = [], {}
    if (out / "curve.csv").is_file():
        with open(out / "curve.csv") as f:
            for r in csv.DictReader(f):
                rows.append({**r, "step": int(r["step"]), "flops_m": float(r["flops_m"]), "top1": float(r["top1"]),
                             "se": float(r["se"]), "val_loss": float(r["val_loss"]), "n": int(r["n"])})
    if (out / "correct.json").is_file():
        for k, v in json.loads((out / "correct.json").read_text()).items():
            name, step, label = k.split("|")
            n = next(r["n"] for r in rows if r["variant"] == name)
            correct[(name, int(step), label)] = np.unpackbits(np.frombuffer(bytes.fromhex(v), np.uint8))[:n].astype(bool)
    return rows, correct


def write_meta(path: Path, args, data, rows: list[dict], correct: dict, seconds: dict) -> None:
    skip = ("out", "work", "variants", "at", "summarize")
    meta = {"command": "flock /tmp/slimnas-cpu.lock python benchmarks/supernet_curve.py " +
                       " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                if k not in skip and v is not None) +
                       f" --at {','.join(map(str, args.at))}",
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "data": {"train": len(data.train), "scored": args.val_images, "scored_on": args.score_on,
                     "calib": args.calib_images},
            "variants": {n: {"n_random": args.n_random, **VARIANTS[n],
                             **({"teacher_alpha": args.teacher_alpha, "temperature": args.temperature} if VARIANTS[n] else {})}
                         for n in VARIANTS},
            "fingerprint": fingerprint(args.threads), "train_seconds": seconds,
            "paired_vs_inplace": [p for s in args.at if s > 0 for p in paired(correct, s)],
            "rows": sorted(rows, key=lambda r: (list(VARIANTS).index(r["variant"]), r["step"], SUBNETS.index(r["subnet"])))}
    atomic_write_text(path, json.dumps(meta, indent=1))


def paired(correct: dict, step: int) -> list[dict]:
    """Per subnet, every variant against ``inplace`` at ``step``: the paired difference and its standard error."""
    out = []
    for label in SUBNETS:
        base = correct.get(("inplace", step, label))
        for name in VARIANTS:
            c = correct.get((name, step, label))
            if base is None or c is None or name == "inplace":
                continue
            d = c.astype(float) - base.astype(float)
            out.append({"step": step, "subnet": label, "variant": name, "minus": "inplace", "diff": round(float(d.mean()), 4),
                        "se": round(float(d.std(ddof=1) / math.sqrt(len(d))), 4)})
    return out


def summary(meta: dict) -> str:
    """Markdown tables of curve.json: top-1 ± s.e. per subnet, step and variant; paired differences to inplace."""
    rows = meta["rows"]
    names = [n for n in VARIANTS if any(r["variant"] == n for r in rows)]
    lines = []
    for label in SUBNETS:
        sel = [r for r in rows if r["subnet"] == label]
        if not sel:
            continue
        lines += [f"**{label}** ({sel[0]['flops_m']} MFLOPs), top-1 % ± s.e.:", "",
                  "| step | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for step in sorted({r["step"] for r in sel}):
            cells = []
            for n in names:
                r = next((r for r in sel if r["variant"] == n and r["step"] == step), None)
                cells.append(f"{100 * r['top1']:.1f} ± {100 * r['se']:.1f}" if r else "")
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        lines.append("")
    pairs = meta.get("paired_vs_inplace", [])
    if pairs:
        lines += ["Paired differences to `inplace` (points, same images; ± s.e. of the paired difference):", "",
                  "| step | subnet | variant | diff |", "|---:|---|---|---:|"]
        lines += [f"| {p['step']} | {p['subnet']} | {p['variant']} | {100 * p['diff']:+.1f} ± {100 * p['se']:.1f} |"
                  for p in pairs]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
    for ax, label in zip(axes, SUBNETS):
        for name in VARIANTS:
            pts = sorted((r["step"], r["top1"], r["se"]) for r in rows if r["variant"] == name and r["subnet"] == label)
            if pts:
                s, p, e = zip(*pts)
                ax.errorbar(s, [100 * v for v in p], yerr=[100 * v for v in e], marker="o", capsize=3, label=name)
        ax.set_title(f"{label} subnet")
        ax.set_xlabel("supernet training steps")
        ax.set_ylabel("top-1 on the scored images (%), ± 1 s.e.")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "supernet_curve")
    ap.add_argument("--work", type=Path, default=Path("/tmp/slimnas-supernet-curve"), help="epoch checkpoints (resume)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=50, help="steps per epoch (scores fall on epoch ends)")
    ap.add_argument("--at", default="0,50,100,200,400", help="step counts scored")
    ap.add_argument("--train-images", type=int, default=5000)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--n-random", type=int, default=2)
    ap.add_argument("--teacher-alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-min", type=float, default=25.0, help="no new round of steps past this many minutes")
    ap.add_argument("--score-on", choices=("test", "val"), default="test",
                    help="images scored: --val-images of the CIFAR-10 test split, or the validation split of train/")
    ap.add_argument("--deadline", help="HH:MM (UTC): no new round that would end after it")
    ap.add_argument("--summarize", action="store_true", help="print the tables of --out/curve.json and exit")
    args = ap.parse_args()
    if args.summarize:
        print(summary(json.loads((args.out / "curve.json").read_text())))
        return
    args.at = sorted({int(s) for s in args.at.split(",")})
    if args.steps % args.every or any(s % args.every for s in args.at):
        raise SystemExit("--steps and every --at must be multiples of --every")
    if not CHECKPOINT.is_file():
        raise SystemExit(f"needs the shared CIFAR-10 checkpoint {CHECKPOINT}")
    torch.set_num_threads(args.threads)
    data = load_data(DataConfig("cifar10", image_size=32, train_subset=args.train_images, val_subset=args.val_images,
                                test_subset=args.val_images, seed=0))
    # the checkpoint was trained on all 50,000 train/ images, validation split included: scores on train/ images
    # would reward remembering them, so --score-on test (held-out CIFAR-10 test images) is the default
    scored = data.test if args.score_on == "test" else data.val
    ev = Evaluator(data.calib, scored, calib_images=args.calib_images, val_images=None, device="cpu", seed=0)
    rows, correct = load_previous(args.out)
    seconds = {}
    meta_path = args.out / "curve.json"
    if meta_path.is_file():
        seconds = json.loads(meta_path.read_text()).get("train_seconds", {})
    names = args.variants.split(",")
    begun = time.time()
    end = None
    if args.deadline:
        now = datetime.datetime.now(datetime.timezone.utc)
        h, m = map(int, args.deadline.split(":"))
        at = now.replace(hour=h, minute=m, second=0, microsecond=0)
        end = (at if at > now else at + datetime.timedelta(days=1)).timestamp()
    stops = [s for s in args.at if s > 0]
    for i, stop in enumerate(stops):  # the variants advance in turns, so a run cut short compares equal steps
        t_round = time.time()
        for name in names:
            took = run_variant(name, args, data, ev, args.work, rows, correct, stop)
            seconds[name] = round(seconds.get(name, 0.0) + took, 1)
            write_meta(meta_path, args, data, rows, correct, seconds)
            plot(rows, args.out / "curve.png")
        took = time.time() - t_round
        if i + 1 < len(stops):
            expect = took * (stops[i + 1] - stop) / (stop - (stops[i - 1] if i else 0))
            if time.time() - begun + expect > args.budget_min * 60 or (end is not None and time.time() + expect > end):
                print(f"stopping at step {stop}: the next round would take about {expect / 60:.1f} min, past the "
                      f"{args.budget_min} min budget or the deadline", flush=True)
                break
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
