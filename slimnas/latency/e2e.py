"""End-to-end timing of whole networks, interleaved, in a process of its own.

A process that has just run PyTorch keeps its OpenMP workers spinning and steals the cores (measured here:
0.39 ms fresh vs 0.56 ms after training), so exported models (ONNX, or plain PyTorch modules for the torch
backend) are timed by ``python -m slimnas.latency.worker`` in a fresh process. Models are timed in rounds
(each round times every model a little, in alternating order, plus the reference probe), so a change of
machine speed affects all of them alike.

Two statistics per model: the median of all samples, and the median of the quietest round (``best_round_ms``,
the lowest round median). Other engineers' jobs share these machines and only ever slow a round down, often
by 30-100% for a second or two, so the quietest round is far more repeatable (measured here over 130
MobileNetV2 subnets, 16 rounds: even-vs-odd-rounds RMS disagreement 0.9% at 32x32 and 2.8% at 224x224 for the
quietest round, 9.0% and 7.6% for the pooled median). The measurement's own repeat error comes from the same
data: the even rounds and the odd rounds are two independent half-length measurements taken side by side;
the RMS of their relative difference over √2 is the repeat error of one half-length measurement, an upper
bound for the full one (see :func:`repeat_error_pct`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import SlimnasError
from ..export import export_onnx, export_subnet
from ..fileio import atomic_torch_save
from ..subnet import Subnet
from .backends.base import BackendConfig
from .timing import TimingConfig, torch_threads


# statistic -> (latency key, even-vs-odd difference key) in a worker's per-model result
STATISTICS = {"best_round": ("best_round_ms", "best_half_diff_pct"), "median": ("median_ms", "half_diff_pct")}


@dataclass(frozen=True)
class E2EConfig:
    """How whole networks are timed end to end."""

    rounds: int = 20  # interleaved rounds; each times every model once (alternating order) plus the probe
    samples_per_round: int = 10  # timed samples of each model per round (each >= TimingConfig.min_sample_ms)
    warmup_ms: float = 5.0  # re-warm each model at the start of its turn in a round
    statistic: str = "best_round"  # what a model's latency is: best_round (quietest round's median) | median
    # fresh worker processes, one after another, each timing every model over all the rounds; with more than one a
    # model's latency is combined over them (:func:`combine_processes`). One process's figures can be off by more
    # than its own even-vs-odd error says: on a 2-core AMD EPYC VM the same two models timed in fresh processes
    # gave ratios of 0.40-0.52 while each process's even and odd rounds agreed within 1-2%
    # (benchmarks/results/timing_processes/).
    processes: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.samples_per_round < 1:
            raise SlimnasError(f"end-to-end timing needs rounds >= 1 and samples_per_round >= 1, got {self.rounds}, {self.samples_per_round}")
        if self.processes < 1:
            raise SlimnasError(f"end-to-end timing needs processes >= 1, got {self.processes}")
        if self.statistic not in STATISTICS:
            raise SlimnasError(f"end-to-end statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}")

    def latency_ms(self, model: dict) -> float:
        """A worker result's latency under this statistic."""
        return float(model[STATISTICS[self.statistic][0]])

    def probe_ms(self, probes: Sequence[float]) -> float:
        """The run's reference probe under this statistic (quietest round, or median over rounds)."""
        return float(np.min(probes) if self.statistic == "best_round" else np.median(probes))

    def repeat_error_pct(self, models: Sequence[dict]) -> float:
        return repeat_error_pct([m[STATISTICS[self.statistic][1]] for m in models])


MODEL_FORMATS = {"onnx": ".onnx", "torch": ".pt"}  # how a backend takes a whole network (Backend.model_format)
TORCH_FORMAT = "slimnas.e2e_torch/1"


