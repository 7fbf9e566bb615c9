"""``results.json``, ``results.md`` (one table per budget, the goal check) and the accuracy-vs-latency plot."""
from __future__ import annotations

import json
from pathlib import Path

from slimnas.fileio import atomic_path, atomic_write_text
from slimnas.train.strategies.distill import DistillOptions

from .methods import METHODS, PEERS, SLIMNAS_ARMS

GOALS = {0.5: ("best slimnas arm >= best peer + 1.0 pt, and >= base - 1.5 pt", 1.0, 1.5), 0.7: ("best slimnas arm >= base - 0.5 pt", None, 0.5)}


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
        name = f"{r['method']}@{r['budget']}"
        t = by_name[name]
        row = {k: v for k, v in r.items() if k != "final"}
        if r["method"] in METHODS:
            row["knob_name"] = METHODS[r["method"]].knob_name
        row.update({"latency_ms": t["latency_ms"], "median_ms": t["median_ms"], "p10_ms": t["p10_ms"], "p90_ms": t["p90_ms"],
                    "latency_ratio": t["ratio"], "ratio_p10": t["ratio_p10"], "ratio_p90": t["ratio_p90"], "repeat_pct": t["repeat_pct"],
                    "meets_budget": t["ratio"] <= r["fraction"]})
        if name in cuda:
            row["cuda_ms"] = cuda[name]["median_ms"]
        out.append(row)
    return out


