"""``python -m slimnas.latency.worker JOB OUT``: time exported models end to end in this fresh process.

JOB (JSON) names the files (``.onnx``, or ``.pt`` modules from :func:`.e2e.export_subnets` for the torch
backend), backend, config, timing and the end-to-end settings (rounds, samples per round); OUT receives
per-model medians over all rounds, each round's median, the even-vs-odd rounds' difference, and the reference
probe of every round (the job's ``probe`` kind, ``conv`` by default; ``extra_probes`` are timed beside it).
PyTorch is imported only for ``.pt`` files or the torch backend. A backend that refuses the files ends the
worker with one line on stderr and exit code 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _rel_diff_pct(a: float, b: float) -> float:
    return (a - b) / ((a + b) / 2) * 100 if a + b > 0 else float("nan")


def summarise(round_samples: list[list[float]]) -> dict:
    """One model's samples, grouped by round.

    ``median_ms``/``p10_ms``/``p90_ms`` pool every round's samples; ``best_round_ms`` is the median of the
    quietest round (the lowest round median: other jobs on a shared machine only ever slow a round down).
    ``half_diff_pct`` and ``best_half_diff_pct`` compare the even rounds with the odd rounds for each statistic.
    """
    from .timing import Timing

    rounds = [np.asarray(r, float) for r in round_samples]
    t = Timing.of(np.concatenate(rounds), 0)
    rm = [float(np.median(r)) for r in rounds]
    half = best_half = float("nan")
    if len(rounds) >= 2:
        half = _rel_diff_pct(float(np.median(np.concatenate(rounds[0::2]))), float(np.median(np.concatenate(rounds[1::2]))))
        best_half = _rel_diff_pct(min(rm[0::2]), min(rm[1::2]))
    return {"median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "n": t.n, "best_round_ms": min(rm),
            "round_medians_ms": rm, "spread_pct": (max(rm) - min(rm)) / t.median_ms * 100 if t.median_ms else 0.0,
            "half_diff_pct": half, "best_half_diff_pct": best_half}


def _workload(path: str, out_shape: tuple):
    """One file as a :class:`Workload` in the form it holds (ONNX bytes or a torch module)."""
    from .backends import Workload

    if path.endswith(".pt"):
        import torch

        data = torch.load(path, map_location="cpu", weights_only=False)  # written by export_subnets for this job
        return Workload(tuple(data["input_shape"]), out_shape, torch=lambda m=data["model"]: m)
    import onnx

    data = Path(path).read_bytes()
    m = onnx.load_from_string(data)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    odims = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] or list(out_shape)
    return Workload(tuple(dims), tuple(odims), onnx=lambda d=data: d)


def run(job: dict) -> dict:
    from .backends import BackendConfig, create_backend
    from .probe import time_probe
    from .timing import TimingConfig, sample_calls

    backend = create_backend(job["backend"], BackendConfig(**job["config"]))
    # ``dtypes`` (optional, one per path): a file timed in another dtype than the backend's, by a twin backend
    # with that dtype (the FP32 original beside INT8 candidates, say, interleaved in the same rounds)
    dtypes = job.get("dtypes") or [backend.config.dtype] * len(job["paths"])
    twins = {d: backend if d == backend.config.dtype else create_backend(job["backend"], BackendConfig(**{**job["config"], "dtype": d}))
             for d in set(dtypes)}
    timing = TimingConfig(**job["timing"])
    e2e = job["e2e"]
    rounds = max(1, int(e2e["rounds"]))
    round_timing = TimingConfig(warmup_ms=float(e2e["warmup_ms"]), samples=max(1, int(e2e["samples_per_round"])),
                                min_sample_ms=timing.min_sample_ms, max_inner=timing.max_inner)
    out_shape = tuple(job.get("output_shape") or ())
    calls = [twins[d].loader(_workload(p, out_shape)) for p, d in zip(job["paths"], dtypes)]
    samples: list[list[list[float]]] = [[] for _ in calls]
    # ``probe``: the reference probe the caller's table is on (slimnas.latency.probe); ``extra_probes``: others
    # timed in the same rounds (to compare how well each follows the models' speed)
    kind = job.get("probe") or "conv"
    kinds = [kind] + [k for k in job.get("extra_probes") or () if k != kind]
    probes: dict[str, list[float]] = {k: [] for k in kinds}

    def time_probes() -> None:
        for k in kinds:
            probes[k].append(time_probe(backend, round_timing, k).median_ms)

    with backend.session_threads():
        for r in range(rounds):
            time_probes()
            order = range(len(calls)) if r % 2 == 0 else reversed(range(len(calls)))
            for i in order:
                samples[i].append(sample_calls(calls[i], round_timing)[0].tolist())
        time_probes()
    models = [{"path": p, "dtype": d, **summarise(s)} for p, d, s in zip(job["paths"], dtypes, samples)]
    return {"models": models, "probe_ms": probes[kind], "probe": kind, "probe_ms_by_kind": probes,
            "backend": backend.describe()}


def main(job_file: str, out_file: str) -> int:
    from ..errors import SlimnasError

    try:
        result = run(json.loads(Path(job_file).read_text()))
    except SlimnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(out_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
