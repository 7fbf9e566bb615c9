"""Latency tables measured on the target device, and a predictor validated against real end-to-end runs.

``profile`` builds a table (``latency_tables/<name>/entries.csv`` + ``fingerprint.json``) from a supernet's
units; ``LatencyPredictor(table, supernet).predict(subnets)`` sums them, calibrated end to end (per-kind slopes,
see :mod:`.calibration`); ``validate`` measures random subnets end to end and reports how well the
predictions hold.
"""
import importlib

from .backends import BackendConfig, backend_names, create_backend
from .timing import Timing, TimingConfig

# Imported on first use: the timing worker (``python -m slimnas.latency.worker``) loads this package and
# must start fast in a fresh process, without importing torch.
_LAZY = {"Calibration": ".calibration", "E2EConfig": ".e2e", "LatencyPredictor": ".predictor", "LatencyTable": ".table", "ProfileConfig": ".profiler", "profile": ".profiler"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BackendConfig", "Calibration", "E2EConfig", "LatencyPredictor", "LatencyTable", "ProfileConfig", "Timing", "TimingConfig",
           "backend_names", "create_backend", "profile"]
