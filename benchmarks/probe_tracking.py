"""Which reference probe follows the speed of real models: the drift test behind each table's probe (issue 15).

A latency table is timed once; later its predictions are rescaled by the reference probe timed now over the
probe when the table was built. That only works if the probe's speed moves with the models' speed. This script
times MobileNetV2 subnets (random ones, the original and the smallest; exported once) again and again in fresh
worker processes spread over time, with both probes of :mod:`slimnas.latency.probe` in the same rounds, and
reports for each way of following the machine's speed the spread over processes of log(model / reference),
per model: the smaller, the better that reference follows the models.

- ``none``: the models' own latencies (no rescale): how much the machine drifted.
- ``conv`` / ``net``: rescaled by that probe (what a table on that probe does).
- ``original``: each subnet over the original model timed in the same process (how ``slimnas slim`` anchors a
  table: budgets are fractions of the original measured beside the candidates).

    PYTHONPATH=. python benchmarks/probe_tracking.py --size 32 --dtype int8 --processes 12 --gap-s 120 --out runs/probe_tracking/int8_32
    PYTHONPATH=. python benchmarks/probe_tracking.py --size 32 --dtype fp32 --processes 4 --gap-s 0 --out /tmp/probe_fp32

Resumable: each process's output is saved as it ends (``processes/NNN.json``); a rerun with the same
arguments goes on from the next one.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = ("none", "conv", "net", "original")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 5)[-2] + "\n\n" +
                                __doc__.split("\n\n")[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32, help="input size (default 32)")
    p.add_argument("--dtype", choices=("fp32", "int8"), default="int8", help="dtype of the models and probes (default int8)")
    p.add_argument("--subnets", type=int, default=8, help="random subnets besides the original and the smallest (default 8)")
    p.add_argument("--processes", type=int, default=12, help="fresh timing processes (default 12)")
    p.add_argument("--gap-s", type=float, default=120.0, help="seconds to wait between processes (default 120)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds per process (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.size < 32 or args.subnets < 1 or args.processes < 2 or args.rounds < 2 or args.gap_s < 0:
        p.error("--size must be >= 32, --subnets >= 1, --processes >= 2, --rounds >= 2 and --gap-s >= 0")
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} is a file: give a folder")
    return args


def tracking(records: list[dict], statistic: str = "best_round") -> dict:
    """Per reference kind: each non-original model's sd over processes of log(latency / reference), in %."""
    from slimnas.latency.e2e import E2EConfig

    e2e = E2EConfig(statistic=statistic)
    lat = np.array([[e2e.latency_ms(m) for m in r["models"]] for r in records])  # processes x models
    refs = {"none": np.ones(len(records)),
            "conv": np.array([e2e.probe_ms(r["probe_ms_by_kind"]["conv"]) for r in records]),
            "net": np.array([e2e.probe_ms(r["probe_ms_by_kind"]["net"]) for r in records]),
            "original": lat[:, 0]}
    out = {}
    for kind, ref in refs.items():
        logs = np.log(lat[:, 1:] / ref[:, None])
        sd = logs.std(axis=0, ddof=1) * 100
        out[kind] = {"median_sd_pct": float(np.median(sd)), "mean_sd_pct": float(sd.mean()), "per_model_sd_pct": sd.tolist()}
    out["reference_sd_pct"] = {k: float(np.log(v).std(ddof=1) * 100) for k, v in refs.items() if k != "none"}
    return out


def main(argv=None) -> int:
    args = parse(argv)
    import torchvision

    from slimnas.errors import SlimnasError
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.e2e import E2EConfig, export_subnets, time_onnx_files
    from slimnas.machine import fingerprint
    from slimnas.supernet import convert

    t0 = time.time()
    net = convert(torchvision.models.mobilenet_v2(num_classes=10).eval(), args.size)
    import random

    rng = random.Random(args.seed)
    subnets = [net.space.original(), net.space.min()] + [net.space.sample(rng) for _ in range(args.subnets)]
    names = ["original", "smallest"] + [s.hash for s in subnets[2:]]
    folder = args.out / "processes"
    folder.mkdir(parents=True, exist_ok=True)
    e2e = E2EConfig(rounds=args.rounds)
    config = BackendConfig("cpu", 1, 1, args.dtype)
    with tempfile.TemporaryDirectory(prefix="slimnas-probes-") as tmp:
        paths = export_subnets(net, subnets, Path(tmp))
        for j in range(args.processes):
            path = folder / f"{j:03d}.json"
            if path.is_file():
                continue
            if j and args.gap_s:
                time.sleep(args.gap_s)
            try:
                res = time_onnx_files(paths, "onnxruntime", config, TimingConfig(), e2e, probe="conv", extra_probes=["net"])
            except SlimnasError as exc:
                print(f"probe_tracking: error: {exc}", file=sys.stderr)
                return 2
            res = {**res, "time": time.time()}
            res.pop("processes", None)
            tmp_path = path.with_suffix(".tmp")
            tmp_path.write_text(json.dumps(res))
            tmp_path.replace(path)
            print(f"process {j + 1}/{args.processes}: original {e2e.latency_ms(res['models'][0]):.4f} ms, probes "
                  f"conv {e2e.probe_ms(res['probe_ms_by_kind']['conv']):.4f} net {e2e.probe_ms(res['probe_ms_by_kind']['net']):.4f}",
                  flush=True)
    records = [json.loads((folder / f"{j:03d}.json").read_text()) for j in range(args.processes)]
    result = {"command": "PYTHONPATH=. python benchmarks/probe_tracking.py " + " ".join(argv or sys.argv[1:]),
              "machine": fingerprint(1), "backend": records[0].get("backend"), "models": names,
              "processes": args.processes, "rounds": args.rounds, "span_min": (records[-1]["time"] - records[0]["time"]) / 60,
              "best_round": tracking(records, "best_round"), "median": tracking(records, "median"),
              "wall_s_this_run": round(time.time() - t0, 1)}
    (args.out / "summary.json").write_text(json.dumps(result, indent=1))
    plot(records, names, result, args)
    for stat in ("best_round", "median"):
        print(stat + ": " + ", ".join(f"{k} {result[stat][k]['median_sd_pct']:.2f}%" for k in KINDS) +
              " (median over models of the sd over processes of log(model / reference))")
    print(f"wrote {args.out}")
    return 0


def plot(records, names, result, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimnas.latency.e2e import E2EConfig

    e2e = E2EConfig()
    t = np.array([(r["time"] - records[0]["time"]) / 60 for r in records])
    lat = np.array([[e2e.latency_ms(m) for m in r["models"]] for r in records])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i in range(1, lat.shape[1]):
        ax.plot(t, lat[:, i] / np.median(lat[:, i]), color="0.7", lw=0.8, label="subnets" if i == 1 else None)
    ax.plot(t, lat[:, 0] / np.median(lat[:, 0]), color="k", lw=1.5, label="original")
    for kind, c in (("conv", "tab:blue"), ("net", "tab:red")):
        p = np.array([e2e.probe_ms(r["probe_ms_by_kind"][kind]) for r in records])
        sd = result["best_round"][kind]["median_sd_pct"]
        ax.plot(t, p / np.median(p), "o-", color=c, ms=3, label=f"probe {kind} (tracking sd {sd:.2f}%)")
    ax.set_xlabel("minutes since the first process")
    ax.set_ylabel("latency / its median over processes")
    ax.set_title(f"MobileNetV2 {args.size}x{args.size} {args.dtype.upper()}, {args.processes} processes x {args.rounds} rounds "
                 f"(no rescale: sd {result['best_round']['none']['median_sd_pct']:.2f}%)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "tracking.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
