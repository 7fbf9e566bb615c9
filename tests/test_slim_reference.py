"""The original's reference timing (the budget's basis) is re-timed while unsteady and must end steady.

Unsteadiness is injected by the real threshold: ``latency.steady_pct: 0`` makes every real timing count as
unsteady (no repeat error is below 0%); a generous threshold lets the first one pass.
"""
from __future__ import annotations

import logging

import pytest
import torch

import slimnas
from slimnas.errors import SlimnasError
from slimnas.latency import BackendConfig, create_backend
from slimnas.pipeline.config import LatencyConfig
from slimnas.pipeline.prepare import measure_reference
from tests.nets import TinyNet


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    original = TinyNet(10).eval()
    return original, slimnas.convert(original, 32, ratios=(0.25, 0.5, 1.0))


def test_an_unsteady_reference_timing_is_timed_again_then_refused(models, tmp_path, caplog):
    original, net = models
    caplog.set_level(logging.INFO, logger="slimnas")
    cfg = LatencyConfig(rounds=2, samples=30, steady_pct=0.0, attempts=3)
    with pytest.raises(SlimnasError, match=r"timing stayed unsteady over 3 attempt\(s\) \(repeat error [0-9.]+%, "
                                           r"latency.steady_pct is 0%\)"):
        measure_reference(original, net, create_backend("onnxruntime", BackendConfig()), cfg, tmp_path)
    logs = [r.getMessage() for r in caplog.records]
    again = [m for m in logs if "the timing was unsteady" in m and "timing again" in m]
    assert len(again) == 2 and again[0].endswith("4 rounds") and again[1].endswith("8 rounds"), logs  # doubling


def test_a_steady_reference_timing_is_kept_and_its_repeat_error_logged(models, tmp_path, caplog):
    original, net = models
    caplog.set_level(logging.INFO, logger="slimnas")
    cfg = LatencyConfig(rounds=2, samples=30, steady_pct=1e6, attempts=3)
    ref = measure_reference(original, net, create_backend("onnxruntime", BackendConfig()), cfg, tmp_path)
    logs = [r.getMessage() for r in caplog.records]
    assert ref["original"]["attempt"] == 1 and ref["original"]["rounds"] == 2 and not any("timing again" in m for m in logs)
    line = next(m for m in logs if m.startswith("original model:"))
    assert f"repeat error {ref['original']['repeat_pct']:.1f}%" in line and "attempt 1 of at most 3" in line
