"""Issue 15, item 4: does a quantization-aware fine-tune beat plain post-training quantization?

On the shared CIFAR-10 MobileNetV2 checkpoint at 32x32 (the headline's base), per seed:

- PTQ: ``model.onnx`` quantized by onnxruntime (slimnas.quantize.SETTINGS), calibrated on ``--calibration``
  training images (evaluation transform, a seeded pick);
- QAT: the same model fine-tuned ``--steps`` steps by :func:`slimnas.qat.qat_finetune` (BatchNorm folded, weights
  and activations fake-quantized as onnxruntime runs them, distilled from the float model; data order seeded),
  then quantized the same way on the same calibration images.

Both INT8 graphs are scored by onnxruntime on all 10,000 test images (the test split is only reported, never used
to choose). The FP32 graph is scored too. Reported: each seed, mean ± sd over seeds, and the paired difference
QAT − PTQ with its standard error. Every seed's result is kept in ``--out``/rows.jsonl: rerun the command to resume.

    flock /tmp/slimnas-cpu.lock env PYTHONPATH=. python benchmarks/int8_qat.py --seeds 0,1,2 --steps 300 \\
        --out benchmarks/results/int8_qat
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CKPT = HERE.parents[1] / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=300, help="QAT steps (default: %(default)s)")
    ap.add_argument("--lr", type=float, default=5e-4, help="QAT SGD learning rate (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=64, help="QAT batch size (default: %(default)s)")
    ap.add_argument("--calibration", type=int, default=256, help="calibration images (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds or args.steps < 1 or args.calibration < 1:
        ap.error("give at least one seed, --steps >= 1 and --calibration >= 1")
    if not CKPT.is_file():
        ap.error(f"the shared checkpoint is missing ({CKPT}): this benchmark needs ../shared beside the clone")

    import numpy as np
    import torch

    from slimnas.data import DataConfig, load_data, make_loader
    from slimnas.export import export_onnx
    from slimnas.fileio import atomic_write_text
    from slimnas.machine import fingerprint
    from slimnas.models import load_model
    from slimnas.pipeline.exports import onnx_top1
    from slimnas.qat import qat_finetune
    from slimnas.quantize import SETTINGS, quantize_onnx

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    settings = {"steps": args.steps, "lr": args.lr, "batch": args.batch, "calibration": args.calibration}
    done = {}
    if rows_path.is_file():
        for line in rows_path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:  # a torn last line
                continue
            if r.get("settings") == settings:
                done[r["seed"]] = r
    data = load_data(DataConfig("cifar10", image_size=32, seed=0))
    model = load_model("mobilenet_v2", num_classes=10, weights=str(CKPT)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export_onnx(model, Path(tmp) / "fp32.onnx", (3, 32, 32), check=True, dynamic_batch=True)
        fp32_top1 = onnx_top1(fp32_path, data.test)["top1"]
        print(f"FP32 in onnxruntime: test top-1 {fp32_top1:.4f}", flush=True)
        for seed in seeds:
            if seed in done:
                print(f"seed {seed}: kept from {rows_path}", flush=True)
                continue
            t0 = time.perf_counter()
            pick = np.sort(np.random.default_rng(seed).permutation(len(data.calib))[:args.calibration])
            images = np.stack([np.asarray(data.calib[int(i)][0], dtype=np.float32) for i in pick])
            batches = [images[i:i + 32] for i in range(0, len(images), 32)]
            ptq = Path(tmp) / f"ptq{seed}.onnx"
            ptq.write_bytes(quantize_onnx(fp32_path, batches))
            ptq_top1 = onnx_top1(ptq, data.test)["top1"]
            torch.manual_seed(seed)
            loader = make_loader(data.train, args.batch, shuffle=True, seed=seed)
            t1 = time.perf_counter()
            folded, losses = qat_finetune(model, loader, args.steps, args.lr, teacher=model)
            qat_s = time.perf_counter() - t1
            qat_float = export_onnx(folded, Path(tmp) / f"qatf{seed}.onnx", (3, 32, 32), check=True, dynamic_batch=True)
            qat = Path(tmp) / f"qat{seed}.onnx"
            qat.write_bytes(quantize_onnx(qat_float, batches))
            qat_top1 = onnx_top1(qat, data.test)["top1"]
            row = {"seed": seed, "settings": settings, "ptq_top1": ptq_top1, "qat_top1": qat_top1,
                   "fp32_top1": fp32_top1, "qat_seconds": round(qat_s, 1), "loss_first": losses[0],
                   "loss_last10": sum(losses[-10:]) / 10, "seconds": round(time.perf_counter() - t0, 1)}
            with rows_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[seed] = row
            print(f"seed {seed}: PTQ {ptq_top1:.4f}, QAT {qat_top1:.4f} ({args.steps} steps in {qat_s:.0f} s)",
                  flush=True)
    rows = [done[s] for s in seeds]
    ptq_v, qat_v = [r["ptq_top1"] * 100 for r in rows], [r["qat_top1"] * 100 for r in rows]
    diff = [q - p for p, q in zip(ptq_v, qat_v)]
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else float("nan"))
    se = sd(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
    cmd = (f"python benchmarks/int8_qat.py --seeds {args.seeds} --steps {args.steps} --lr {args.lr} --batch {args.batch} "
           f"--calibration {args.calibration} --out {args.out}")
    summary = {"command": cmd, "machine": fingerprint(), "quantization": SETTINGS.describe(), "settings": settings,
               "seeds": len(rows), "fp32_top1": fp32_top1, "rows": rows,
               "ptq_mean": statistics.mean(ptq_v), "ptq_sd": sd(ptq_v), "qat_mean": statistics.mean(qat_v),
               "qat_sd": sd(qat_v), "qat_minus_ptq": statistics.mean(diff), "qat_minus_ptq_se": se}
    atomic_write_text(args.out / "results.json", json.dumps(summary, indent=1))
    inside = "inside the noise" if not abs(summary["qat_minus_ptq"]) > 2 * se else "beyond 2 s.e."
    lines = ["# INT8: quantization-aware fine-tune against post-training quantization\n",
             f"Command: `{cmd}`  ", f"Machine: `{json.dumps(summary['machine'])}`\n",
             f"Shared CIFAR-10 MobileNetV2 at 32x32; test top-1 (%) of each graph run in onnxruntime on the 10,000 test "
             f"images. FP32 graph: {fp32_top1 * 100:.2f}.\n",
             "| seed | PTQ | QAT | QAT − PTQ | QAT seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['ptq_top1'] * 100:.2f} | {r['qat_top1'] * 100:.2f} | "
              f"{(r['qat_top1'] - r['ptq_top1']) * 100:+.2f} | {r['qat_seconds']} |" for r in rows]
    lines += [f"| mean ± sd | {summary['ptq_mean']:.2f} ± {summary['ptq_sd']:.2f} | {summary['qat_mean']:.2f} ± "
              f"{summary['qat_sd']:.2f} | {summary['qat_minus_ptq']:+.2f} (s.e. {se:.2f}, {inside}) | |"]
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
