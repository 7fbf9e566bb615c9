"""Score other methods' architectures inside a slimnas supernet: is the search missing good subnets of its own space?

Each plain model (a peer's ``searched.pt`` from the headline's work folder, say FastNAS's) is read as layer widths,
every group rounded to its nearest candidate width, and scored with the search's own fitness (validation top-1
after BN recalibration, with its standard error) beside slimnas's picks (``subnet.json``). With ``--table`` the
latency predictor's estimate is printed too, as a ratio to its estimate of the original.

    PYTHONPATH=. python benchmarks/score_in_space.py \\
        --supernet "runs/headline/ablation/slimnas-bsnas/seed0/supernet[supernet_epochs=1:supernet_steps_per_epoch=1]" \\
        --table runs/headline/ablation/slimnas-bsnas/latency_table \\
        runs/headline/ablation/fastnas/0.5x/searched.pt runs/headline/ablation/ARM/seed0/0.5x/slim/subnet.json \\
        --out benchmarks/results/headline/ablation/score_in_space.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def subnet_of_model(net, model, what: str = "model"):
    """A plain model's layer widths as a subnet of ``net``, each group at its nearest candidate width, and how many
    channels that rounding moved in all."""
    from slimnas.errors import SlimnasError
    from slimnas.subnet import Subnet

    mods = dict(model.named_modules())
    widths = {}
    for g in net.space.names():
        m = mods.get(g)
        w = getattr(m, "out_channels", None) or getattr(m, "out_features", None) or getattr(m, "num_features", None)
        if w is None:
            raise SlimnasError(f"{what}: no layer named {g!r} (not a model of this supernet's class?)")
        widths[g] = w
    sub = Subnet({g: min(net.space[g].choices, key=lambda c: (abs(c - v), c)) for g, v in widths.items()})
    return sub, sum(abs(sub[g] - w) for g, w in widths.items())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="+", help="plain models (.pt, slimnas.save_exported) or subnets (.json)")
    p.add_argument("--supernet", required=True, type=Path, help="a finished `slimnas train` run folder")
    p.add_argument("--table", type=Path, help="latency table folder for predicted latency (optional)")
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--out", type=Path, help="JSON file for the rows")
    args = p.parse_args(argv)

    import torch

    from slimnas.errors import SlimnasError
    from slimnas.export import load_exported
    from slimnas.pipeline.config import FitnessConfig
    from slimnas.pipeline.fitness import SupernetFitness
    from slimnas.subnet import Subnet
    from slimnas.train.run import load_run

    torch.set_num_threads(1)
    try:
        missing = [str(x) for x in [args.supernet, *map(Path, args.items)] if not Path(x).exists()]
        if missing:
            raise SlimnasError(f"not found: {', '.join(missing)}")
        _, net, strategy, data = load_run(args.supernet, "cpu")
        names = net.space.names()
        fit = SupernetFitness(net, strategy, data, FitnessConfig(val_images=args.val_images, calib_images=args.calib_images))
        pred = None
        if args.table:
            from slimnas.latency.predictor import LatencyPredictor
            from slimnas.latency.table import LatencyTable

            pred = LatencyPredictor(LatencyTable.load(args.table), net)
        rows = []
        for item in args.items:
            rounded = 0
            if item.endswith(".json"):
                sub = Subnet.from_json(Path(item).read_text())
            else:
                sub, rounded = subnet_of_model(net, load_exported(item), item)
            row = {"item": item, "subnet": sub.hash, "score": fit(sub), "se": fit.se(sub), "channels_rounded": rounded,
                   "mflops": net.flops(sub) / 1e6, "widths": [sub[g] for g in names]}
            if pred is not None:
                ms, orig = pred.predict([sub, net.space.original()])
                row.update(predicted_ms=float(ms), predicted_ratio=float(ms / orig))
            rows.append(row)
            print(f"{item}: score {row['score']:.4f} ± {row['se']:.4f}, {row['mflops']:.2f} MFLOPs"
                  + (f", predicted {row['predicted_ratio']:.3f}x of the original" if pred is not None else "")
                  + (f" ({rounded} channels rounded to candidates)" if rounded else ""))
    except SlimnasError as exc:
        print(f"score_in_space: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"supernet": str(args.supernet), "table": str(args.table), "groups": names,
                                        "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
