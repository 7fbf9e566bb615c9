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
