"""``results.json``, ``results.md`` (one table per budget, the goal check) and the accuracy-vs-latency plot."""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from slimnas.fileio import atomic_path, atomic_write_text
from slimnas.train.strategies.distill import DistillOptions

from .measure import StateGate, off_pct
from .methods import PEERS, SLIMNAS_ARMS, get_method, is_arm

# issue 13's goals, judged on the means over seeds: (text, the peer to beat, points over it, points within the base)
GOALS = {0.5: ("best slimnas arm's mean >= FastNAS's mean + 1.5 pt, and >= base - 1.5 pt", "fastnas", 1.5, 1.5),
         0.7: ("best slimnas arm's mean >= base - 0.5 pt", None, None, 0.5)}
SPEND = 0.95  # a slimnas model should measure at least this share of its budget (unless its report says why not)
# issue 15's goals for the INT8-aware arms (METHOD+int8), budgets as fractions of the FP32 base: (text, the peer, points
# over it, points within the FP32 base)
# At 32 px the smallest INT8 MobileNetV2 of a width-only space measures about 0.34x of the FP32 base, so 0.3x can be
# unreachable (the run lists it under "Budgets a method cannot reach"); the FastNAS comparison is judged at 0.4x too.
_PEER = ("best INT8-aware arm's mean >= FastNAS then INT8 at equal measured latency (fastnas+int8) + 1.5 pt",
         "fastnas+int8", 1.5, None)
INT8_GOALS = {0.5: ("best INT8-aware arm's mean >= the FP32 base - 1 pt", None, None, 1.0), 0.4: _PEER, 0.3: _PEER}


def chained(method: str) -> bool:
    """A row quantized after an FP32 search (``METHOD→int8``, the base's included)."""
    return method.endswith("→int8")


def int8_aware(method: str) -> bool:
    """An INT8-aware slimnas arm: searched under its candidates' INT8 latency."""
    return method.endswith("+int8") and is_arm(method)


def row_name(r: dict) -> str:
    """A final model's name in the closing timing run: ``method@budget#seed``."""
    return f"{r['method']}@{r['budget']}#{r.get('seed', 0)}"


_kd = DistillOptions()  # what headline_lib.finetune distils with
DISTILLED = f"distilled from the base (alpha {_kd.alpha}, T {_kd.temperature:g})"

STAT_TEXT = {"best_round": "the median of the quietest round (other jobs only ever slow a round down)",
             "median": "the median of all samples pooled (the ratio: the median of the per-round ratios)"}


def table_rows(results: dict) -> list[dict]:
    """One row per (method, budget), joined with the closing timing run."""
    timing = results["final_timing"]
    by_name = dict(zip(timing["names"], timing["models"]))
    cuda = results.get("cuda_timing") or {}
    out = []
    for r in results["rows"]:
        name = row_name(r)
        t = by_name[name]
        row = {k: v for k, v in r.items() if k != "final"}
        row["knob_name"] = r.get("knob_name") or get_method(r["method"]).knob_name
        row.update({"latency_ms": t["latency_ms"], "median_ms": t["median_ms"], "p10_ms": t["p10_ms"], "p90_ms": t["p90_ms"],
                    "latency_ratio": t["ratio"], "ratio_p10": t["ratio_p10"], "ratio_p90": t["ratio_p90"], "repeat_pct": t["repeat_pct"],
                    "meets_budget": t["ratio"] <= r["fraction"]})
        if name in cuda:
            row["cuda_ms"] = cuda[name]["median_ms"]
        out.append(row)
    return out


