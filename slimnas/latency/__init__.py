"""Latency tables measured on the target device, and a predictor validated against real end-to-end runs.

``profile`` builds a table (``latency_tables/<name>/entries.csv`` + ``fingerprint.json``) from a supernet's
units; ``LatencyPredictor(table, supernet).predict(subnets)`` sums them, calibrated end to end (per-kind slopes,
see :mod:`.calibration`); ``validate`` measures random subnets end to end and reports how well the
predictions hold.
"""
from ..lazy import lazy_getattr
from .backends import BackendConfig, backend_names, create_backend
from .timing import Timing, TimingConfig

# Imported on first use: the timing worker (``python -m slimnas.latency.worker``) loads this package and
# must start fast in a fresh process, without importing torch.
_LAZY = {"Calibration": ".calibration", "E2EConfig": ".e2e", "LatencyPredictor": ".predictor", "LatencyTable": ".table", "ProfileConfig": ".profiler", "profile": ".profiler"}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())

__all__ = ["BackendConfig", "Calibration", "E2EConfig", "LatencyPredictor", "LatencyTable", "ProfileConfig", "Timing", "TimingConfig",
           "backend_names", "create_backend", "profile"]
