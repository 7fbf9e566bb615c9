"""Summarise `slimnas demo` runs (one per seed) into ``benchmarks/results/demo/``: each run's report.md, and a
README with the command, the device, the wall time, the chosen model's measured share of the budget, why it
was chosen, and the validation top-1 of the original and of the chosen model (both as exported, eval mode,
the same validation images).

    for s in 0 1 2; do flock /tmp/slimnas-cpu.lock bash -c "time slimnas demo --seed $s --out /tmp/demo$s"; done
    python benchmarks/demo_seeds.py /tmp/demo0 /tmp/demo1 /tmp/demo2
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def summary(run: Path) -> dict:
    v = pd.read_csv(run / "verify.csv")
    row = v[v["chosen"] == True].iloc[0]  # noqa: E712
    stages = json.loads((run / "stages.json").read_text())
    original = json.loads((run / "original.json").read_text())
    tuned = json.loads((run / "finetune" / "result.json").read_text())
    budget = float(row["budget_ms"]) / float(v[(v["round"] == row["round"]) & (v["model"] == "original")]["median_ms"].iloc[0])
    return {"run": str(run), "command": json.loads((run / "run.json").read_text())["commands"][-1],
            "wall_s": sum(float(s.get("wall_s", 0)) for s in stages.values()),
            "stages_s": {k: float(s.get("wall_s", 0)) for k, s in stages.items()},
            "budget_x": budget, "chosen_x": float(row["ratio_to_original"]), "share": float(row["budget_share"]),
            "reason": str(row.get("pick_reason", "")), "supernet_top1": float(row["accuracy"]), "se": float(row["se"]),
            "original_val_top1": original.get("val_top1"), "chosen_val_top1": tuned.get("val_top1"),
            "val_images": tuned.get("val_images")}


def _mean_sd(values: list[float], scale: float = 1.0, fmt: str = ".1f") -> str:
    v = np.asarray(values, float) * scale
    sd = v.std(ddof=1) if len(v) > 1 else float("nan")
    return f"{v.mean():{fmt}} ± {sd:{fmt}}"


def _targets(rows: list[dict]) -> list[str]:
    """Issue 13's demo targets, per run and as mean ± sd over the runs (sd with n - 1)."""
    gaps = [(r["chosen_val_top1"] - r["original_val_top1"]) * 100 for r in rows]
    spent = [r["chosen_x"] / r["budget_x"] for r in rows]
    walls = [r["wall_s"] for r in rows]
    head = (f"Over {len(rows)} runs (mean ± sd): wall {_mean_sd(walls, fmt='.0f')} s; chosen "
            f"{_mean_sd([r['chosen_x'] for r in rows], fmt='.3f')}x of the original ({_mean_sd(spent, 100, '.0f')}% of "
            f"the budget); validation top-1 original {_mean_sd([r['original_val_top1'] for r in rows], 100)}%, chosen "
            f"{_mean_sd([r['chosen_val_top1'] for r in rows], 100)}%, gap {_mean_sd(gaps)} pt.")
    rule = "chosen >= 0.85 of its budget (unless evidence for a narrower one)"
    wall = ", ".join(f"{w:.0f}" for w in walls)
    gap = ", ".join(f"{g:+.1f}" for g in gaps)
    return [head, "", "| target (issue 13) | per run | met |", "|---|---|---|",
            f"| wall time < 600 s (sum of the stages) | {wall} s | {_yes(all(w < 600 for w in walls))} |",
            f"| {rule} | {', '.join(f'{x:.2f}' for x in spent)} | {_yes(all(x >= 0.85 for x in spent))} |",
            f"| validation top-1 within 2 pt of the original | {gap} pt | {_yes(all(g >= -2 for g in gaps))} |"]


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo")
    p.add_argument("--note", default="", help="a paragraph for the README (e.g. how loaded the machine was)")
    args = p.parse_args()
    from slimnas.machine import fingerprint

    rows = [summary(r) for r in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (run, r) in enumerate(zip(args.runs, rows)):
        shutil.copyfile(run / "report.md", args.out / f"report_{i}.md")
        if (run / "pareto.png").is_file():
            shutil.copyfile(run / "pareto.png", args.out / f"pareto_{i}.png")
    d = fingerprint(threads=1)
    lines = ["# `slimnas demo`, one run per seed", "", f"Device: {d.get('cpu')}, {d.get('cores')} cores, {d.get('os')}, "
             f"torch {d.get('torch')}, {d.get('date')}.", ""]
    if args.note:
        lines += [args.note, ""]
    lines += ["| command | wall s (stages) | budget | chosen, measured | share of budget | why | val top-1 original / chosen "
              "(as exported, same images) | gap (pt) |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        gap = (r["chosen_val_top1"] - r["original_val_top1"]) * 100
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_s"].items())
        lines.append(f"| `{r['command']}` ([report](report_{i}.md)) | {r['wall_s']:.0f} ({stages}) | {r['budget_x']:.2f}x | "
                     f"{r['chosen_x']:.3f}x | {r['share'] * 100:.0f}% | {r['reason']} | {r['original_val_top1']:.4f} / "
                     f"{r['chosen_val_top1']:.4f} ({r['val_images']} images) | {gap:+.1f} |")
    lines += ["", *_targets(rows)]
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    (args.out / "runs.json").write_text(json.dumps({"device": d, "runs": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
