"""Shared set-up of the latency tests: a small supernet and a fast (not accurate) timing configuration."""
from __future__ import annotations

import slimnas
from slimnas.latency import ProfileConfig, TimingConfig
from slimnas.latency.e2e import E2EConfig

from .nets import TinyNet

SIZE = 16
RATIOS = (0.5, 1.0)
FAST = ProfileConfig(timing=TimingConfig(warmup_ms=1.0, samples=30, min_sample_ms=0.02, max_inner=5),
                     calibration_subnets=3, e2e=E2EConfig(rounds=2, samples_per_round=5))


def tiny_supernet(size: int = SIZE):
    return slimnas.convert(TinyNet().eval(), size, ratios=RATIOS)


MODEL_ARGS = {"model": "tests.nets:tiny_net", "num_classes": 10, "ratios": list(RATIOS)}


SLIM_RATIOS = (0.25, 0.5, 0.75, 1.0)  # the ratios of tests/slim_helpers.py's TINY_YAML


def tiny_slim_table(path, dtype: str = "fp32", batch: int = 1):
    """A quick latency table of TinyNet at 32 px for the tiny `slimnas slim` config, measured here (fast, not accurate)."""
    import torch

    from slimnas.latency import BackendConfig, create_backend, profile

    torch.manual_seed(0)
    net = slimnas.convert(TinyNet(10), 32, ratios=SLIM_RATIOS)
    profile(net, create_backend("onnxruntime", BackendConfig(batch=batch, dtype=dtype)), path, model="tests.nets:tiny_net",
            config=FAST, model_args={"model": "tests.nets:tiny_net", "num_classes": 10, "ratios": list(SLIM_RATIOS)})
    return path