def summary(rows: list[dict]) -> list[dict]:
    """Mean ± sd over seeds per (method, budget), over the models that met their budget in the closing run."""
    out = []
    for key in dict.fromkeys((r["method"], r["fraction"]) for r in rows):
        rs = [r for r in rows if (r["method"], r["fraction"]) == key]
        ok = [r for r in rs if r["meets_budget"]]
        top1 = [100 * r["test_top1"] for r in ok]
        ratios = [r["latency_ratio"] for r in rs]
        out.append({"method": key[0], "fraction": key[1], "budget": rs[0]["budget"], "seeds": sorted(r.get("seed", 0) for r in rs),
                    "met": len(ok), "n": len(rs), "top1_mean": statistics.fmean(top1) if top1 else float("nan"),
                    "top1_sd": statistics.stdev(top1) if len(top1) > 1 else float("nan"),
                    "top1_each": top1, "ratio_mean": statistics.fmean(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                    "share_mean": statistics.fmean(ratios) / key[1], "share_min": min(ratios) / key[1]})
    return out


def paired(rows: list[dict], method: str, peer: str, frac: float) -> dict[int, float]:
    """Per seed, ``method``'s test top-1 minus ``peer``'s (points) at budget ``frac``, over the seeds where both ran and
    met the budget: a seed shares the data order of the two fine-tunes, so the paired difference is the one to trust."""
    def top1(m):
        return {r.get("seed", 0): 100 * r["test_top1"] for r in rows
                if r["method"] == m and abs(r["fraction"] - frac) < 1e-9 and r["meets_budget"]}
    a, b = top1(method), top1(peer)
    return {seed: a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())}


def paired_text(diffs: dict[int, float]) -> str:
    """``"+0.26 (s.e. 0.10; seeds 0, 1, 2: +0.25, +0.43, +0.09)"``; the s.e. is sd / sqrt(seeds)."""
    d = list(diffs.values())
    se = f"s.e. {statistics.stdev(d) / len(d) ** 0.5:.2f}; " if len(d) > 1 else ""
    return (f"{statistics.fmean(d):+.2f} ({se}seed{'s' if len(d) > 1 else ''} {', '.join(map(str, diffs))}: "
            f"{', '.join(f'{x:+.2f}' for x in d)})")


def paired_lines(rows: list[dict], peer: str = "fastnas") -> list[str]:
    """A table of every other method's paired difference to ``peer`` per budget (nothing when the peer is absent)."""
    lines = []
    for frac in dict.fromkeys(r["fraction"] for r in rows):
        methods = dict.fromkeys(r["method"] for r in rows if abs(r["fraction"] - frac) < 1e-9 and r["method"] != peer)
        for m in methods:
            d = paired(rows, m, peer, frac)
            if d:
                lines.append(f"| {m} | {frac:g}x | {paired_text(d)} |")
    if not lines:
        return []
    return [f"## Paired differences to {peer} (same seed)", "",
            (f"Each method's test top-1 minus {peer}'s fine-tuned with the same seed (data order), over the seeds where "
             "both met the budget; mean, its standard error (sd / sqrt(seeds)) and each seed's difference."), "",
            f"| method | budget | top-1 − {peer} (pt) |", "|---|---|---|", *lines, ""]


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.2f}" if sd != sd else f"{mean:.2f} ± {sd:.2f}"


