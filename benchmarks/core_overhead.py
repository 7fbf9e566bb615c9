"""Cost of being a supernet: one training step at full width vs the original static model.

Both models are timed in the same process, interleaved step by step (A, B, A, B, ...), so machine-speed
drift hits both equally; the figure is the median of the per-round ratios, with the spread of those ratios
(p10-p90) and the medians of the two halves of the run as its repeat error. A second pair times a random
subnet against its exported static model (the cost of slicing weights on the fly).

    python benchmarks/core_overhead.py                      # mobilenet_v2, 40 rounds
    python benchmarks/core_overhead.py --models mobilenet_v2 resnet18 efficientnet_b0 --rounds 30
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

import slimnas
from slimnas.machine import fingerprint

RESULTS = Path(__file__).parent / "results"


def step_timer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def compare(a, b, rounds: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for r in range(rounds):
        first, second = (a, b) if r % 2 == 0 else (b, a)  # alternate who goes first
        t1, t2 = first(), second()
        ta.append(t1 if first is a else t2)
        tb.append(t2 if first is a else t1)
    ratios = np.array(ta) / np.array(tb)
    half = rounds // 2
    return {
        "median_ratio": float(np.median(ratios)),
        "ratio_p10": float(np.percentile(ratios, 10)),
        "ratio_p90": float(np.percentile(ratios, 90)),
        "ratio_first_half": float(np.median(ratios[:half])),
        "ratio_second_half": float(np.median(ratios[half:])),
        "a_median_ms": 1e3 * statistics.median(ta),
        "b_median_ms": 1e3 * statistics.median(tb),
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2"])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "core_overhead.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    rows = []
    for name in args.models:
        original = torchvision.models.get_model(name, num_classes=10).train()
        t0 = time.perf_counter()
        net = slimnas.convert(original, args.size).train()
        convert_s = time.perf_counter() - t0
        full = compare(step_timer(net, x, y), step_timer(original, x, y), args.rounds)
        subnet = net.space.sample(random.Random(0))
        net.set_subnet(subnet)
        static = slimnas.export_subnet(net, subnet).train()
        sliced = compare(step_timer(net, x, y), step_timer(static, x, y), args.rounds)
        subnets = [net.space.sample(random.Random(i)) for i in range(1000)]
        t0 = time.perf_counter()
        for s in subnets[:200]:
            net.flops(s)
        flops_one_us = 1e6 * (time.perf_counter() - t0) / 200
        w = net.widths_matrix(subnets)
        t0 = time.perf_counter()
        net.cost.flops(w)
        flops_batch_us = 1e6 * (time.perf_counter() - t0) / len(subnets)
        row = {"model": name, "convert_s": convert_s, "full_width_vs_original": full,
               "random_subnet_vs_exported": sliced, "flops_us_per_subnet_single": flops_one_us,
               "flops_us_per_subnet_batched": flops_batch_us}
        rows.append(row)
        print(f"{name}: full-width step ratio {full['median_ratio']:.3f} (p10-p90 {full['ratio_p10']:.3f}-"
              f"{full['ratio_p90']:.3f}; halves {full['ratio_first_half']:.3f}/{full['ratio_second_half']:.3f}); "
              f"supernet {full['a_median_ms']:.1f} ms vs original {full['b_median_ms']:.1f} ms; "
              f"random subnet vs its export {sliced['median_ratio']:.3f}; convert {convert_s:.2f} s; "
              f"FLOPs {flops_one_us:.1f} us/subnet ({flops_batch_us:.2f} us batched)")
    out = {"command": "python benchmarks/core_overhead.py " + " ".join(
               f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items() if k != "out"),
           "machine": fingerprint(args.threads), "batch": args.batch, "input": args.size, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
