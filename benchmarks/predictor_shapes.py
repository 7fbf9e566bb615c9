"""Is the latency table's error the same for every kind of subnet? Measured vs predicted by shape family.

`slimnas latency validate` times random subnets. A search does not return random subnets: this times, in the
same fresh-process runs (with the table's own statistic and probe rescaling), several families side by side:
random samples, uniform width ratios, a peer's architecture rounded into the space, and the best candidates of
slim runs' searches (each run's ``search_history.csv``), and reports measured / predicted per family. It then
refits two models on these very points and gives their leave-one-out errors: the table's own form (per-kind
slopes over the unit entries, plus a fixed part) and a line in FLOPs, to tell a calibration that lacks data from
a table whose entries do not add up on this machine.

    PYTHONPATH=. python benchmarks/predictor_shapes.py --table runs/headline/ablation/slimnas-bsnas/latency_table \\
        --max-ratio 1.5 --peer fastnas=runs/headline/ablation/fastnas/0.5x/searched.pt \\
        --history seeded=runs/headline/ablation/ARM_SEEDED/seed0/0.5x/slim \\
        --history random_start=runs/headline/ablation/ARM_RANDOM/seed0/0.5x/slim \\
        --out benchmarks/results/headline/ablation/predictor_shapes
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path


def loo_rmspe(x, measured) -> float:
    """Leave-one-out RMS percentage error of ``measured ≈ x @ slopes + b``, fitted in relative error."""
    import numpy as np

    x, measured = np.atleast_2d(np.asarray(x, float)), np.asarray(measured, float)
    errs = []
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        a = np.c_[x[keep], np.ones(keep.sum())] / measured[keep][:, None]
        coef, *_ = np.linalg.lstsq(a, np.ones(keep.sum()), rcond=None)
        errs.append((np.r_[x[i], 1.0] @ coef - measured[i]) / measured[i])
    return float(100 * np.sqrt(np.mean(np.square(errs))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, type=Path, help="latency table folder (MobileNetV2, as profiled)")
    p.add_argument("--max-ratio", type=float, default=1.0, help="the space the table was profiled for (BS-NAS arm: 1.5)")
    p.add_argument("--random", type=int, default=12, help="random subnets")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=MODEL.pt", help="a plain model, rounded into the space")
    p.add_argument("--history", action="append", default=[], metavar="NAME=SLIM_RUN", help="a slim run's best searched candidates")
    p.add_argument("--best", type=int, default=8, help="candidates per --history (highest scores)")
    p.add_argument("--rounds", type=int, default=60, help="interleaved timing rounds (default 60: a shared machine is noisy)")
    p.add_argument("--compare", type=Path, default=None, metavar="TABLE",
                   help="a second folder of the same table (e.g. its calibration before a change), judged on the same timings")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torchvision

    from slimnas.errors import SlimnasError
    from slimnas.export import load_exported
    from slimnas.latency import BackendConfig, TimingConfig, create_backend
    from slimnas.latency.predictor import LatencyPredictor
    from slimnas.latency.table import LatencyTable
    from slimnas.latency.validate import _compare, _time_chunks, device_of, e2e_for
    from slimnas.space import SpaceConfig
    from slimnas.subnet import Subnet
    from slimnas.supernet import ConvertConfig, convert

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from score_in_space import subnet_of_model

    try:
        table = LatencyTable.load(args.table)
        fp = table.fingerprint
        net = convert(torchvision.models.mobilenet_v2(num_classes=10).eval(), tuple(fp["input_shape"])[1],
                      ConvertConfig(space=SpaceConfig(max_ratio=args.max_ratio)))
        backend = create_backend(fp["backend"], BackendConfig(fp.get("device", "cpu"), int(fp["threads"]), int(fp["batch"]),
                                                              fp.get("dtype", "fp32")))
        predictor = LatencyPredictor(table, net, device=device_of(backend))
        families: list[tuple[str, Subnet]] = [("original", net.space.original())]
        rng = random.Random(0)
        families += [("random", net.space.sample(rng)) for _ in range(args.random)]
        families += [("uniform", net.space.uniform(r)) for r in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
        for spec in args.peer:
            name, _, path = spec.partition("=")
            families.append((name, subnet_of_model(net, load_exported(path), path)[0]))
        for spec in args.history:
            name, _, run = spec.partition("=")
            h = pd.read_csv(Path(run) / "search_history.csv")
            h = h[h["feasible"].astype(bool)].sort_values("accuracy", ascending=False).head(args.best)
            families += [(name, net.space.validate(Subnet.from_json(t))) for t in h["subnet"]]
        subs = [s for _, s in families]
        timing = TimingConfig(**fp.get("timing", {}))
        e2e = e2e_for(table, args.rounds)
        with tempfile.TemporaryDirectory(prefix="slimnas-shapes-") as tmp:
            chunks = _time_chunks(net, subs, backend, timing, e2e, Path(tmp), 0, None)
        result, rows = _compare(predictor, net, subs, chunks, e2e)
        other = None
        if args.compare is not None:
            other = _compare(LatencyPredictor(LatencyTable.load(args.compare), net, device=device_of(backend)),
                             net, subs, chunks, e2e)
    except SlimnasError as exc:
        print(f"predictor_shapes: error: {exc}", file=sys.stderr)
        return 2
    rows.insert(0, "family", [f for f, _ in families])
    orig = rows.iloc[0]
    rows["measured_ratio"] = rows["measured_ms"] / orig["measured_ms"]
    rows["predicted_ratio"] = rows["predicted_ms"] / orig["predicted_ms"]
    rows["measured_over_predicted"] = rows["measured_ms"] / rows["predicted_ms"]
    if other is not None:
        rows["compare_predicted_ratio"] = other[1]["predicted_ms"].to_numpy() / other[1]["predicted_ms"].iloc[0]
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "shapes.csv", index=False)
    lines = ["| family | subnets | measured / predicted: median (min–max) | measured ratio to original (median) | predicted ratio (median) |",
             "|---|---|---|---|---|"]
    if other is not None:
        lines[0] += f" {args.compare.name}: predicted ratio (median) |"
        lines[1] += "---|"
    for fam, g in rows.groupby("family", sort=False):
        r = g["measured_over_predicted"]
        lines.append(f"| {fam} | {len(g)} | {r.median():.3f} ({r.min():.3f}–{r.max():.3f}) | {g['measured_ratio'].median():.3f} | "
                     f"{g['predicted_ratio'].median():.3f} |" + (f" {g['compare_predicted_ratio'].median():.3f} |" if other is not None else ""))
    def ratio_rmse(col):  # RMS % error of the ratio to the original (what a relative budget is judged on)
        return float(100 * np.sqrt(np.mean(np.square(rows[col].to_numpy()[1:] / rows["measured_ratio"].to_numpy()[1:] - 1))))
    lines += ["", f"RMS error of the predicted ratio to the original, all {len(rows) - 1} subnets: this table {ratio_rmse('predicted_ratio'):.1f}%"
              + (f", {args.compare.name} {ratio_rmse('compare_predicted_ratio'):.1f}%" if other is not None else "")]
    meas = rows["measured_ms"].to_numpy()
    flops = np.array([net.flops(s) for s in subs]) / 1e6
    raw_k, terms = predictor.raw_by_kind(subs), predictor.term_values(subs)
    weights = terms["weights"]
    refits = {"table entries, per-kind slopes + fixed part": loo_rmspe(raw_k, meas),
              "table entries + weights": loo_rmspe(np.c_[raw_k, weights], meas),
              "table entries + weights + FLOPs": loo_rmspe(np.c_[raw_k, weights, flops], meas),
              "FLOPs, one slope + fixed part": loo_rmspe(flops[:, None], meas),
              "FLOPs + weights": loo_rmspe(np.c_[flops, weights], meas)}
    if "median_ms" in rows:  # the same forms on the median of all samples (a steadier statistic on a busy machine)
        med = rows["median_ms"].to_numpy()
        refits.update({f"{k}, on all-sample medians": loo_rmspe(x, med) for k, x in
                       [("table entries", raw_k), ("table entries + weights", np.c_[raw_k, weights]),
                        ("table entries + weights + FLOPs", np.c_[raw_k, weights, flops])]})
    lines += ["", f"Refitted on these {len(rows)} subnets (leave-one-out RMS % error; the table's own calibration reports "
              f"{predictor.error_pct:.1f}% on its 30 random calibration subnets):", "",
              "| model | LOO RMSPE |", "|---|---|"] + [f"| {k} | {v:.1f}% |" for k, v in refits.items()]
    text = "\n".join(lines) + "\n"
    (args.out / "shapes.md").write_text(text)
    (args.out / "shapes.json").write_text(json.dumps({"table": str(args.table), "metrics_all": result["metrics"],
                                                      "repeat_error_pct": result["repeat_error_pct"],
                                                      "calibration": result["calibration"], "refit_loo_rmspe_pct": refits}, indent=1, default=float) + "\n")
    print(text)
    print(f"all {len(rows)}: RMSPE {result['metrics']['rmspe_pct']:.1f}%, repeat error {result['repeat_error_pct'][e2e.statistic]:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