def goal_lines(rows: list[dict], base_top1: float, goals: dict = GOALS, arm=None) -> list[str]:
    """Each goal of ``goals`` on the means over seeds, with the gap and the sds, and the budget-spending check.

    ``arm`` says which methods are the arms judged (default: the FP32 slimnas arms)."""
    arm = arm or (lambda m: is_arm(m) and not chained(m) and not m.endswith("+int8"))
    lines = []
    by = {(g["method"], g["fraction"]): g for g in summary(rows)}
    for frac, (text, peer, over_peer, within_base) in goals.items():
        arms = [g for (m, f), g in by.items() if abs(f - frac) < 1e-9 and arm(m) and g["met"]]
        if not arms:
            lines.append(f"- {frac:g}x ({text}): not judged: no such arm in this run met this budget.")
            continue
        best = max(arms, key=lambda g: g["top1_mean"])
        base = 100 * base_top1
        ok = True
        parts = [f"best arm {best['method']} {_pm(best['top1_mean'], best['top1_sd'])} over {best['met']} seed(s)"]
        if within_base is not None:
            ok = best["top1_mean"] >= base - within_base
            parts.append(f"base {base:.2f} (gap to the goal {best['top1_mean'] - base + within_base:+.2f} pt)")
        g = next((g for (m, f), g in by.items() if m == peer and abs(f - frac) < 1e-9 and g["met"]), None)
        if peer is not None and g is not None:
            diff = best["top1_mean"] - g["top1_mean"]
            ok = ok and diff >= over_peer
            # the difference of two means over n seeds each: its standard error from the two sds
            se = (best["top1_sd"] ** 2 / best["met"] + g["top1_sd"] ** 2 / g["met"]) ** 0.5
            pairs = paired(rows, best["method"], peer, frac)
            parts.append(f"{peer} {_pm(g['top1_mean'], g['top1_sd'])}: difference {diff:+.2f} pt"
                         + (f" (s.e. of the difference {se:.2f})" if se == se else "")
                         + f" (gap to the goal {diff - over_peer:+.2f} pt)"
                         + (f"; paired by seed {paired_text(pairs)}" if len(pairs) > 1 else ""))
        elif peer is not None:
            ok = False
            parts.append(f"{peer} not in this run")
        lines.append(f"- {frac:g}x ({text}): {'MET' if ok else 'MISSED'}; " + "; ".join(parts) + ".")
    arms = [r for r in rows if arm(r["method"])]
    # under the share with evidence for it (slimnas.search.pick.narrower_by_evidence of slim's pick reason)
    evidence = [r for r in arms if r["latency_ratio"] < SPEND * r["fraction"] and r.get("narrower_by_evidence")]
    below = [r for r in arms if r["latency_ratio"] < SPEND * r["fraction"] and not r.get("narrower_by_evidence")]
    # short beyond the closing run's own error: the share is below SPEND even when raised by two repeat errors
    repeat = {id(r): float(r.get("repeat_pct", float("nan"))) for r in below}  # nan where a row has none
    clear = [r for r in below if r["latency_ratio"] * (1 + 2 * repeat[id(r)] / 100) < SPEND * r["fraction"]]
    short = [f"{row_name(r)} {r['latency_ratio'] / r['fraction']:.1%}"
             + ("" if math.isnan(repeat[id(r)]) else f" (± {repeat[id(r)]:.1f}%)") for r in below]
    if arms:
        lines.append(f"- Every slimnas model at >= {SPEND:.0%} of its budget, unless evidence says otherwise: "
                     f"{len(arms) - len(below)} of {len(arms)}"
                     + (f" ({len(evidence)} of them below it by evidence: "
                        + ", ".join(f"{row_name(r)} {r['latency_ratio'] / r['fraction']:.1%}" for r in evidence)
                        + ", where slim's pick reason gives the evidence: a narrower candidate scored higher beyond its margin, or every "
                        "wider one scored was beaten by a cheaper one)"
                        if evidence else "")
                     + (f"; below: {', '.join(short)}; of these {len(clear)} below by more than two of their repeat "
                        "errors (each slim run's report.md says why it chose that point)." if below else "."))
    return lines


def closing_state(results: dict) -> dict:
    """The machine state the closing run ran in: its base against the base when the budgets were set (``off_pct``),
    the gate's tolerance where the run recorded one and its verdict (``tol_pct``/``within`` None for an older run)."""
    ft, ref = results["final_timing"], results["budgets"]["base"]["latency_ms"]
    state = ft.get("state") or {}
    off = off_pct(ft["base"]["latency_ms"], ref)
    tol = state.get("tol_pct")
    # the verdict from the numbers by the gate's rule (a run recorded under an earlier, two-sided rule is judged anew)
    within = StateGate(tol_pct=tol).within(ft["base"]["latency_ms"], ref) if tol is not None else None
    return {"base_ms": ft["base"]["latency_ms"], "reference_ms": ref, "off_pct": off,
            "tol_pct": tol, "within": within, "probes": len(state.get("probes", [])),
            "closing_runs": len(state.get("closing_runs_base_ms", [])) or 1}


def state_line(results: dict) -> str:
    s = closing_state(results)
    head = (f"- Machine state in the closing run: base {s['base_ms']:.4f} ms, {s['off_pct']:+.1f}% from its "
            f"{s['reference_ms']:.4f} ms when the budgets were set")
    if s["tol_pct"] is None or not s["tol_pct"]:
        return head + " (no state gate recorded: a share of the budget is of this state, which ratios move with)."
    waited = (f"; {s['probes']} probe(s) while waiting" if s["probes"] else "") + \
             (f", {s['closing_runs']} closing runs" if s["closing_runs"] > 1 else "")
    if s["within"]:
        return head + f": not more than the gate's {s['tol_pct']:g}% slower, so budget shares are decided{waited}."
    return (head + f": SLOWER by more than the gate's {s['tol_pct']:g}%{waited}. Shares of the budget (and a close "
            "'meets budget') are of another state than the budgets'; not decided: retime with --retime when the "
            "machine is quieter.")