def goal_lines(rows: list[dict], base_top1: float) -> list[str]:
    lines = []
    for frac, (text, over_peer, within_base) in GOALS.items():
        at = [r for r in rows if abs(r["fraction"] - frac) < 1e-9 and r["meets_budget"]]
        arms = [r for r in at if r["method"] in SLIMNAS_ARMS]
        peers = [r for r in at if r["method"] in PEERS]
        if not arms:
            lines.append(f"- {frac:g}x ({text}): not judged: no slimnas arm in this run met this budget.")
            continue
        best = max(arms, key=lambda r: r["test_top1"])
        parts = [f"best arm {best['method']} {100 * best['test_top1']:.2f}"]
        ok = best["test_top1"] >= base_top1 - within_base / 100
        parts.append(f"base {100 * base_top1:.2f} (gap to the goal {100 * (best['test_top1'] - base_top1) + within_base:+.2f} pt)")
        if over_peer is not None and peers:
            bp = max(peers, key=lambda r: r["test_top1"])
            ok = ok and best["test_top1"] >= bp["test_top1"] + over_peer / 100
            parts.append(f"best peer {bp['method']} {100 * bp['test_top1']:.2f} "
                         f"(gap to the goal {100 * (best['test_top1'] - bp['test_top1']) - over_peer:+.2f} pt)")
        lines.append(f"- {frac:g}x ({text}): {'MET' if ok else 'MISSED'}; " + "; ".join(parts) + ".")
    return lines


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
             f"{ft['backend'].get('threads')} thread, batch {ft['backend'].get('batch')}, fp32, 1x3x32x32; date {fp.get('date')}.", "",
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
             "Latency: every final model and the base timed in ONE fresh process, interleaved over "
             f"{s['final_timing']['rounds']} rounds ({s['final_timing']['samples_per_round']} samples each) with the reference probe. "
             f"Latency = {STAT_TEXT.get(s['final_timing']['statistic'], s['final_timing']['statistic'])}; ratio = that latency / "
             "the base's in the same run (p10–p90: the per-round ratios); pooled = median (p10–p90) of all samples; "
             "repeat = how far the ratio from the even rounds and from the odd rounds disagree (the measurement's own "
             "repeat error). A model meets its budget when its ratio is at most the budget fraction.", ""]
    for frac in b["fractions"]:
        lines += [f"## Budget {frac:g}x the base ({frac * ft['base']['latency_ms']:.4f} ms in the closing run)", "",
                  "| method | latency ms | pooled ms median (p10–p90) | ratio to base (p10–p90) | meets budget | repeat % | MFLOPs | params M | "
                  "test top-1 | Δ vs base (pt) | search s (prepare + per budget) | knob |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in [r for r in rows if abs(r["fraction"] - frac) < 1e-9]:
            knob = f"{r['knob_name']} {r['knob']:.4g}" if r["knob"] is not None else r["knob_name"]
            lines.append(f"| {r['method']} | {r['latency_ms']:.4f} | {r['median_ms']:.4f} ({r['p10_ms']:.4f}–{r['p90_ms']:.4f}) | {r['latency_ratio']:.3f} "
                         f"({r['ratio_p10']:.3f}–{r['ratio_p90']:.3f}) | {'yes' if r['meets_budget'] else '**NO**'} | "
                         f"{r['repeat_pct']:.1f} | {r['mflops']:.2f} | {r['params_m']:.3f} | "
                         f"{100 * r['test_top1']:.2f} | {100 * (r['test_top1'] - base['test_top1']):+.2f} | "
                         f"{r['prepare_s'] + r['search_s']:.0f} ({r['prepare_s']:.0f} + {r['search_s']:.0f}) | {knob} |")
        lines.append("")
    failed = [f"{r['method']} @ {r['budget']} ({r['latency_ratio']:.3f}x)" for r in rows if not r["meets_budget"]]
    lines += ["## Checks", "",
              f"- Budget met by measurement in the closing run: {len(rows) - len(failed)} of {len(rows)}"
              + (f"; FAILED: {', '.join(failed)}." if failed else "."),
              "- The goals (issue 6), over the models that met their budget in the closing run:",
              *[f"  {line}" for line in goal_lines(rows, base["test_top1"])], ""]
    if results.get("cuda_timing"):
        c = results["cuda_timing"]
        lines += ["## Torch CUDA latency (informative; budgets are on the CPU target)", "", "| model | median ms |", "|---|---|",
                  f"| base | {c['base']['median_ms']:.4f} |"]
        lines += [f"| {r['method']} @ {r['budget']} | {r['cuda_ms']:.4f} |" for r in rows if "cuda_ms" in r]
        lines.append("")
    prepare = sum({r["method"]: r["prepare_s"] for r in rows}.values())  # once per method
    search, tune = sum(r["search_s"] for r in rows), sum(r["finetune_s"] for r in rows)
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


def plot(results: dict, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = results["base"]
    base_ms = results["final_timing"]["base"]["latency_ms"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(list(PEERS) + list(SLIMNAS_ARMS), "osD^v<"))
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = sorted((r for r in rows if r["method"] == name), key=lambda r: r["latency_ratio"])
        ax.errorbar([r["latency_ratio"] for r in rs], [100 * r["test_top1"] for r in rs],
                    # the quietest-round ratio pairs each model's and the base's quietest rounds, which need not be
                    # the same round, so it can fall outside the per-round ratios' p10-p90: no negative bar then
                    xerr=[[max(0.0, r["latency_ratio"] - r["ratio_p10"]) for r in rs],
                          [max(0.0, r["ratio_p90"] - r["latency_ratio"]) for r in rs]],
                    marker=markers.get(name, "x"), ls="-" if name in SLIMNAS_ARMS else ":", capsize=2, label=name)
    ax.plot([1.0], [100 * base["test_top1"]], "k*", ms=12, label=f"base ({base_ms:.3f} ms)")
    for frac in results["budgets"]["fractions"]:
        ax.axvline(frac, color="grey", ls="--", lw=0.8)
        ax.text(frac, ax.get_ylim()[0], f" {frac:g}x budget", color="grey", va="bottom", fontsize=8)
    backend = results["final_timing"]["backend"]
    ax.set(xlabel=f"measured latency / base in the same run (bars: p10–p90 of the per-round ratios)\n"
                  f"{backend.get('backend')} {backend.get('backend_version')} CPU, {backend.get('threads')} thread, batch 1",
           ylabel="CIFAR-10 test top-1 (%)", title=f"MobileNetV2 CIFAR-10: accuracy vs measured latency ({results['profile']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_report(results: dict, out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    public = {**results, "rows": rows}
    atomic_write_text(out / "results.json", json.dumps(public, indent=1, default=str) + "\n")
    atomic_write_text(out / "results.md", markdown(results, rows))
    plot(results, rows, out / "accuracy_vs_latency.png")
