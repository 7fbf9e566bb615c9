"""Issue 13, item 4: does the supernet rank the subnets NEAR THE BUDGET the way their fine-tuned accuracy does?

The pick happens among candidates that nearly fill the budget, so that is where the ranking has to hold. This
takes one finished headline slimnas arm (its supernet and the ``slim`` run of one budget), takes the subnets its
search scored whose predicted latency lies between ``--lo`` and ``--hi`` of the budget (default 85%-100% of the
0.5x budget), picks ``--subnets`` of them spread evenly over their supernet scores, and gives each the headline
profile's fine-tune (the same recipe as every headline model: 4 x 300 steps, distilled from the base, the seed
of the arm) and the headline's test score (all 10,000 CIFAR-10 test images, BN re-estimated). It reports
Kendall's tau between the supernet estimates (validation top-1, and validation cross-entropy with its sign
flipped) and the fine-tuned test top-1, with every estimate's standard error. Each subnet's fine-tune is
cached in ``--work``: rerun the same command to resume. The supernet is the one the slim run searched (its
``config.yaml``), so a variant arm (``ARM:depth=1``) needs no ``--supernet``.

    flock /tmp/slimnas-cpu.lock env PYTHONPATH=. python benchmarks/near_budget_rank.py \\
        --arm runs/headline/quick/slimnas-bsnas/seed0 --budget 0.5x --subnets 12 --out benchmarks/results/near_budget_rank
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

SHARED_WEIGHTS = HERE.parents[1] / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"


def band_candidates(slim_run: Path, fraction: float, lo: float, hi: float):
    """The search's scored subnets whose predicted latency is within [lo, hi] of ``fraction`` x the original,
    the original as timed in that slim run (``median_ms`` of its row in verify.csv), with their fitness records."""
    import pandas as pd

    hist = pd.read_csv(slim_run / "search_history.csv").drop_duplicates("hash")
    verify = pd.read_csv(slim_run / "verify.csv")
    original_ms = float(verify.loc[verify["model"] == "original", "median_ms"].iloc[0])
    budget_ms = fraction * original_ms
    fit = {}
    for line in (slim_run / "fitness.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a torn last line
            continue
        fit[rec["hash"]] = {k: rec[k] for k in ("accuracy", "loss", "n", "se_top1", "se_loss") if k in rec}
    hist["share"] = hist["latency_ms"] / budget_ms
    band = hist[(hist["share"] >= lo) & (hist["share"] <= hi) & hist["hash"].isin(list(fit))].copy()
    return band, fit, budget_ms, original_ms


def spread(band, n: int):
    """``n`` rows evenly spaced over the band's supernet scores (ranks), the best and the worst included."""
    import numpy as np

    band = band.sort_values(["accuracy", "hash"]).reset_index(drop=True)
    if len(band) <= n:
        return band
    idx = sorted(set(np.linspace(0, len(band) - 1, n).round().astype(int).tolist()))
    return band.iloc[idx].reset_index(drop=True)