def summary_lines(results: dict, rows: list[dict]) -> list[str]:
    base = 100 * results["base"]["test_top1"]
    lines = [f"## Mean ± sd over {results.get('seeds', 1)} seeds ({', '.join(map(str, results.get('seed_list', [0])))})", "",
             "A seed covers the fine-tune's data order and, for the slimnas arms, the supernet's training and the "
             "evolutionary search. The peers' searches are deterministic given the base and the measurements (a "
             "width ratio, a pruning ratio, a FLOPs limit bisected by measurement), so their seeds share one search "
             "and differ in the fine-tune. sd = sample standard deviation over seeds; top-1 over the models that met "
             "their budget.", "",
             "| method | budget | seeds met / run | ratio to base: mean (min–max) | share of budget: mean (min) | "
             "test top-1 mean ± sd | each seed | Δ vs base (pt) |", "|---|---|---|---|---|---|---|---|"]
    for g in summary(rows):
        lines.append(f"| {g['method']} | {g['budget']} | {g['met']} / {g['n']} | {g['ratio_mean']:.3f} "
                     f"({g['ratio_min']:.3f}–{g['ratio_max']:.3f}) | {g['share_mean']:.0%} ({g['share_min']:.0%}) | "
                     f"{_pm(g['top1_mean'], g['top1_sd'])} | {', '.join(f'{t:.2f}' for t in g['top1_each'])} | "
                     f"{g['top1_mean'] - base:+.2f} |")
    return lines + [""]


def base_recipe(base: dict) -> str:
    r = base.get("recipe") or {}
    if r.get("command"):
        return f"`{r['command']}` (test top-1 {r.get('test_top1')} in its own log)"
    if r.get("recipe"):
        return ", ".join(f"{k} {v}" for k, v in r["recipe"].items()) + f"; its own test top-1 {r.get('test_top1')}"
    return "not recorded"


