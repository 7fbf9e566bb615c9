"""End-to-end timing of whole networks, interleaved, in a process of its own.

A process that has just run PyTorch keeps its OpenMP workers spinning and steals the cores (measured here:
0.39 ms fresh vs 0.56 ms after training), so ONNX models are timed by ``python -m slimnas.latency.worker`` in
a fresh process. Models are timed in rounds (each round times every model a little, in alternating order,
plus the reference probe), so a change of machine speed affects all of them alike.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from ..errors import SlimnasError
from ..export import export_onnx, export_subnet
from ..subnet import Subnet
from .backends.base import BackendConfig
from .timing import TimingConfig


def export_subnets(supernet, subnets: Sequence[Subnet], folder: Path, batch: int = 1) -> list[Path]:
    """Each subnet as a plain exported model in ONNX (``<hash>.onnx``; existing files are reused), at ``batch``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    torch.set_num_threads(1)
    for s in subnets:
        path = folder / f"{s.hash}.onnx"
        if not path.is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(export_subnet(supernet, s).eval(), path, tuple(supernet.input_shape), batch=batch,
                            check=False)
        paths.append(path)
    return paths


def time_onnx_files(paths: Sequence[Path], backend: str, config: BackendConfig, timing: TimingConfig,
                    rounds: int = 3, output_shape: Sequence[int] = ()) -> dict:
    """Time ONNX files end to end in a fresh worker process; returns ``{"models": [...], "probe": [...]}``."""
    with tempfile.TemporaryDirectory(prefix="slimnas-e2e-") as tmp:
        job = {"paths": [str(p) for p in paths], "backend": backend, "config": asdict(config),
               "timing": asdict(timing), "rounds": rounds, "output_shape": list(output_shape)}
        job_file, out_file = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_file.write_text(json.dumps(job))
        env = dict(os.environ, OMP_NUM_THREADS=str(config.threads))
        proc = subprocess.run([sys.executable, "-m", "slimnas.latency.worker", str(job_file), str(out_file)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out_file.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SlimnasError(f"the timing worker failed ({tail[0]})")
        return json.loads(out_file.read_text())
