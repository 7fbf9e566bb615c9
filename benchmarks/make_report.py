"""Print benchmarks/results/README.md from the committed summary.json files (numbers are copied, never typed).

    python benchmarks/make_report.py > benchmarks/results/README.md
"""
import json
from pathlib import Path

R = Path(__file__).resolve().parent / "results"
HEAD = """# Latency-table benchmark results

Produced by `benchmarks/latency_accuracy.py` on this project's 2-core build machine (other engineers' jobs
share it; every run held `/tmp/slimnas-cpu.lock`, but light work outside the lock and the host itself still
disturb timings). onnxruntime CPU provider, batch 1, 1 intra-op thread, fp32.

- Table entries: 20 ms warm-up, 30 samples of >= 0.5 ms each (inner calls batched), median/p10/p90; every
  measured entry timed in two passes a pass-length apart, the best pass kept; the reference probe re-timed
  every 3 s and stored with each entry (per-entry drift correction).
- End to end (calibration and validation): a fresh worker process; R interleaved rounds (alternating order),
  each timing every model for 10 samples of >= 0.5 ms after a 5 ms re-warm, plus the reference probe.
  Two statistics per model: the **quietest round's median** (`best_round`, the lowest of the R round medians;
  the predictor is calibrated on it) and the **median of all samples** (`median`). Other jobs only ever slow a
  round down, by 30-100% for a second or two at a time, which the pooled median does not survive.
- Repeat error: the even rounds and the odd rounds are two independent half-length measurements taken side by
  side; RMS(relative difference)/√2 is the RMS error of one half-length measurement, an upper bound for the
  full one. It is the floor under any RMSPE measured against that statistic.
- Targets (issue 3): >= 95% of 200 random subnets within ±10% of the measured end-to-end latency, RMSPE <= 5%,
  profiling <= 900 s, prediction >= 10,000 subnets/s.
"""


def _dis(d):
    return "n/a" if not d else f"median +{d['median']:.1f}%, p90 +{d['p90']:.1f}%, max +{d['max']:.1f}%"


def _loo(d):
    return ", ".join(f"{k} {v:.2f}%" for k, v in (d or {}).items()) or "n/a"


def pct(x):
    return f"{100 * x:.1f}%"