def searched_supernet(slim_run: Path) -> Path | None:
    """The supernet run that ``slim_run`` searched (``supernet.run`` of its ``config.yaml``, read as slimnas reads it
    on resume), or None if it names none."""
    from slimnas.pipeline.config import load_config
    from slimnas.pipeline.prepare import CONFIG

    config = slim_run / CONFIG
    run = load_config(config).supernet.run if config.is_file() else None
    return Path(run) if run else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", type=Path, required=True, help="a headline slimnas arm's seed folder (supernet/ and BUDGET/slim/)")
    p.add_argument("--supernet", type=Path, help="the arm's trained supernet run (default: the one the slim run of "
                   "--budget searched, its config.yaml's supernet.run; a variant arm's lies under the base arm, e.g. "
                   "runs/headline/W/slimnas-bsnas/seed0/supernet[depth=1:...])")
    p.add_argument("--budget", default="0.5x", help="the budget folder of that arm (default 0.5x)")
    p.add_argument("--lo", type=float, default=0.85, help="lowest predicted share of the budget (default 0.85)")
    p.add_argument("--hi", type=float, default=1.0, help="highest predicted share of the budget (default 1.0)")
    p.add_argument("--subnets", type=int, default=12)
    p.add_argument("--finetune", metavar="EPOCHSxSTEPS", help="replace the headline recipe's length (a plumbing check: 1x2)")
    p.add_argument("--seed", type=int, help="fine-tune seed (default: the arm folder's seedN)")
    p.add_argument("--weights", type=Path, default=SHARED_WEIGHTS, help="the headline's base checkpoint (the teacher)")
    p.add_argument("--work", type=Path, help="fine-tune cache (default ARM/near_budget_rank)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    from slimnas.errors import SlimnasError

    slim_run = args.arm / args.budget / "slim"
    try:
        args.supernet = args.supernet or searched_supernet(slim_run) or args.arm / "supernet"
        for need in (args.supernet, slim_run / "search_history.csv", slim_run / "verify.csv", args.weights):
            if not need.exists():
                raise SlimnasError(f"{need} not found: --arm must be a finished headline slimnas arm "
                                   "(runs/headline/quick/slimnas-bsnas/seed0), --supernet its supernet run "
                                   "and --weights the base checkpoint")
        if args.subnets < 3 or not 0 < args.lo < args.hi:
            raise SlimnasError("--subnets must be at least 3 and 0 < --lo < --hi")
        fraction = float(args.budget.rstrip("x"))
        if args.finetune:
            from headline_lib.profiles import parse_finetune

            parse_finetune(args.finetune)
    except (SlimnasError, ValueError) as exc:
        print(f"near_budget_rank: error: {exc}", file=sys.stderr)
        return 2
    return run(args, slim_run, fraction)


def run(args, slim_run: Path, fraction: float) -> int:
    from dataclasses import replace

    import torch
    from scipy.stats import kendalltau

    from headline_lib.finetune import finetune, flops_params, test_evaluator
    from headline_lib.methods.base import plain_copy
    from headline_lib.profiles import get_profile
    from headline_lib.runner import ARCH, INPUT_SHAPE, NUM_CLASSES
    from slimnas.data import DataConfig, load_data
    from slimnas.export import export_subnet, load_exported, save_exported
    from slimnas.fileio import atomic_write_text
    from slimnas.latency.fingerprint import machine
    from slimnas.machine import fingerprint
    from slimnas.models import load_model
    from slimnas.subnet import Subnet
    from slimnas.train.run import load_run

    seed = args.seed if args.seed is not None else int(args.arm.name.removeprefix("seed") or 0)
    work = args.work or args.arm / "near_budget_rank"
    work.mkdir(parents=True, exist_ok=True)
    profile = get_profile("quick", finetune=args.finetune)
    band, fit, budget_ms, original_ms = band_candidates(slim_run, fraction, args.lo, args.hi)
    picked = spread(band, args.subnets)
    print(f"{len(band)} scored subnets predicted at {args.lo:.0%}-{args.hi:.0%} of the {args.budget} budget "
          f"({budget_ms:.4f} ms); fine-tuning {len(picked)} spread over their scores", flush=True)
    data = load_data(DataConfig("cifar10", image_size=INPUT_SHAPE[1], val_subset=profile.val_subset, seed=0))
    base = load_model(ARCH, num_classes=NUM_CLASSES, weights=str(args.weights)).eval()
    evaluator = test_evaluator(data, profile.calib_images, torch.device("cpu"))
    _, net, _, _ = load_run(args.supernet, "cpu")
    recipe = replace(profile.finetune, seed=seed)
    rows, t_all = [], time.time()
    for i, r in enumerate(picked.itertuples(), 1):
        folder = work / r.hash
        done = folder / "result.json"
        if done.is_file():
            rows.append(json.loads(done.read_text()))
            continue
        t0 = time.time()
        model = plain_copy(base, export_subnet(net, Subnet.from_json(r.subnet)))
        model = finetune(model, data, recipe, folder / "finetune", torch.device("cpu"), teacher=base if profile.distill else None)
        save_exported(model, folder / "final.pt", arch=ARCH, num_classes=NUM_CLASSES)
        top1 = evaluator.evaluate_model(load_exported(folder / "final.pt"), recalibrate=True).top1
        macs, params = flops_params(model, INPUT_SHAPE)
        f = fit[r.hash]
        row = {"hash": r.hash, "predicted_ms": float(r.latency_ms), "budget_share": float(r.share), "mflops": macs / 1e6,
               "params_m": params / 1e6, "supernet_top1": f["accuracy"], "supernet_se_top1": f.get("se_top1"),
               "supernet_loss": f.get("loss"), "supernet_se_loss": f.get("se_loss"), "val_images": f.get("n"),
               "test_top1": top1, "finetune_s": time.time() - t0}
        atomic_write_text(done, json.dumps(row, indent=1) + "\n")
        rows.append(row)
        print(f"[{i}/{len(picked)}] {r.hash}: {r.share:.0%} of the budget, supernet {f['accuracy']:.3f} ± "
              f"{f.get('se_top1', float('nan')):.3f}, fine-tuned test top-1 {top1:.4f} ({time.time() - t0:.0f} s)", flush=True)
    s_top1 = [r["supernet_top1"] for r in rows]
    s_loss = [-r["supernet_loss"] for r in rows]
    test = [r["test_top1"] for r in rows]
    tau = {"supernet_top1_vs_test": kendalltau(s_top1, test), "minus_supernet_loss_vs_test": kendalltau(s_loss, test)}
    result = {
        "command": "python benchmarks/near_budget_rank.py " + " ".join(sys.argv[1:]),
        "fingerprint": {**fingerprint(torch.get_num_threads()), **machine()}, "arm": str(args.arm), "budget": args.budget,
        "band": [args.lo, args.hi], "budget_ms": budget_ms, "original_ms_in_slim_run": original_ms,
        "band_candidates": len(band), "finetune": recipe.to_dict(), "distill": profile.distill, "seed": seed,
        "kendall_tau": {k: {"tau": float(v.statistic), "p": float(v.pvalue)} for k, v in tau.items()},
        "test_top1_range": [min(test), max(test)], "supernet_top1_range": [min(s_top1), max(s_top1)],
        "rows": sorted(rows, key=lambda r: r["supernet_top1"]), "wall_s_this_invocation": time.time() - t_all,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "result.json", json.dumps(result, indent=1, default=str) + "\n")
    write_markdown(result, args.out / "results.md")
    plot(result, args.out / "rank.png")
    print(f"Kendall tau (supernet top-1 vs fine-tuned test top-1) {result['kendall_tau']['supernet_top1_vs_test']['tau']:.3f}; "
          f"wrote {args.out}/result.json, results.md, rank.png")
    return 0


def write_markdown(res: dict, path: Path) -> None:
    from slimnas.fileio import atomic_write_text

    t = res["kendall_tau"]
    lines = ["# Ranking near the budget: supernet estimate vs fine-tuned test accuracy", "",
             f"Command (repository root, `PYTHONPATH=.`): `{res['command']}`", "",
             f"Arm `{res['arm']}`, budget {res['budget']} ({res['budget_ms']:.4f} ms predicted-latency budget; the original "
             f"timed at {res['original_ms_in_slim_run']:.4f} ms in that slim run). {res['band_candidates']} scored subnets "
             f"predicted at {res['band'][0]:.0%}-{res['band'][1]:.0%} of the budget; {len(res['rows'])} spread over their scores "
             f"fine-tuned with the headline quick recipe ({res['finetune']['epochs']} x {res['finetune']['steps_per_epoch']} steps, "
             f"{'distilled from the base' if res['distill'] else 'labels only'}, seed {res['seed']}); test top-1 on all CIFAR-10 "
             "test images after BN re-estimation.", "",
             f"- **Kendall tau, supernet validation top-1 vs fine-tuned test top-1: {t['supernet_top1_vs_test']['tau']:.3f}** "
             f"(p = {t['supernet_top1_vs_test']['p']:.3f})",
             f"- Kendall tau, minus supernet validation cross-entropy vs fine-tuned test top-1: "
             f"{t['minus_supernet_loss_vs_test']['tau']:.3f} (p = {t['minus_supernet_loss_vs_test']['p']:.3f})",
             f"- Range of the supernet scores {100 * res['supernet_top1_range'][0]:.1f}-{100 * res['supernet_top1_range'][1]:.1f}%, "
             f"of the fine-tuned test top-1 {100 * res['test_top1_range'][0]:.2f}-{100 * res['test_top1_range'][1]:.2f}%.", "",
             f"Machine: {res['fingerprint'].get('cpu')} ({res['fingerprint'].get('cores')} cores), torch {res['fingerprint'].get('torch')}, "
             f"{res['fingerprint'].get('date')}.", "",
             "| subnet | share of budget (predicted) | MFLOPs | supernet top-1 ± s.e. | supernet loss ± s.e. | fine-tuned test top-1 |",
             "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| `{r['hash']}` | {r['budget_share']:.0%} | {r['mflops']:.2f} | {100 * r['supernet_top1']:.1f} ± "
                     f"{100 * (r['supernet_se_top1'] or 0):.1f} | {r['supernet_loss']:.3f} ± {r['supernet_se_loss'] or 0:.3f} | "
                     f"{100 * r['test_top1']:.2f} |")
    atomic_write_text(path, "\n".join(lines) + "\n\n![rank](rank.png)\n")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimnas.fileio import atomic_path

    rows = res["rows"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.errorbar([100 * r["supernet_top1"] for r in rows], [100 * r["test_top1"] for r in rows],
                xerr=[100 * (r["supernet_se_top1"] or 0) for r in rows], fmt="o", capsize=2)
    ax.set(xlabel="supernet estimate: validation top-1 (%) ± s.e.", ylabel="fine-tuned CIFAR-10 test top-1 (%)",
           title=f"Near the {res['budget']} budget: Kendall tau {res['kendall_tau']['supernet_top1_vs_test']['tau']:.2f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
