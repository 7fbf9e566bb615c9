"""Print benchmarks/results/README.md from the committed summary.json files (numbers are copied, never typed)."""
import json
from pathlib import Path

R = Path(__file__).resolve().parent / "results"
out = ["# Latency-table benchmark results", "",
       "Produced by `benchmarks/latency_accuracy.py` on this project's 2-core build machine (other engineers' jobs",
       "share it; every run held `/tmp/slimnas-cpu.lock`). onnxruntime CPU provider, batch 1, 1 intra-op thread, fp32.",
       "Per-entry timing: 20 ms warm-up, 30 samples of >= 0.5 ms each (inner calls batched), median/p10/p90.",
       "End-to-end: fresh worker process, 3 interleaved rounds, reference probe each round.", ""]
for d in sorted(p for p in R.iterdir() if p.is_dir()):
    f = d / "summary.json"
    if not f.is_file():
        continue
    s = json.loads(f.read_text())
    out += [f"## {d.name}", "", f"Command: `flock /tmp/slimnas-cpu.lock env PYTHONPATH=. python {s['command']}`", "",
            f"Machine: {s['machine']}; backend: {s['backend']}", ""]
    p = s["profile"]
    c = p["calibration"]
    out += [f"- Profiling wall time (whole width space, one input shape): **{p['wall_s_this_run']} s** (target <= 900 s); "
            f"entries measured {p['entries_measured']}, interpolated {p['entries_interpolated']}.",
            f"- Unit entries' half-vs-half median disagreement: median {p['unit_spread_pct_median']:.2f}%, p90 {p['unit_spread_pct_p90']:.2f}%.",
            f"- Calibration on {c['n']} end-to-end subnets: a={c['a']:.3f}, b={c['b']:.4f} ms, leave-one-out RMSPE {c['loo_rmspe_pct']:.2f}%.",
            f"- Prediction throughput: {s['throughput']['subnets_per_s_from_subnet_objects']:.0f} subnets/s from Subnet objects, "
            f"{s['throughput']['subnets_per_s_from_width_matrix']:.0f}/s from a width matrix (target >= 10,000); vectorised == one-by-one: {s['throughput']['vectorised_equals_per_subnet']}."]
    if "validate" in s:
        v = s["validate"]
        m, m0 = v["metrics"], v["metrics_without_probe_rescale"]
        out += [f"- Validation, {m['n']} random subnets (seed {v['seed']}): **{100 * m['within_10pct']:.1f}% within ±10%** (target >= 95%), "
                f"**RMSPE {m['rmspe_pct']:.2f}%** (target <= 5%), Kendall τ {m['kendall_tau']:.3f}, mean error {m['mean_error_pct']:+.2f}%, "
                f"max |error| {m['max_abs_error_pct']:.1f}%. Without the probe rescale: {100 * m0['within_10pct']:.1f}% / RMSPE {m0['rmspe_pct']:.2f}%.",
                f"- Repeat error of the measurements themselves: median spread between the 3 rounds' medians of one subnet "
                f"{v['median_repeat_spread_pct']:.2f}%; probe per round {', '.join(f'{x:.4f}' for x in v['probe_rounds_ms'])} ms "
                f"(table's probe {v['probe_table_ms']:.4f} ms, rescale ×{v['speed_factor']:.3f}). Validation wall time {v['wall_s']} s.",
                "- Files: `validate.csv` (per subnet: predicted, measured median, p10, p90, n, round spread, MFLOPs), `validate.json`, `validate.png`."]
    if "uniform_sweep" in s:
        u = s["uniform_sweep"]
        pts = ", ".join(f"{r}: {m:.3f}±{sp:.1f}%" for r, m, sp in zip(u["ratios"], u["measured_ms"], u["round_spread_pct"]))
        out += [f"- Latency vs uniform width (torchvision `width_mult`, ms, ± round spread): {pts}.",
                f"- Steps where latency drops by > 2% as width grows: {u['non_monotonic_steps'] or 'none'}. Plot: `uniform_width.png`."]
    out.append("")
print("\n".join(out))
