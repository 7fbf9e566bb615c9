"""Do two closing timing runs of the headline agree? Each model's ratio to the base in run A against run B.

The headline's closing run decides whether a model meets its budget and what share of it it spends. This compares
two such runs of the same models (`benchmarks/headline.py ... --retime`, made at different times) and says how far
each model's ratio moved against what each run's own repeat error allowed, and whether the budget checks and the
95%-share check came out the same.

    python benchmarks/closing_agreement.py runs/headline/a/results.json runs/headline/b/results.json \
        --out benchmarks/results/headline/ladder-xeon/agreement
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from headline_lib.report import SPEND, row_name, table_rows

from slimnas.errors import SlimnasError
from slimnas.fileio import atomic_path, atomic_write_text


def load(path: Path) -> dict:
    try:
        results = json.loads(Path(path).read_text())
        rows = table_rows(results)
    except FileNotFoundError:
        raise SlimnasError(f"{path}: no such file: give a results.json written by benchmarks/headline.py") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SlimnasError(f"{path}: not a headline results.json ({exc}): give one written by benchmarks/headline.py") from None
    return {"results": results, "rows": {row_name(r): r for r in rows}}


def compare(a: dict, b: dict) -> dict:
    """Per model present in both: ratios, shares, the change in % and how many repeat errors it is."""
    names = [n for n in a["rows"] if n in b["rows"]]
    if not names:
        raise SlimnasError("the two runs have no model in common: compare two closing runs of the same headline work folder")
    models = []
    for n in names:
        ra, rb = a["rows"][n], b["rows"][n]
        change = (rb["latency_ratio"] / ra["latency_ratio"] - 1) * 100
        err = float(np.hypot(ra["repeat_pct"], rb["repeat_pct"]))  # the error of the change from both runs' own errors
        models.append({"name": n, "fraction": ra["fraction"], "ratio_a": ra["latency_ratio"], "ratio_b": rb["latency_ratio"],
                       "repeat_a": ra["repeat_pct"], "repeat_b": rb["repeat_pct"], "change_pct": change,
                       "expected_pct": err, "z": change / err if err > 0 else float("nan"),
                       "meets_a": bool(ra["meets_budget"]), "meets_b": bool(rb["meets_budget"]),
                       "spends_a": ra["latency_ratio"] >= SPEND * ra["fraction"],
                       "spends_b": rb["latency_ratio"] >= SPEND * rb["fraction"]})
    changes = np.array([m["change_pct"] for m in models])
    z = np.array([m["z"] for m in models])
    base = [x["results"]["final_timing"]["base"]["latency_ms"] for x in (a, b)]
    return {"models": models, "n": len(models), "base_ms": base,
            "mean_change_pct": float(np.mean(changes)), "same_sign": int(max(np.sum(changes > 0), np.sum(changes < 0))),
            "median_abs_change_pct": float(np.median(np.abs(changes))), "max_abs_change_pct": float(np.max(np.abs(changes))),
            "sd_change_pct": float(np.std(changes, ddof=1)) if len(changes) > 1 else float("nan"),
            "within_2_errors": int(np.sum(np.abs(z) <= 2)),
            "median_repeat_pct": [float(np.median([m[f"repeat_{k}"] for m in models])) for k in "ab"],
            "budget_checks_agree": int(sum(m["meets_a"] == m["meets_b"] for m in models)),
            "share_checks_agree": int(sum(m["spends_a"] == m["spends_b"] for m in models))}


def markdown(c: dict, paths: list[str]) -> str:
    lines = [f"# Two closing timing runs of the same {c['n']} models", "",
             f"A: `{paths[0]}` (base {c['base_ms'][0]:.4f} ms); B: `{paths[1]}` (base {c['base_ms'][1]:.4f} ms).", "",
             (f"- Change of a model's ratio to the base, B against A: median |change| **{c['median_abs_change_pct']:.2f}%**, "
             f"sd {c['sd_change_pct']:.2f}%, largest {c['max_abs_change_pct']:.2f}%; mean {c['mean_change_pct']:+.2f}%, "
             f"{c['same_sign']} of {c['n']} the same way (a shift shared by most models is the machine's state moving "
             "every ratio, which more processes within one run do not remove)."),
             (f"- Median repeat error of one run: {c['median_repeat_pct'][0]:.2f}% (A), {c['median_repeat_pct'][1]:.2f}% (B); "
             f"{c['within_2_errors']} of {c['n']} changes within two errors of the difference (sqrt of the sum of squares)."),
             (f"- Budget met in both or missed in both: {c['budget_checks_agree']} of {c['n']}; "
             f"at least {SPEND:.0%} of the budget in both or in neither: {c['share_checks_agree']} of {c['n']}."), "",
             "| model | ratio A | ratio B | change % | repeat A % | repeat B % | share A | share B |",
             "|---|---|---|---|---|---|---|---|"]
    for m in c["models"]:
        lines.append(f"| {m['name']} | {m['ratio_a']:.3f} | {m['ratio_b']:.3f} | {m['change_pct']:+.2f} | {m['repeat_a']:.2f} | "
                     f"{m['repeat_b']:.2f} | {m['ratio_a'] / m['fraction']:.1%} | {m['ratio_b'] / m['fraction']:.1%} |")
    return "\n".join(lines) + "\n"


def plot(c: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    sa = np.array([m["ratio_a"] / m["fraction"] for m in c["models"]])
    sb = np.array([m["ratio_b"] / m["fraction"] for m in c["models"]])
    ea = np.array([m["repeat_a"] for m in c["models"]]) / 100 * sa
    eb = np.array([m["repeat_b"] for m in c["models"]]) / 100 * sb
    ax.errorbar(sa, sb, xerr=ea, yerr=eb, fmt="o", ms=4, alpha=0.8)
    lo, hi = min(sa.min(), sb.min()) - 0.02, max(sa.max(), sb.max(), 1.0) + 0.02
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    for v, style in ((1.0, "-"), (SPEND, ":")):
        ax.axvline(v, color="red", ls=style, lw=0.8)
        ax.axhline(v, color="red", ls=style, lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("share of the budget, run A")
    ax.set_ylabel("share of the budget, run B")
    ax.set_title("closing runs A and B (bars: each run's repeat error)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="example:\n" + __doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="results.json of the first closing run")
    p.add_argument("b", type=Path, help="results.json of the second closing run (the same models)")
    p.add_argument("--out", type=Path, required=True, help="folder for agreement.md, agreement.json and agreement.png")
    args = p.parse_args(argv)
    try:
        c = compare(load(args.a), load(args.b))
    except SlimnasError as exc:
        print(f"closing_agreement: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [str(args.a), str(args.b)]
    atomic_write_text(args.out / "agreement.json", json.dumps({"command": "python benchmarks/closing_agreement.py "
                                                               + " ".join(sys.argv[1:] if argv is None else argv),
                                                               "runs": paths, **c}, indent=1) + "\n")
    atomic_write_text(args.out / "agreement.md", markdown(c, paths))
    plot(c, args.out / "agreement.png")
    print(markdown(c, paths).split("\n\n")[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