def export_subnets(supernet, subnets: Sequence[Subnet], folder: Path, batch: int = 1, fmt: str = "onnx") -> list[Path]:
    """Each subnet as a plain exported model at ``batch`` (``<hash>.onnx`` or ``<hash>.pt``; existing files
    are reused), in the form its backend times: ONNX for onnxruntime and TensorRT, the plain PyTorch module
    (the original class, see :func:`slimnas.export.export_subnet`) for the torch backend.

    The export runs on one thread; the caller's thread count is given back afterwards
    (:func:`.timing.torch_threads`), so training or searching after it keeps its own.
    """
    if fmt not in MODEL_FORMATS:
        raise SlimnasError(f"whole networks are exported as {' or '.join(MODEL_FORMATS)}, not {fmt!r}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with torch_threads(1):
        for s in subnets:
            path = folder / f"{s.hash}{MODEL_FORMATS[fmt]}"
            if not path.is_file():
                model = export_subnet(supernet, s).eval()
                if fmt == "onnx":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        export_onnx(model, path, tuple(supernet.input_shape), batch=batch, check=False)
                else:
                    # A pickled module, written and read back only by slimnas's own timing worker.
                    atomic_torch_save({"format": TORCH_FORMAT, "model": model,
                                       "input_shape": [batch, *supernet.input_shape]}, path)
            paths.append(path)
    return paths


def time_onnx_files(paths: Sequence[Path], backend: str, config: BackendConfig, timing: TimingConfig,
                    e2e: E2EConfig = E2EConfig(), output_shape: Sequence[int] = (),
                    dtypes: Optional[Sequence[str]] = None, probe: str = "conv", extra_probes: Sequence[str] = ()) -> dict:
    """Time exported models (``.onnx`` files, or ``.pt`` files from :func:`export_subnets` for the torch
    backend) end to end in ``e2e.processes`` fresh worker processes, one after another.

    Returns ``{"models": [...], "probe_ms": [...], "processes": [...]}``: per model the median over all rounds'
    samples, p10/p90, the quietest round's median, each round's median, ``spread_pct`` (range of the round
    medians) and the even-vs-odd-rounds differences (see ``worker.summarise``); the reference probe once per round
    and at the end. With several processes these are combined over them (:func:`combine_processes`) and
    ``processes`` keeps each one's own output. A worker that fails (a backend refusing the files, say) is a
    one-line :class:`SlimnasError`. ``dtypes`` (one per path) times a file in another dtype than
    ``config.dtype`` (an FP32 original among INT8 candidates), in the same process and rounds. ``probe`` names the
    reference probe (:data:`slimnas.latency.probe.PROBES`; the table's own), ``extra_probes`` others timed beside
    it (``probe_ms_by_kind`` holds each one's rounds).
    """
    from .probe import check_probe

    for kind in (probe, *extra_probes):
        check_probe(kind)
    if dtypes is not None and len(dtypes) != len(paths):
        raise SlimnasError(f"{len(dtypes)} dtypes for {len(paths)} files to time")
    job = {"paths": [str(p) for p in paths], "backend": backend, "config": asdict(config),
           "timing": asdict(timing), "e2e": asdict(e2e), "output_shape": list(output_shape),
           "dtypes": list(dtypes) if dtypes is not None else None, "probe": probe, "extra_probes": list(extra_probes)}
    raws = [_run_worker(job, config.threads) for _ in range(e2e.processes)]
    return combine_processes(raws) if len(raws) > 1 else {**raws[0], "processes": raws}


def _run_worker(job: dict, threads: int) -> dict:
    """One ``slimnas.latency.worker`` process on ``job``: its output."""
    with tempfile.TemporaryDirectory(prefix="slimnas-e2e-") as tmp:
        job_file, out_file = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_file.write_text(json.dumps(job))
        # The worker unpickles torch models: it must import what this process imports (a model from a
        # ``module:factory`` next to the caller, say).
        path = os.pathsep.join([p for p in sys.path if p and Path(p).is_dir()] + [os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=path.rstrip(os.pathsep))
        proc = subprocess.run([sys.executable, "-m", "slimnas.latency.worker", str(job_file), str(out_file)],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0 or not out_file.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}, no output"]
            raise SlimnasError(f"the timing worker failed ({tail[0]})")
        return json.loads(out_file.read_text())


def median_se_pct(logs) -> np.ndarray:
    """The standard error (%) of the median over the first axis of log values (1.25 sd / sqrt(n)); 0 for one row."""
    v = np.asarray(logs, float)
    if v.shape[0] < 2:
        return np.zeros(v.shape[1:])
    return 1.2533 * v.std(axis=0, ddof=1) / np.sqrt(v.shape[0]) * 100


def combine_processes(raws: Sequence[dict]) -> dict:
    """Several worker processes' outputs for the same files as one.

    Each statistic (``best_round_ms``, ``median_ms``) is divided, per process, by that process's common speed (the
    geometric mean of all its models' values), the median over processes taken per model and multiplied by the
    median speed: a process that ran everything slower moves no ratio, and a process in which one model alone came
    out slow or fast (the per-process effect that one process's rounds cannot show) is outvoted. ``between_pct``
    is each model's standard error of that median from the spread over processes (1.25 sd / sqrt(processes), of
    the speed-normalised log values, in %): the repeat error across processes. Round medians and probes are
    concatenated; p10/p90 and the even-vs-odd differences are medians over processes.
    """
    n = len(raws[0]["models"])
    if any(len(r["models"]) != n for r in raws):
        raise SlimnasError("the timing processes returned different numbers of models")
    out_models = [dict(m) for m in raws[0]["models"]]
    for key in ("best_round_ms", "median_ms"):
        v = np.array([[float(m[key]) for m in r["models"]] for r in raws])  # processes x models
        logs = np.log(np.maximum(v, 1e-12))
        speed = logs.mean(axis=1, keepdims=True)
        norm = logs - speed
        combined = np.exp(np.median(norm, axis=0) + np.median(speed))
        se = median_se_pct(norm)
        for i, m in enumerate(out_models):
            m[key] = float(combined[i])
            m[f"process_{key}"] = [float(x) for x in v[:, i]]
            if key == "best_round_ms":
                m["between_pct"] = float(se[i])
    for i, m in enumerate(out_models):
        rows = [r["models"][i] for r in raws]
        for key in ("p10_ms", "p90_ms", "half_diff_pct", "best_half_diff_pct"):
            vals = [float(x[key]) for x in rows if x.get(key) is not None and np.isfinite(float(x[key]))]
            m[key] = float(np.median(vals)) if vals else float("nan")
        m["round_medians_ms"] = [float(x) for row in rows for x in row.get("round_medians_ms", [])]
        m["n"] = int(sum(int(x["n"]) for x in rows))
        rm = m["round_medians_ms"]
        m["spread_pct"] = (max(rm) - min(rm)) / m["median_ms"] * 100 if rm and m["median_ms"] else 0.0
    probes = [float(p) for r in raws for p in r["probe_ms"]]
    by_kind = {kind: [float(p) for r in raws for p in r.get("probe_ms_by_kind", {}).get(kind, [])]
               for kind in raws[0].get("probe_ms_by_kind", {})}
    return {**{k_: v_ for k_, v_ in raws[0].items() if k_ not in ("models", "probe_ms", "probe_ms_by_kind")},
            "models": out_models, "probe_ms": probes, "probe_ms_by_kind": by_kind, "processes": list(raws)}


def repeat_error_pct(half_diff_pct: Sequence[float]) -> float:
    """RMS repeat error (%) of one half-length measurement, from the even-vs-odd differences: RMS(d) / √2."""
    d = np.asarray(half_diff_pct, float)
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d ** 2) / 2)) if len(d) else float("nan")
