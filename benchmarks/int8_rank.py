"""Issue 15, item 3: does the FP32 supernet's score rank subnets the way their INT8 accuracy does?

The INT8 search scores candidates with the FP32 supernet (accuracy after BN recalibration, as for any
search). This takes a finished ``slimnas slim`` run folder, picks ``--subnets`` subnets the search scored,
spread over its range of scores, and for each: recalibrates BN in the supernet exactly as the fitness does
(same calibration images), exports the plain subnet, runs it in onnxruntime in FP32 and as the INT8 QDQ graph
(``slimnas.quantize``'s settings, calibrated on ``--calibration`` training images), both on the whole
validation split. It reports Kendall's tau between the supernet score and the INT8 onnxruntime accuracy (and
the FP32 one), and the INT8-minus-FP32 accuracy of every subnet.

    flock /tmp/slimnas-cpu.lock python benchmarks/int8_rank.py RUN --subnets 10 --out benchmarks/results/int8_rank
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("int8_rank")


def _ort_top1(data: bytes, loader) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    right = n = 0
    for x, y in loader:
        right += int((sess.run(None, {name: x.numpy()})[0].argmax(1) == y.numpy()).sum())
        n += len(y)
    return right / n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished `slimnas slim` run folder")
    p.add_argument("--subnets", type=int, default=10)
    p.add_argument("--calibration", type=int, default=128, help="training images the INT8 ranges are calibrated on")
    p.add_argument("--pick", choices=("spread", "top"), default="spread",
                   help="spread: evenly over the scored subnets' ranks; top: the best-scoring ones (where a search picks)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch
    from scipy.stats import kendalltau

    from slimnas.data import make_loader
    from slimnas.evaluate import Evaluator, recalibrate_bn
    from slimnas.export import export_onnx, export_subnet
    from slimnas.machine import fingerprint as machine_fingerprint
    from slimnas.pipeline import load_config
    from slimnas.pipeline.fitness import SupernetFitness
    from slimnas.quantize import SETTINGS, quantize_onnx
    from slimnas.subnet import Subnet
    from slimnas.train.run import load_run

    torch.set_num_threads(1)
    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    _, net, strategy, data = load_run(run / "supernet", "cpu")
    fitness = SupernetFitness(net, strategy, data, cfg.fitness, run / "fitness.jsonl", seed=cfg.seed)
    records = sorted(fitness.records.values(), key=lambda r: (r["accuracy"], r["hash"]))
    if len(records) < 3:
        raise SystemExit(f"{run}: only {len(records)} scored subnets")
    if args.pick == "top":
        picks = records[-args.subnets:]
    else:
        picks = [records[int(round(i))] for i in np.linspace(0, len(records) - 1, min(args.subnets, len(records)))]
    picks = list({r["hash"]: r for r in picks}.values())
    ev = Evaluator(data.calib, data.val, calib_images=cfg.fitness.calib_images, val_images=cfg.fitness.val_images,
                   batch_size=cfg.fitness.batch_size, device="cpu", seed=cfg.seed)
    val = make_loader(data.val, 100)
    calib = [x.numpy() for i, (x, _) in enumerate(make_loader(data.calib, 32)) if i * 32 < args.calibration]
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for r in picks:
            sub = Subnet.from_dict(r["subnet"])
            net.eval()
            with net.use(sub):
                recalibrate_bn(net, ev.calib)  # as the fitness scores it
                model = export_subnet(net, sub).eval()
            path = Path(tmp) / f"{r['hash']}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(model, path, tuple(net.input_shape), dynamic_batch=True, check=False)
            fp32 = path.read_bytes()
            q = quantize_onnx(fp32, calib)
            row = {"hash": r["hash"], "supernet_score": float(r["accuracy"]), "supernet_images": int(r["n"]),
                   "flops": float(net.flops(sub)), "onnx_fp32_top1": _ort_top1(fp32, val), "onnx_int8_top1": _ort_top1(q, val)}
            row["int8_minus_fp32"] = row["onnx_int8_top1"] - row["onnx_fp32_top1"]
            rows.append(row)
            logger.info(f"{r['hash']}: supernet {row['supernet_score']:.4f}, onnxruntime FP32 {row['onnx_fp32_top1']:.4f}, "
                        f"INT8 {row['onnx_int8_top1']:.4f}")
    s = np.array([r["supernet_score"] for r in rows])
    f = np.array([r["onnx_fp32_top1"] for r in rows])
    i8 = np.array([r["onnx_int8_top1"] for r in rows])
    tau = {"supernet_vs_int8": kendalltau(s, i8), "supernet_vs_fp32": kendalltau(s, f), "fp32_vs_int8": kendalltau(f, i8)}
    result = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if argv is None else argv,
              "run": str(run), "pick": args.pick, "scored_subnets": len(records), "model": cfg.model.name, "input_size": cfg.model.input_size, "data": cfg.data.source,
              "val_images": len(data.val), "calibration_images": int(sum(len(b) for b in calib)),
              "quantization": SETTINGS.describe(), "subnets": rows,
              "kendall_tau": {k: {"tau": float(v.statistic), "p": float(v.pvalue)} for k, v in tau.items()},
              "int8_minus_fp32_mean": float(np.mean(i8 - f)), "int8_minus_fp32_max_abs": float(np.max(np.abs(i8 - f))),
              "wall_s": round(time.time() - t0, 1), "machine": machine_fingerprint()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"result_{args.pick}.json").write_text(json.dumps(result, indent=1))
    logger.info(json.dumps(result["kendall_tau"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
