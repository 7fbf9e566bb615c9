"""Which per-image estimator should a supernet score average? Top-1, minus the cross-entropy, or minus the KL
divergence to the teacher: the one that ranks subnets like a large held-out top-1 does, per validation image.

The shared CIFAR-10 MobileNetV2 checkpoint becomes a supernet (its own weights, no supernet training: what a
search sees of a checkpoint before or early in training); ``--subnets`` random subnets whose FLOPs lie in a band
below the original (``--band``, a budget's neighbourhood, where the pick is decided) are each scored once after
BN recalibration on 256 training images. The reference is each subnet's top-1 on ``--ref-images`` images of the
test split. The estimators are computed on ``--folds`` disjoint sets of ``--images`` validation images (carved
from train/, as the search does); reported per estimator: Kendall's tau with the reference (mean and sd over
the folds), the fraction of subnet pairs ordered like the reference among pairs the reference separates by more
than 1 point, and the median |paired difference| / paired SE over all pairs (how decisively the estimator
separates candidates on that many images: higher is better).

    flock /tmp/slimnas-cpu.lock python benchmarks/fitness_estimators.py     # the committed run
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT.parent / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"


def logits_of(net, batches) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(x).float() for x, _ in batches])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fitness_estimators"))
    p.add_argument("--subnets", type=int, default=16)
    p.add_argument("--band", type=float, nargs=2, default=(0.8, 0.97), help="FLOPs band, fractions of the original")
    p.add_argument("--images", type=int, default=500, help="validation images per fold")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--ref-images", type=int, default=4000, help="test images of the reference top-1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not CKPT.is_file():
        print(f"error: {CKPT} not found (needs ../shared)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from scipy.stats import kendalltau

    import slimnas
    from slimnas.data import DataConfig, load_data
    from slimnas.evaluate import Evaluator, bn_state_restored, recalibrate_bn
    from slimnas.fileio import atomic_write_text
    from slimnas.machine import fingerprint
    from slimnas.models import load_model

    t0 = time.time()
    data = load_data(DataConfig("cifar10", image_size=32, val_fraction=0.1, seed=args.seed))
    model = load_model("mobilenet_v2", num_classes=10, weights=str(CKPT)).eval()
    net = slimnas.convert(model, 32).eval()
    n_val = args.images * args.folds
    ev = Evaluator(data.calib, data.val, calib_images=256, val_images=n_val, batch_size=250, seed=args.seed)
    ref = Evaluator(data.calib, data.test, calib_images=256, val_images=args.ref_images, batch_size=250, seed=args.seed)
    y_val = torch.cat([y for _, y in ev.val])
    y_ref = torch.cat([y for _, y in ref.val])
    with net.use(net.space.original()):
        teacher = F.log_softmax(logits_of(net, ev.val), 1)
    full = net.flops(net.space.original())
    rng = random.Random(args.seed)
    subs, seen = [], set()
    for _ in range(200 * args.subnets):  # bounded: uniform random subnets rarely reach a high FLOPs band
        if len(subs) >= args.subnets:
            break
        s = net.space.uniform(rng.uniform(0.7, 1.0))
        for _ in range(rng.randint(1, 4)):
            s = net.space.mutate(s, 0.2, rng)
        share = net.flops(s) / full
        if args.band[0] <= share <= args.band[1] and s.hash not in seen:
            seen.add(s.hash)
            subs.append(s)
    if len(subs) < args.subnets:
        print(f"error: only {len(subs)} subnets found in the FLOPs band {args.band}: widen --band", file=sys.stderr)
        return 2
    rows = []
    for s in subs:
        with net.use(s), bn_state_restored(net):
            recalibrate_bn(net, ev.calib)
            out = logits_of(net, ev.val)
            out_ref = logits_of(net, ref.val)
        logp = F.log_softmax(out, 1)
        rows.append({"hash": s.hash, "flops_share": net.flops(s) / full,
                     "ref_top1": float((out_ref.argmax(1) == y_ref).float().mean()),
                     "top1": (out.argmax(1) == y_val).double().numpy(),
                     "loss": -F.nll_loss(logp, y_val, reduction="none").double().numpy(),
                     "kl": -(teacher.exp() * (teacher - logp)).sum(1).double().numpy()})
        print(f"{s.hash}: flops {rows[-1]['flops_share']:.3f}, ref top-1 {rows[-1]['ref_top1']:.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    reference = np.array([r["ref_top1"] for r in rows])
    results = {}
    for est in ("top1", "loss", "kl"):
        taus, agree, zs = [], [], []
        for f in range(args.folds):
            sl = slice(f * args.images, (f + 1) * args.images)
            v = np.stack([r[est][sl] for r in rows])
            taus.append(float(kendalltau(v.mean(1), reference).statistic))
            for i, j in itertools.combinations(range(len(rows)), 2):
                d = v[i] - v[j]
                se = d.std(ddof=1) / math.sqrt(len(d))
                zs.append(abs(d.mean()) / se if se > 0 else 0.0)
                if abs(reference[i] - reference[j]) > 0.01:
                    agree.append(np.sign(d.mean()) == np.sign(reference[i] - reference[j]))
        results[est] = {"kendall_tau_mean": float(np.mean(taus)), "kendall_tau_sd": float(np.std(taus, ddof=1)),
                        "pair_agreement": float(np.mean(agree)) if agree else float("nan"), "pairs_judged": len(agree) // args.folds,
                        "median_paired_z": float(np.median(zs))}
    wall = time.time() - t0
    command = "python benchmarks/fitness_estimators.py " + " ".join(sys.argv[1:])
    result = {"command": command, "device": fingerprint(threads=args.threads), "wall_s": wall, "args": vars(args),
              "reference_top1": {"min": float(reference.min()), "max": float(reference.max()),
                                 "se_at_mean": float(math.sqrt(reference.mean() * (1 - reference.mean()) / args.ref_images))},
              "estimators": results,
              "subnets": [{k: r[k] for k in ("hash", "flops_share", "ref_top1")} for r in rows]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    d = result["device"]
    lines = ["# Fitness estimators: which per-image value ranks subnets best", "",
             f"Command: `{command}` (under `flock /tmp/slimnas-cpu.lock`)  ",
             f"Device: {d.get('cpu')}, {d.get('cores')} cores, torch {d.get('torch')}, {d.get('date')}; wall {wall:.0f} s", "",
             f"{len(rows)} random subnets of the CIFAR-10 MobileNetV2 checkpoint (no supernet training) with FLOPs "
             f"{args.band[0]:.2f}-{args.band[1]:.2f}x of the original; reference: top-1 on {args.ref_images} test images "
             f"({reference.min():.4f}-{reference.max():.4f}, SE about {result['reference_top1']['se_at_mean'] * 100:.1f} pt); "
             f"estimators on {args.folds} disjoint folds of {args.images} validation images.", "",
             "| estimator (per image) | Kendall tau vs reference (mean ± sd over folds) | pairs ordered as the reference "
             "(pairs it separates by > 1 pt) | median paired z over all pairs |", "|---|---|---|---|"]
    names = {"top1": "top-1 (1 if right)", "loss": "minus cross-entropy", "kl": "minus KL to the teacher (the original)"}
    for est, r in results.items():
        lines.append(f"| {names[est]} | {r['kendall_tau_mean']:.3f} ± {r['kendall_tau_sd']:.3f} | "
                     f"{r['pair_agreement']:.3f} ({r['pairs_judged']} pairs) | {r['median_paired_z']:.2f} |")
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
