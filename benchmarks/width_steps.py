"""Latency against uniform width ratio, FP32 and INT8 on one plot: where the steps are (issue 15, 224x224).

MobileNetV2 (torchvision, random weights: latency does not depend on them) is converted at the input size with a
fine grid of width ratios (every 1/32 from 0.25 to 1, widths rounded to multiples of 8). Each distinct uniform
subnet is exported to ONNX once and timed end to end by slimnas's own timing worker in one fresh process: FP32
as exported and INT8 as the runtime really runs it (static QDQ with slimnas's quantizer settings, the same as
the export's and the INT8 tables'), interleaved in the same rounds, with the reference probe and the measurement's
own repeat error (even vs odd rounds). A "step" is where one width increment costs more than its share of FLOPs:
the rise in latency between neighbouring ratios over the rise in FLOPs, relative to the whole curve's slope.

    PYTHONPATH=. python benchmarks/width_steps.py --size 224 --out benchmarks/results/width_steps_224
    PYTHONPATH=. python benchmarks/width_steps.py --size 32 --rounds 20 --out /tmp/width_steps_32
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224, help="input size (default 224)")
    p.add_argument("--step", type=int, default=32, help="ratio grid: every 1/STEP from 0.25 to 1 (default 32)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--rounds", type=int, default=24, help="interleaved timing rounds (default 24)")
    p.add_argument("--statistic", choices=("best_round", "median"), default="best_round",
                   help="a model's latency: its quietest round's median (the tables' statistic; default) or the "
                        "median over every round (12 rounds of it repeated to 8%% on the 2-core VM)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.size < 32 or args.step < 4 or args.rounds < 2:
        print("width_steps: error: --size must be >= 32, --step >= 4 and --rounds >= 2", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"width_steps: error: --out {args.out} is a file: give a folder", file=sys.stderr)
        return 2

    import pandas as pd
    import torchvision

    from slimnas.errors import SlimnasError
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.e2e import E2EConfig, export_subnets, time_onnx_files
    from slimnas.machine import fingerprint
    from slimnas.quantize import SETTINGS
    from slimnas.space import SpaceConfig
    from slimnas.supernet import ConvertConfig, convert

    t0 = time.time()
    ratios = [i / args.step for i in range(args.step // 4, args.step + 1)]
    net = convert(torchvision.models.mobilenet_v2().eval(), args.size,
                  ConvertConfig(space=SpaceConfig(ratios=tuple(ratios))))
    subnets, first_ratio = {}, {}
    for r in ratios:
        s = net.space.uniform(r)
        first_ratio.setdefault(s.hash, r)
        subnets[s.hash] = s
    subs = list(subnets.values())
    print(f"{len(subs)} distinct uniform subnets from {len(ratios)} ratios; exporting and timing "
          f"(fp32 and int8, {args.rounds} interleaved rounds, one process)", flush=True)
    e2e = E2EConfig(rounds=args.rounds, statistic=args.statistic)
    config = BackendConfig("cpu", args.threads, 1, "fp32")
    try:
        with tempfile.TemporaryDirectory(prefix="slimnas-steps-") as tmp:
            paths = export_subnets(net, subs, Path(tmp))
            res = time_onnx_files(paths + paths, "onnxruntime", config, TimingConfig(), e2e,
                                  dtypes=["fp32"] * len(paths) + ["int8"] * len(paths))
    except SlimnasError as exc:
        print(f"width_steps: error: {exc}", file=sys.stderr)
        return 2
    n = len(subs)
    models = res["models"]
    rows = []
    for i, s in enumerate(subs):
        f, q = models[i], models[n + i]
        rows.append({"ratio": first_ratio[s.hash], "subnet": s.hash, "mflops": net.flops(s) / 1e6,
                     "params_m": net.params(s) / 1e6, "fp32_ms": e2e.latency_ms(f), "int8_ms": e2e.latency_ms(q),
                     "fp32_repeat_pct": e2e.repeat_error_pct([f]), "int8_repeat_pct": e2e.repeat_error_pct([q])})
    df = pd.DataFrame(rows).sort_values("mflops").reset_index(drop=True)
    df["int8_over_fp32"] = df["int8_ms"] / df["fp32_ms"]
    for d in ("fp32", "int8"):
        whole = (df[f"{d}_ms"].iloc[-1] - df[f"{d}_ms"].iloc[0]) / (df["mflops"].iloc[-1] - df["mflops"].iloc[0])
        df[f"{d}_step"] = (df[f"{d}_ms"].diff() / df["mflops"].diff()) / whole  # 1 = the curve's mean slope
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "widths.csv", index=False)
    repeat = {"fp32": e2e.repeat_error_pct(models[:n]), "int8": e2e.repeat_error_pct(models[n:])}
    summary = {"command": "PYTHONPATH=. python benchmarks/width_steps.py " + " ".join(argv or sys.argv[1:]),
               "machine": fingerprint(args.threads), "backend": res.get("backend"), "quantization": SETTINGS.describe(),
               "e2e": {"rounds": args.rounds, "statistic": e2e.statistic}, "subnets": n, "ratios": len(ratios),
               "repeat_error_pct": repeat, "wall_s": round(time.time() - t0, 1),
               "int8_over_fp32": {"min": float(df["int8_over_fp32"].min()), "max": float(df["int8_over_fp32"].max()),
                                  "at_full_width": float(df["int8_over_fp32"].iloc[-1])}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(df, args, repeat)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(json.dumps(summary["int8_over_fp32"]), f"repeat error {repeat}", f"wrote {args.out}")
    return 0


def plot(df, args, repeat) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    for d, c in (("fp32", "tab:blue"), ("int8", "tab:red")):
        ax.plot(df["ratio"], df[f"{d}_ms"], "o-", ms=3.5, color=c,
                label=f"{d.upper()} ({args.statistic} of {args.rounds} rounds; repeat error {repeat[d]:.1f}%)")
        steep = df[df[f"{d}_step"] > 2.5]
        ax.plot(steep["ratio"], steep[f"{d}_ms"], "s", ms=9, mfc="none", mec=c)
    ax.set_ylabel("latency, ms (onnxruntime, batch 1)")
    ax.set_title(f"MobileNetV2 {args.size}x{args.size}, uniform width, {args.threads} thread(s)\n"
                 "squares: a width step costing > 2.5x the curve's mean ms per MFLOP")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bx.plot(df["ratio"], df["int8_over_fp32"], "o-", ms=3.5, color="k")
    bx.set_ylabel("INT8 / FP32")
    bx.set_xlabel("uniform width ratio (nearest multiple-of-8 widths)")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "width_steps.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
