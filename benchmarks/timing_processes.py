"""How far apart are two fresh timing processes, and does timing in several processes bring them together?

Every ratio slimnas reports (a candidate over the original, both timed in one process, interleaved) carries a
repeat error from that process's own rounds: the even rounds against the odd rounds. This benchmark asks whether
that error covers what changes from one fresh process to the next. It times the CIFAR-10 MobileNetV2 (the shared
checkpoint when present; latency does not depend on the weights) and two uniform-width subnets of it, exported to
ONNX, on onnxruntime CPU (1 thread, batch 1, 32x32):

1. ``--single`` fresh processes of one each (``E2EConfig(processes=1)``): per process, each subnet's ratio to the
   original and the process's own even-vs-odd repeat error of it; across processes, the spread of the ratios.
2. ``--combined`` timings of ``E2EConfig(processes=3)`` (the same rounds per process): the combined ratio (median of
   the processes' own, :func:`slimnas.latency.e2e.combine_processes`) and its spread across repeats.

The two parts alternate (single, combined, single, ...), so drift of the machine falls on both alike.

    PYTHONPATH=. python benchmarks/timing_processes.py                 # writes benchmarks/results/timing_processes/
    PYTHONPATH=. python benchmarks/timing_processes.py --single 6 --combined 3 --out /tmp/tp
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parents[1] / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"
RATIOS = (0.5, 0.75)


def export_models(folder: Path) -> list[Path]:
    """The original and the uniform subnets at :data:`RATIOS`, as ONNX files in ``folder``."""
    import torch
    from torchvision.models import mobilenet_v2

    from slimnas.export import export_onnx, export_subnet
    from slimnas.supernet import convert

    base = mobilenet_v2(num_classes=10)
    if WEIGHTS.is_file():
        base.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    net = convert(base, (3, 32, 32), divisor=8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "original.onnx"] + [folder / f"uniform_{r:g}.onnx" for r in RATIOS]
    models = [export_subnet(net, net.space.original())] + [export_subnet(net, net.space.uniform(r)) for r in RATIOS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m, p in zip(models, paths):
            export_onnx(m.eval(), p, (3, 32, 32))
    return paths


def ratios(raw: dict) -> list[float]:
    """Each subnet's quietest-round latency over the original's, in one (possibly combined) timing."""
    ms = [m["best_round_ms"] for m in raw["models"]]
    return [v / ms[0] for v in ms[1:]]


def own_repeat(raw: dict) -> list[float]:
    """Each subnet's even-vs-odd repeat error of its ratio in one process (%), as the headline's Meter computes it."""
    sys.path.insert(0, str(HERE))
    from headline_lib.measure import ratio_stats

    base = raw["models"][0]["round_medians_ms"]
    return [ratio_stats(m["round_medians_ms"], base, "best_round")[3] for m in raw["models"][1:]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="examples:\n" + __doc__.split("\n\n")[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--single", type=int, default=12, help="fresh single-process timings (default 12)")
    p.add_argument("--combined", type=int, default=6, help="timings in 3 processes each (default 6)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds per process (default 20)")
    p.add_argument("--samples", type=int, default=20, help="samples per model per round (default 20)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "timing_processes")
    args = p.parse_args(argv)
    if args.single < 2 or args.combined < 2:
        print("timing_processes: error: --single and --combined need at least 2 timings each, to have a spread", file=sys.stderr)
        return 2
    from slimnas.latency.backends.base import BackendConfig
    from slimnas.latency.e2e import E2EConfig, time_onnx_files
    from slimnas.latency.timing import TimingConfig
    from slimnas.machine import fingerprint

    import tempfile

    t0 = time.time()
    tmp = tempfile.TemporaryDirectory(prefix="slimnas-timing-processes-")  # the ONNX files are not results
    paths = export_models(Path(tmp.name))
    cfg = BackendConfig(threads=1, batch=1)
    one = E2EConfig(rounds=args.rounds, samples_per_round=args.samples)
    three = E2EConfig(rounds=args.rounds, samples_per_round=args.samples, processes=3)
    single, combined = [], []
    for i in range(max(args.single, args.combined)):
        if i < args.single:
            raw = time_onnx_files(paths, "onnxruntime", cfg, TimingConfig(), one)
            single.append({"ratios": ratios(raw), "own_repeat_pct": own_repeat(raw), "original_ms": raw["models"][0]["best_round_ms"]})
            print(f"single {i + 1}/{args.single}: " + ", ".join(f"{r:g}x width {v:.3f} (own repeat {e:.1f}%)" for r, v, e in
                  zip(RATIOS, single[-1]["ratios"], single[-1]["own_repeat_pct"])), flush=True)
        if i < args.combined:
            raw = time_onnx_files(paths, "onnxruntime", cfg, TimingConfig(), three)
            combined.append({"ratios": ratios(raw), "between_pct": [m["between_pct"] for m in raw["models"][1:]],
                             "process_ratios": [ratios(r) for r in raw["processes"]]})
            print(f"combined {i + 1}/{args.combined}: " + ", ".join(f"{r:g}x width {v:.3f}" for r, v in zip(RATIOS, combined[-1]["ratios"])), flush=True)

    def spread(rows: list[dict], j: int) -> dict:
        v = np.array([r["ratios"][j] for r in rows])
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
                "sd_pct": float(np.std(v, ddof=1) / np.mean(v) * 100)}

    summary = []
    for j, r in enumerate(RATIOS):
        summary.append({"width": r, "single": spread(single, j), "combined": spread(combined, j),
                        "single_own_repeat_pct_median": float(np.median([s["own_repeat_pct"][j] for s in single])),
                        "combined_between_pct_median": float(np.median([c["between_pct"][j] for c in combined]))})
    result = {"command": "python benchmarks/timing_processes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": fingerprint(threads=1), "rounds": args.rounds, "samples_per_round": args.samples,
              "single": single, "combined": combined, "summary": summary, "wall_s": round(time.time() - t0, 1)}
    tmp.cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    lines = ["| subnet | single process: ratio median (min–max) | sd across processes | its own repeat error (median) | "
             "3 processes: ratio median (min–max) | sd across repeats | reported error (median) |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        a, b = s["single"], s["combined"]
        lines.append(f"| uniform {s['width']:g}x | {a['median']:.3f} ({a['min']:.3f}–{a['max']:.3f}) | {a['sd_pct']:.1f}% | "
                     f"{s['single_own_repeat_pct_median']:.1f}% | {b['median']:.3f} ({b['min']:.3f}–{b['max']:.3f}) | "
                     f"{b['sd_pct']:.1f}% | {s['combined_between_pct_median']:.1f}% |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(args.out / "ratios.png", single, combined)
    print("\n".join(lines))
    return 0


def _plot(path: Path, single: list[dict], combined: list[dict]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j, r in enumerate(RATIOS):
        ax.scatter(np.full(len(single), j - 0.1), [s["ratios"][j] for s in single], marker="o", label="one process" if j == 0 else None, color="tab:red")
        ax.scatter(np.full(len(combined), j + 0.1), [c["ratios"][j] for c in combined], marker="s", label="3 processes, median" if j == 0 else None, color="tab:blue")
    ax.set_xticks(range(len(RATIOS)), [f"uniform {r:g}x" for r in RATIOS])
    ax.set_ylabel("latency / original's, same timing")
    ax.legend()
    ax.set_title("the same models timed again (onnxruntime CPU, 1 thread)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
