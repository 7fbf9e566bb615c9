"""``python -m slimnas.latency.worker JOB OUT``: time ONNX files end to end in this fresh process.

JOB (JSON) names the files, backend, config, timing and number of rounds; OUT receives per-model medians
over all rounds plus the reference probe of every round. Nothing here runs PyTorch.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(job_file: str, out_file: str) -> int:
    from .backends import BackendConfig, Workload, create_backend
    from .probe import time_probe
    from .timing import Timing, TimingConfig, sample_calls

    job = json.loads(Path(job_file).read_text())
    backend = create_backend(job["backend"], BackendConfig(**job["config"]))
    timing = TimingConfig(**job["timing"])
    rounds = max(1, int(job["rounds"]))
    per_round = max(1, -(-timing.samples // rounds))
    round_timing = TimingConfig(warmup_ms=min(timing.warmup_ms, 5.0), samples=per_round,
                                min_sample_ms=timing.min_sample_ms, max_inner=timing.max_inner)
    out_shape = tuple(job.get("output_shape") or ())
    calls = []
    for p in job["paths"]:
        data = Path(p).read_bytes()
        import onnx

        m = onnx.load_from_string(data)
        dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        odims = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] or list(out_shape)
        calls.append(backend.loader(Workload(tuple(dims), tuple(odims), onnx=lambda d=data: d)))
    samples: list[list[float]] = [[] for _ in calls]
    round_medians: list[list[float]] = [[] for _ in calls]
    probes = []
    for r in range(rounds):
        probes.append(time_probe(backend, round_timing).median_ms)
        order = range(len(calls)) if r % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            t = sample_calls(calls[i], round_timing)[0].tolist()
            samples[i].extend(t)
            round_medians[i].append(float(np.median(t)))
    probes.append(time_probe(backend, round_timing).median_ms)
    models = []
    for p, s, rm in zip(job["paths"], samples, round_medians):
        t = Timing.of(np.array(s), 0)
        models.append({"path": p, "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "n": t.n,
                       "round_medians_ms": rm,
                       "spread_pct": (max(rm) - min(rm)) / t.median_ms * 100 if t.median_ms else 0.0})
    Path(out_file).write_text(json.dumps({"models": models, "probe_ms": probes, "backend": backend.describe()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