def markdown(results: dict, rows: list[dict]) -> str:
    b = results["budgets"]
    ft = results["final_timing"]
    base = results["base"]
    fp = results["fingerprint"]
    s = results["settings"]
    f = s["finetune"]
    lines = [f"# Headline benchmark ({results['profile']} profile): slimnas vs peers at equal measured latency", "",
             f"Profile: {s['purpose']}.", "", f"Command (repository root, `PYTHONPATH=.`): `{results['command']}`", "",
             f"Machine: {fp.get('cpu')} ({fp.get('cores')} cores){', GPU ' + fp['gpu'] if fp.get('gpu') else ''}; "
             f"torch {fp.get('torch')}; timing backend {ft['backend'].get('backend')} {ft['backend'].get('backend_version')}, "
             f"{ft['backend'].get('threads')} thread, batch {ft['backend'].get('batch')}, fp32 "
             f"{'(the INT8 rows: their QDQ graphs, run as they are) ' if any(r.get('dtype') == 'int8' for r in rows) else ''}"
             f"1x3x32x32; date {fp.get('date')}.", "",
             f"Base: torchvision mobilenet_v2(num_classes=10), checkpoint `{Path(base['checkpoint']).name}`"
             f"{' (trained by this run)' if base.get('trained_here') else ''}; test top-1 here {100 * base['test_top1']:.2f} "
             f"(BN re-estimated on {s['calib_images']} training images, as for every model); {base['mflops']:.2f} MFLOPs, "
             f"{base['params_m']:.3f} M params.",
             f"Base recipe: {base_recipe(base)}.",
             f"Base latency when the budgets were set: {b['base']['latency_ms']:.4f} ms (pooled median {b['base']['median_ms']:.4f}, "
             f"p10–p90 {b['base']['p10_ms']:.4f}–{b['base']['p90_ms']:.4f}); in the closing run: {ft['base']['latency_ms']:.4f} ms. Searches aimed "
             f"{100 * b['margin']:.0f}% below each budget.", "",
             f"Fine-tune (recipe `{results.get('finetune_label', '?')}`), identical for every method: {f['epochs']} x {f['steps_per_epoch'] or 'all'} steps, batch {f['batch_size']}, "
             f"{f['optimizer']} lr {f['lr']} (warm-up {f['warmup_fraction']}, cosine), label smoothing {f['label_smoothing']}, "
             f"weight decay {f['weight_decay']}, "
             f"{DISTILLED if s.get('distill') else 'no distillation'}. Data: CIFAR-10 JPEG copy; search scores on a validation split "
             f"carved from train/ ({s['val_subset'] or 'all'} images); top-1 on {s['test_subset'] or 'all 10,000'} test images.", "",
             f"Latency: every final model and the base timed together in {_processes(s['final_timing'])}, each interleaved over "
             f"{s['final_timing']['rounds']} rounds ({s['final_timing']['samples_per_round']} samples each) with the reference probe. "
             f"Latency = {STAT_TEXT.get(s['final_timing']['statistic'], s['final_timing']['statistic'])}; ratio = that latency / "
             "the base's in the same run (p10–p90: the per-round ratios); pooled = median (p10–p90) of all samples; "
             "repeat = how far the ratio from the even rounds and from the odd rounds disagree (with several "
             "processes, the median over processes of each one's even-round ratio against that of its odd-round ratio), or "
             "the standard error of the median ratio across processes where that is larger (the measurement's own "
             "repeat error); with several processes the ratio is the median of each process's own. A model meets its "
             "budget when its ratio is at most the budget fraction.", ""]
    lines += summary_lines(results, rows)
    lines += paired_lines(rows)
    for frac in [f for f in b["fractions"] if any(abs(r["fraction"] - f) < 1e-9 for r in rows)]:
        lines += [f"## Budget {frac:g}x the base ({frac * ft['base']['latency_ms']:.4f} ms in the closing run)", "",
                  "| method | seed | latency ms | pooled ms median (p10–p90) | ratio to base (p10–p90) | meets budget | repeat % | MFLOPs | params M | "
                  "test top-1 | Δ vs base (pt) | search s (prepare + per budget) | knob |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in [r for r in rows if abs(r["fraction"] - frac) < 1e-9]:
            knob = f"{r['knob_name']} {r['knob']:.4g}" if r["knob"] is not None else r["knob_name"]
            lines.append(f"| {r['method']} | {r.get('seed', 0)} | {r['latency_ms']:.4f} | {r['median_ms']:.4f} ({r['p10_ms']:.4f}–{r['p90_ms']:.4f}) | {r['latency_ratio']:.3f} "
                         f"({r['ratio_p10']:.3f}–{r['ratio_p90']:.3f}) | {'yes' if r['meets_budget'] else '**NO**'} | "
                         f"{r['repeat_pct']:.1f} | {r['mflops']:.2f} | {r['params_m']:.3f} | "
                         f"{100 * r['test_top1']:.2f} | {100 * (r['test_top1'] - base['test_top1']):+.2f} | "
                         f"{r['prepare_s'] + r['search_s']:.0f} ({r['prepare_s']:.0f} + {r['search_s']:.0f}) | {knob} |")
        lines.append("")
    int8 = [r for r in rows if r.get("dtype") == "int8"]
    if int8:
        lines += int8_lines(results, rows)
    if results.get("unreachable"):
        lines += ["## Budgets a method cannot reach", "",
                  "Below what the method's smallest model measures (or is predicted to, for a slimnas arm): no model, so "
                  "no row above.", "", "| method | budget | why |", "|---|---|---|"]
        lines += [f"| {u['method']} | {u['budget']} | {u['reason']} |" for u in results["unreachable"]] + [""]
    failed = [f"{row_name(r)} ({r['latency_ratio']:.3f}x)" for r in rows if not r["meets_budget"]]
    lines += ["## Checks", "",
              f"- Budget met by measurement in the closing run: {len(rows) - len(failed)} of {len(rows)}"
              + (f"; FAILED: {', '.join(failed)}." if failed else "."),
              state_line(results),
              "- The goals (issue 13), on the means over seeds of the models that met their budget in the closing run:",
              *[f"  {line}" for line in goal_lines(rows, base["test_top1"])]]
    if int8:
        lines += ["- The INT8 goals (issue 15), the same way; top-1 of the INT8 graphs in onnxruntime:",
                  *[f"  {line}" for line in goal_lines(rows, base["test_top1"], INT8_GOALS, int8_aware)]]
    lines.append("")
    if results.get("cuda_timing"):
        c = results["cuda_timing"]
        lines += ["## Torch CUDA latency (informative; budgets are on the CPU target)", "", "| model | median ms |", "|---|---|",
                  f"| base | {c['base']['median_ms']:.4f} |"]
        lines += [f"| {row_name(r)} | {r['cuda_ms']:.4f} |" for r in rows if "cuda_ms" in r]
        lines.append("")
    prepare = sum({(r["method"], r.get("seed", 0) if r.get("seeded_search") else 0): r["prepare_s"] for r in rows}.values())  # once per method (and seed, if seeded)
    search = sum({(r["method"], r["budget"], r.get("seed", 0) if r.get("seeded_search") else 0): r["search_s"] for r in rows}.values())
    tune = sum(r["finetune_s"] for r in rows)
    total = prepare + search + tune
    lines += [f"Stage wall times (each measured when it ran): supernets and other preparation {prepare:.0f} s, "
              f"searches {search:.0f} s, fine-tunes with this recipe {tune:.0f} s; together "
              f"{total:.0f} s ({total / 3600:.2f} h) before "
              "test scoring and the closing timing run. "
              f"The invocations of this work folder took {results['wall_s_all_invocations']:.0f} s in all "
              f"({results['wall_s_this_invocation']:.0f} s the last; a rerun skips cached stages, another fine-tune recipe "
              "reuses the searches).",
              "Plot: `accuracy_vs_latency.png`. Raw numbers: `results.json`.", ""]
    return "\n".join(lines)


def int8_lines(results: dict, rows: list[dict]) -> list[str]:
    """Issue 15's rows: every model as deployed in onnxruntime, FP32 and INT8, latency relative to the FP32 base."""
    base = results["base"]
    lines = ["## INT8 rows (issue 15): test top-1 measured in onnxruntime, latency relative to the FP32 base", "",
             f"INT8 graph: onnxruntime static quantization ({_quant(rows)}), calibrated on "
             f"{results.get('int8_calibration')} training images (BatchNorm re-estimated first, as for every torch "
             "score); its test top-1 is that graph run by onnxruntime (CPU provider, batch 1) on the test split, and "
             "the closing run times that same file beside the FP32 base. `METHOD+int8` searched under its candidates' "
             "INT8 latency (timed as INT8 graphs beside the FP32 base; the slimnas arms with an INT8 latency table and "
             "their FP32 supernet's scores); `METHOD→int8` is the FP32 search's fine-tuned model quantized afterwards, "
             "the recipe chained by hand.", "",
             "| row | dtype | budget | seed | ratio to FP32 base | meets | repeat % | onnxruntime test top-1 | its FP32 graph | torch FP32 | Δ vs FP32 base (pt) |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             f"| base | fp32 | — | — | 1.000 | — | — | {_pct(base.get('onnx_fp32_test_top1'))} | — | {100 * base['test_top1']:.2f} | — |"]
    for r in sorted(rows, key=lambda r: (-r["fraction"], r.get("dtype", "fp32"), r["method"], r.get("seed", 0))):
        deployed = r.get("onnx_fp32_test_top1") if r.get("dtype", "fp32") == "fp32" else r["test_top1"]
        lines.append(f"| {r['method']} | {r.get('dtype', 'fp32')} | {r['budget']} | {r.get('seed', 0)} | {r['latency_ratio']:.3f} | "
                     f"{'yes' if r['meets_budget'] else '**NO**'} | {r['repeat_pct']:.1f} | {_pct(deployed)} | "
                     f"{_pct(r.get('onnx_fp32_test_top1')) if r.get('dtype') == 'int8' else '—'} | "
                     f"{100 * r.get('torch_test_top1', r['test_top1']):.2f} | "
                     f"{_pct(None if deployed is None else deployed - base['test_top1'], signed=True)} |")
    return lines + [""]


def _pct(x, signed: bool = False) -> str:
    return "—" if x is None else (f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}")


def _quant(rows: list[dict]) -> str:
    q = next((r["quantization"] for r in rows if r.get("quantization")), {})
    return ", ".join(f"{k} {v}" for k, v in q.items()) or "slimnas.quantize.SETTINGS"


LEGEND_WIDTH = 60  # characters per legend line: an arm variant's name is long


def legend_label(text: str, width: int = LEGEND_WIDTH) -> str:
    """``text`` on lines of at most ``width`` characters, broken after the ":" of an arm variant's fields."""
    lines = [""]
    for piece in re.findall(r"[^:]+:?|:", text):
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(chunk for line in lines for chunk in (line[i:i + width] for i in range(0, len(line), width)))


def plot(results: dict, rows: list[dict], path: Path) -> None:
    fig = figure(results, rows)  # first: it selects the Agg backend before pyplot is imported
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)


def figure(results: dict, rows: list[dict]):
    """The accuracy-vs-latency figure, its legend beside the axes (never over the points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = results["base"]
    base_ms = results["final_timing"]["base"]["latency_ms"]
    fig, ax = plt.subplots(figsize=(11, 5))  # the legend takes the right third
    markers = dict(zip(list(PEERS) + list(SLIMNAS_ARMS), "osD^v<"))
    groups = summary(rows)
    seeds = results.get("seeds", 1)
    variants = iter("P*Xhp8dH")  # arm variants (ablations): a marker each
    for name in dict.fromkeys(r["method"] for r in rows):
        style = dict(marker=markers.get(name) or next(variants, "x"), ls="-" if is_arm(name) else ":")
        if seeds > 1:  # each seed's model faint, the mean ± sd over seeds (x: the seeds' min-max ratio) bold
            mine = [r for r in rows if r["method"] == name]
            dots = ax.plot([r["latency_ratio"] for r in mine], [100 * r["test_top1"] for r in mine], style["marker"], alpha=0.3, ms=4)
            gs = sorted((g for g in groups if g["method"] == name), key=lambda g: g["ratio_mean"])
            ax.errorbar([g["ratio_mean"] for g in gs], [g["top1_mean"] for g in gs], yerr=[g["top1_sd"] for g in gs],
                        xerr=[[g["ratio_mean"] - g["ratio_min"] for g in gs], [g["ratio_max"] - g["ratio_mean"] for g in gs]],
                        capsize=2, color=dots[0].get_color(), label=legend_label(f"{name} (mean ± sd, {seeds} seeds)"),
                        **style)
            continue
        rs = sorted((r for r in rows if r["method"] == name), key=lambda r: r["latency_ratio"])
        ax.errorbar([r["latency_ratio"] for r in rs], [100 * r["test_top1"] for r in rs],
                    # the quietest-round ratio pairs each model's and the base's quietest rounds, which need not be
                    # the same round, so it can fall outside the per-round ratios' p10-p90: no negative bar then
                    xerr=[[max(0.0, r["latency_ratio"] - r["ratio_p10"]) for r in rs],
                          [max(0.0, r["ratio_p90"] - r["latency_ratio"]) for r in rs]],
                    capsize=2, label=legend_label(name), **style)
    ax.plot([1.0], [100 * base["test_top1"]], "k*", ms=12, label=f"base ({base_ms:.3f} ms)")
    for frac in results["budgets"]["fractions"]:
        ax.axvline(frac, color="grey", ls="--", lw=0.8)
        ax.text(frac, ax.get_ylim()[0], f" {frac:g}x budget", color="grey", va="bottom", ha="right", rotation=90,
                fontsize=8)
    backend = results["final_timing"]["backend"]
    xbars = "min–max over seeds" if seeds > 1 else "p10–p90 of the per-round ratios"
    ax.set(xlabel=f"measured latency / base in the same run (bars: {xbars})\n"
                  f"{backend.get('backend')} {backend.get('backend_version')} CPU, {backend.get('threads')} thread, batch 1",
           ylabel="CIFAR-10 test top-1 (%)", title=f"MobileNetV2 CIFAR-10: accuracy vs measured latency ({results['profile']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def write_report(results: dict, out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    public = {**results, "rows": rows}
    atomic_write_text(out / "results.json", json.dumps(public, indent=1, default=str) + "\n")
    atomic_write_text(out / "results.md", markdown(results, rows))
    plot(results, rows, out / "accuracy_vs_latency.png")


def _processes(timing: dict) -> str:
    """"ONE fresh process" or "5 fresh processes, one after another" (older results have no ``processes``)."""
    k = int(timing.get("processes", 1))
    return "ONE fresh process" if k == 1 else f"{k} fresh processes, one after another"
