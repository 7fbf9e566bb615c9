"""``report.md``: what a slim run was asked, what it measured, and what it handed back."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import pandas as pd

from ..fileio import atomic_write_text


def _ms(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _pct(v: Optional[float], signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:+.1f}%" if signed else f"{v:.1f}%"


def _acc(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _m(v: Optional[float]) -> str:
    return "–" if v is None else f"{v / 1e6:.3f}"


def render(s: dict) -> str:
    o, c = s["original"], s["chosen"]
    lines = ["# slimnas slim report", "", f"Command: `{s['command']}`  ", f"Run folder: `{s['out']}`", "", "## Budget", ""]
    for b in s["budget"]:
        lines.append(f"- {b}")
    if c.get("budget_ms") is not None:
        lines.append(f"- checked by measurement on the device: a relative budget against the original timed in the "
                     f"same run ({_ms(c.get('original_now_ms'))} ms there, so {c['budget_ms']:.3f} ms), as the ratio "
                     "of the two latencies; an absolute one against the measured latency")
    lines += ["", "## Result", "",
              "| | original | chosen subnet |", "|---|---|---|",
              f"| measured latency ms: quietest round's median (p10–p90 of all samples) | {_ms(o['median_ms'])} "
              f"({_ms(o['p10_ms'])}–{_ms(o['p90_ms'])}) | "
              f"**{_ms(c['median_ms'])}** ({_ms(c['p10_ms'])}–{_ms(c['p90_ms'])}) |",
              f"| repeat error: even vs odd rounds (spread of all round medians) | {_pct(o.get('repeat_pct'))} "
              f"({_pct(o['spread_pct'])}) | {_pct(c.get('repeat_pct'))} ({_pct(c['spread_pct'])}) |",
              f"| predicted latency ms (anchored on the original in the same run) | – | {_ms(c['predicted_now_ms'])} "
              f"(error {_pct(c['error_pct'], True)} of measured) |",
              f"| latency relative to the original (measured, same run) | 1.000x | **{c['ratio_to_original']:.3f}x** "
              f"({c['speedup']:.2f}x faster) |",
              f"| FLOPs (M, multiply-accumulates) | {_m(o['flops'])} | {_m(c['flops'])} |",
              f"| params (M) | {_m(o['params'])} | {_m(c['params'])} |",
              f"| validation top-1 (supernet estimate) | – | {_acc(c['supernet_top1'])} |",
              f"| validation top-1 ({c['val_images']} images) | {_acc(o.get('val_top1'))} | **{_acc(c.get('val_top1'))}** "
              f"(after {c['finetune_steps']} fine-tune steps{', distilled' if c.get('distilled') else ''}) |"]
    if o.get("test_top1") is not None:
        lines.append(f"| test top-1 (reporting only; {c.get('test_images')} images) | {_acc(o.get('test_top1'))} | "
                     f"{_acc(c.get('test_top1'))} |")
    p = s["predictor"]
    lines += ["", f"Chosen subnet: `{c['hash']}` (`subnet.json`). The original was first measured at "
              f"{_ms(o['median_ms'])} ms (relative budgets were resolved against it for the search). Predictions are "
              f"the latency table's, set to the speed of that timing: x{p.get('probe_factor', 1.0):.3f} by the reference "
              f"probe, then x{p.get('anchor_factor', 1.0):.3f} to match the original's measured latency (the table "
              f"predicted {_ms(p.get('original_predicted_by_probe_ms'))} ms for it); in verification, each round's "
              "predictions follow that round's timing of the original.", ""]
    v: pd.DataFrame = s["verify"]
    if v is not None and len(v):
        lines += ["## On-device verification (`verify.csv`)", "",
                  "| round | model | supernet top-1 | predicted ms | measured ms (p10–p90) | repeat error | error | "
                  "x original | meets budget |", "|---|---|---|---|---|---|---|---|---|"]
        for _, r in v.iterrows():
            name = "original" if r["model"] == "original" else f"`{r['hash']}`" + (" **chosen**" if bool(r["chosen"]) else "")
            meets = "" if r["model"] == "original" else ("yes" if bool(r["meets_budget"]) else "no")
            lines.append(f"| {r['round']} | {name} | {_acc(r['accuracy'])} | {_ms(r['predicted_now_ms'])} | "
                         f"{_ms(r['median_ms'])} ({_ms(r['p10_ms'])}–{_ms(r['p90_ms'])}) | {_pct(r.get('repeat_pct'))} | "
                         f"{_pct(r['error_pct'], True)} | {r['ratio_to_original']:.3f} | {meets} |")
        lines.append("")
    se = s["search"]
    lines += ["## Search", "", f"{se['evaluations']} subnets scored (supernet accuracy on the validation split after BN "
              f"recalibration), {se['generations']} generations, stopped by {se['stopped']}, {se['pareto']} on the "
              f"Pareto front (`pareto.csv`, `pareto.png`), {se['wall_s']:.0f} s.", "",
              "## Wall time per stage", "", "| stage | seconds | |", "|---|---|---|"]
    for name, t in s["stages"].items():
        lines.append(f"| {name} | {t.get('wall_s', 0):.1f} | {'finished by an earlier invocation' if t.get('reused') else ''} |")
    lines.append(f"| total | {sum(t.get('wall_s', 0) for t in s['stages'].values()):.1f} | |")
    lines += ["", "## Device and latency table", "", f"Latency table: `{s['table']}` "
              f"(calibration a={s['predictor'].get('a', float('nan')):.3f}, b={s['predictor'].get('b', float('nan')):.3f} ms, "
              f"leave-one-out error {s['predictor'].get('error_pct', float('nan')):.1f}%)", "", "```"]
    lines += [f"{k}: {val}" for k, val in s["device"].items()]
    lines += ["```", "", "## Files", ""]
    lines += [f"- `{f}`" for f in s["files"]]
    for note in s.get("skipped", []):
        lines.append(f"- skipped: {note}")
    return "\n".join(lines) + "\n"


def write_report(path: Path, summary: dict) -> Path:
    atomic_write_text(path, render(summary))
    return path