def section(d: Path, s: dict) -> list:
    out = [f"## {d.name}", ""]
    out += ["Commands (each under `flock /tmp/slimnas-cpu.lock env PYTHONPATH=.`):", ""]
    out += [f"- `python {c}`" for c in s.get("commands", [s.get("command", "")])]
    out += ["", f"Machine: {s['machine']}; backend: {s['backend']}", ""]
    p = s["profile"]
    c = p["calibration"]
    slopes = ", ".join(f"{k} {v:.3f}" for k, v in (c.get("slopes") or {}).items())
    out += [f"- Profiling wall time (whole width space at one input shape, including the end-to-end calibration): "
            f"**{p['wall_s']} s** (target <= 900 s); entries measured {p['entries_measured']}, interpolated "
            f"{p['entries_interpolated']}; reference probe timed {p.get('probes', '?')} times.",
            f"- Unit entries' half-vs-half median disagreement: median {p['unit_spread_pct_median']:.2f}%, p90 {p['unit_spread_pct_p90']:.2f}%; "
            f"{p.get('passes', 1)} passes per entry, slowest over best pass: {_dis(p.get('pass_disagreement_pct'))}.",
            f"- Calibration on {c['n']} end-to-end subnets ({c.get('e2e_statistic', 'median')} statistic, drift correction "
            f"{'on' if c.get('drift_corrected') else 'off'}): slopes {slopes or c['a']}, b {c['b']:.4f} ms, ridge {c.get('ridge')} "
            f"(chosen by leave-one-out; LOO RMSPE by ridge: {_loo(c.get('loo_rmspe_pct_by_ridge'))}); leave-one-out RMSPE **{c['loo_rmspe_pct']:.2f}%**.",
            f"- Prediction throughput: {s['throughput']['subnets_per_s_from_subnet_objects']:.0f} subnets/s from Subnet objects, "
            f"{s['throughput']['subnets_per_s_from_width_matrix']:.0f}/s from a width matrix (target >= 10,000); "
            f"vectorised == one-by-one: {s['throughput']['vectorised_equals_per_subnet']}."]
    if "validate" in s:
        v = s["validate"]
        m, m0 = v["metrics"], v["metrics_without_probe_rescale"]
        byst = v["metrics_by_statistic"]
        rep = v["repeat_error_pct"]
        other = "median" if v["statistic"] == "best_round" else "best_round"
        mo = byst[other]
        out += [f"- Validation, {m['n']} random subnets (seed {v['seed']}), {v['e2e']['rounds']} rounds, chunks of "
                f"{v['chunk'] or m['n']}: against the {v['statistic']} statistic **{pct(m['within_10pct'])} within ±10%** "
                f"(target >= 95%), **RMSPE {m['rmspe_pct']:.2f}%** (target <= 5%), Kendall τ {m['kendall_tau']:.3f}, mean error "
                f"{m['mean_error_pct']:+.2f}%, max |error| {m['max_abs_error_pct']:.1f}%; the measurement's own repeat error "
                f"{rep[v['statistic']]:.2f}%.",
                f"- Same predictions against the {other} statistic: {pct(mo['within_10pct'])} within ±10%, RMSPE "
                f"{mo['rmspe_pct']:.2f}%, τ {mo['kendall_tau']:.3f}, mean error {mo['mean_error_pct']:+.2f}%; its repeat error "
                f"{rep[other]:.2f}%. Without the probe rescale ({v['statistic']}): {pct(m0['within_10pct'])} / RMSPE {m0['rmspe_pct']:.2f}%.",
                f"- Run spread: median range of one subnet's round medians {v['median_round_spread_pct']:.1f}%; probe rescale "
                f"factors {', '.join(f'{x:.3f}' for x in v['speed_factors'])} (table's probe {v['probe_table_ms']:.4f} ms).",
                "- Files: `validate.csv` (per subnet: predicted, measured, both statistics, p10, p90, n, round spread, "
                "half differences, chunk, MFLOPs), `validate.json`, `validate.png`, `work/chunk_*.json` (every round's median)."]
    if "ablation" in s:
        out += ["- Calibration variants on the same measurements (fitted on the same table rows):", "",
                "| variant | within ±10% | RMSPE | τ | mean error | LOO RMSPE |", "|---|---|---|---|---|---|"]
        for k, a in s["ablation"].items():
            out.append(f"| {k} | {pct(a['within_10pct'])} | {a['rmspe_pct']:.2f}% | {a['kendall_tau']:.3f} | "
                       f"{a['mean_error_pct']:+.2f}% | {a['loo_rmspe_pct']:.2f}% |")
        out.append("")
    if "uniform_sweep" in s:
        u = s["uniform_sweep"]
        pts = ", ".join(f"{r}: {m:.3f}" for r, m in zip(u["ratios"], u["best_round_ms"]))
        flagged = [f"{x['from']}→{x['to']} ({x['change_pct']:+.1f}%, {x['kind']})" for x in u["steps"] if x["kind"] != "slower"]
        out += [f"- Latency vs uniform width (torchvision `width_mult`, 10 classes, quietest of {u['rounds']} rounds, ms): {pts}.",
                f"- Sweep repeat error {u['repeat_error_pct']:.2f}%; a step to a wider ratio is flagged when it is not slower by more "
                f"than {u['threshold_pct']:.1f}%: {', '.join(flagged) or 'none'}. Plot: `uniform_width.png`."]
    if "torchvision_075_vs_1" in s:
        t = s["torchvision_075_vs_1"]
        a, b = t["w0.75"], t["w1.0"]
        out += [f"- torchvision `mobilenet_v2(width_mult=0.75)` vs `1.0` (1000 classes, {t['rounds']} interleaved rounds, fresh process): "
                f"{a['best_round_ms']:.3f} vs {b['best_round_ms']:.3f} ms (quietest round), ratio **{t['ratio_best_round']:.3f}**; "
                f"pooled medians {a['median_ms']:.3f} vs {b['median_ms']:.3f} ms, ratio {t['ratio_median']:.3f}; "
                f"MMACs {t['mmacs']['w0.75']:.0f} vs {t['mmacs']['w1.0']:.0f}."]
    return out + [""]


def main() -> None:
    out = [HEAD]
    for d in sorted(p for p in R.iterdir() if p.is_dir()):
        f = d / "summary.json"
        if f.is_file():
            s = json.loads(f.read_text())
            if "profile" in s:
                out += section(d, s)
    print("\n".join(out))


if __name__ == "__main__":
    main()
