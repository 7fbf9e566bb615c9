"""An ablation ladder from a headline run: what each rung (one change on top of the one before) bought, paired by seed.

The rungs are methods of one `benchmarks/headline.py` results.json at one budget, in ladder order; each step is the
difference of test top-1 between a rung and the one before it fine-tuned with the same seed (mean, s.e. = sd /
sqrt(seeds), each seed), beside each rung's share of the budget in the closing run and its lead over a peer.

    python benchmarks/headline_ladder.py benchmarks/results/headline/ladder-xeon/results.json --budget 0.5 \
        --rung "old pick=slimnas-bsnas:...:verify_margin_se=0:verify_fill=0.01" --rung "pick rule=slimnas-bsnas:..." \
        --out benchmarks/results/headline/ladder-xeon/ladder
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from headline_lib.report import SPEND, paired, table_rows

from slimnas.errors import SlimnasError
from slimnas.fileio import atomic_path, atomic_write_text


def parse_rung(text: str) -> tuple[str, str]:
    label, sep, method = text.partition("=")
    if not sep or not label.strip() or not method.strip():
        raise SlimnasError(f"--rung {text!r}: write LABEL=METHOD, e.g. 'pick rule=slimnas-bsnas:depth=1'")
    return label.strip(), method.strip()


def _mean_se(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan"))


def ladder(results: dict, rungs: list[tuple[str, str]], frac: float, peer: str) -> dict:
    rows = [r for r in table_rows(results) if abs(r["fraction"] - frac) < 1e-9]
    methods = {r["method"] for r in rows}
    missing = [m for _, m in rungs if m not in methods]
    if missing:
        raise SlimnasError(f"not in this run at {frac:g}x: {', '.join(missing)}; methods there: {', '.join(sorted(methods))}")
    out = []
    for i, (label, method) in enumerate(rungs):
        mine = [r for r in rows if r["method"] == method]
        top1 = {r.get("seed", 0): 100 * r["test_top1"] for r in mine if r["meets_budget"]}
        shares = {r.get("seed", 0): r["latency_ratio"] / frac for r in mine}
        mean = statistics.fmean(top1.values()) if top1 else float("nan")
        entry = {"label": label, "method": method, "top1": top1, "top1_mean": mean,
                 "top1_sd": statistics.stdev(top1.values()) if len(top1) > 1 else float("nan"), "share": shares,
                 "share_min": min(shares.values()), "share_mean": statistics.fmean(shares.values()),
                 "spends": sum(s >= SPEND for s in shares.values())}
        if i:
            step = paired(rows, method, rungs[i - 1][1], frac)
            entry["step"] = step
            entry["step_mean"], entry["step_se"] = _mean_se(list(step.values())) if step else (float("nan"), float("nan"))
        vs = paired(rows, method, peer, frac) if peer in methods else {}
        if vs:
            entry["vs_peer"] = vs
            entry["vs_peer_mean"], entry["vs_peer_se"] = _mean_se(list(vs.values()))
        out.append(entry)
    peer_rows = [r for r in rows if r["method"] == peer and r["meets_budget"]]
    return {"budget": frac, "peer": peer, "rungs": out, "base_top1": 100 * results["base"]["test_top1"],
            "peer_top1_mean": statistics.fmean(100 * r["test_top1"] for r in peer_rows) if peer_rows else None}


def _pm(mean: float, se: float) -> str:
    return f"{mean:+.2f}" + ("" if math.isnan(se) else f" ± {se:.2f}")


def markdown(lad: dict) -> str:
    peer = lad["peer"]
    lines = [f"# Ablation ladder at {lad['budget']:g}x (base {lad['base_top1']:.2f})", "",
             ("Each rung adds one change to the rung above; the step is its test top-1 minus the rung above's, fine-tuned "
             f"with the same seed (mean ± s.e., s.e. = sd / sqrt(seeds)). Share: the closing run's ratio / the budget "
             f"(spends: at least {SPEND:.0%})."), "",
             (f"| rung | test top-1 mean ± sd | step (pt) | each seed's step | vs {peer} (pt) | share of budget: mean (min) | "
             f"spends >= {SPEND:.0%} |"), "|---|---|---|---|---|---|---|"]
    for e in lad["rungs"]:
        step = _pm(e["step_mean"], e["step_se"]) if "step" in e else "—"
        each = ", ".join(f"{v:+.2f}" for v in e["step"].values()) if "step" in e else ""
        vs = _pm(e["vs_peer_mean"], e["vs_peer_se"]) if "vs_peer" in e else "—"
        sd = "" if math.isnan(e["top1_sd"]) else f" ± {e['top1_sd']:.2f}"
        lines.append(f"| {e['label']} | {e['top1_mean']:.2f}{sd} | {step} | {each} | {vs} | {e['share_mean']:.1%} "
                     f"({e['share_min']:.1%}) | {e['spends']} of {len(e['share'])} |")
    lines += ["", "Methods:", *[f"- {e['label']}: `{e['method']}`" for e in lad["rungs"]], ""]
    return "\n".join(lines)


def plot(lad: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rungs = lad["rungs"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rungs), 4))
    for i, e in enumerate(rungs):
        vals = list(e["top1"].values())
        ax.scatter([i] * len(vals), vals, color="grey", s=14, alpha=0.7, zorder=2)
        ax.errorbar([i], [e["top1_mean"]], yerr=[0 if math.isnan(e["top1_sd"]) else e["top1_sd"]], fmt="o",
                    color="tab:purple", capsize=4, zorder=3)
    if lad["peer_top1_mean"] is not None:
        ax.axhline(lad["peer_top1_mean"], color="tab:orange", ls="--", lw=1, label=f"{lad['peer']} (mean)")
    ax.axhline(lad["base_top1"], color="black", ls=":", lw=1, label="base")
    ax.set_xticks(range(len(rungs)), [e["label"] for e in rungs], fontsize=8)
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title(f"ablation ladder at {lad['budget']:g}x (mean ± sd; dots: seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="example:\n" + __doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="results.json of benchmarks/headline.py")
    p.add_argument("--budget", type=float, required=True, help="the budget fraction, e.g. 0.5")
    p.add_argument("--rung", action="append", required=True, metavar="LABEL=METHOD", help="a rung, in ladder order (repeat)")
    p.add_argument("--peer", default="fastnas", help="the peer each rung is compared with (default fastnas)")
    p.add_argument("--out", type=Path, required=True, help="folder for ladder.md, ladder.json and ladder.png")
    args = p.parse_args(argv)
    try:
        rungs = [parse_rung(t) for t in args.rung]
        try:
            results = json.loads(args.results.read_text())
        except FileNotFoundError:
            raise SlimnasError(f"{args.results}: no such file: give a results.json written by benchmarks/headline.py") from None
        except json.JSONDecodeError as exc:
            raise SlimnasError(f"{args.results}: not JSON ({exc}): give a results.json written by benchmarks/headline.py") from None
        lad = ladder(results, rungs, args.budget, args.peer)
    except SlimnasError as exc:
        print(f"headline_ladder: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/headline_ladder.py " + " ".join(sys.argv[1:] if argv is None else argv)
    atomic_write_text(args.out / "ladder.json", json.dumps({"command": cmd, **lad}, indent=1) + "\n")
    atomic_write_text(args.out / "ladder.md", markdown(lad))
    plot(lad, args.out / "ladder.png")
    print(markdown(lad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
