"""A tiny but complete slim config (TinyNet at 16 px on the built-in digits, a few steps per stage)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

TRAIN = ("{epochs: 2, steps_per_epoch: 4, batch_size: 32, optimizer: adamw, lr: 0.003, eval_images: 0, "
         "calib_images: 32, progress: false}")

# latency.processes: 1, one timing process per end-to-end timing: combining several is tested on its own
# (test_latency_profiler, test_headline), and three processes per timing only cost time here. Tests quote this file's
# line numbers: keep the YAML's lines where they are.
TINY_YAML = f"""\
# TinyNet on the built-in digits: every stage of the pipeline, a few steps each
model: {{name: "tests.nets:tiny_net", num_classes: 10, input_size: 32}}
base: {TRAIN}
data: {{source: digits}}
space: {{ratios: [0.25, 0.5, 0.75, 1.0]}}
latency: {{rounds: 2, samples: 30, steady_pct: 50, processes: 1, profile: {{calibration_subnets: 4, passes: 1, e2e: {{rounds: 2, samples_per_round: 5}}, timing: {{warmup_ms: 5.0, min_sample_ms: 0.2}}}}}}
constraints: ["latency<=0.8x"]
supernet:
  strategy: cafenet
  options: {{k: 2}}
  train: {TRAIN}
fitness: {{calib_images: 32, val_images: 48}}
search: {{population: 6, generations: 2, sensitivity_levels: 1}}
verify: {{top_k: 3, rounds: 3}}
finetune:
  train: {TRAIN}
"""


def write_config(folder: Path, text: str = TINY_YAML, name: str = "tiny.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def slimnas(*args: str, timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The installed command line in a fresh process (one thread, as the timing protocol expects)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "slimnas", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
