"""Latency tables measured on the target device, and a predictor validated against real end-to-end runs.

``profile`` builds a table (``latency_tables/<name>/entries.csv`` + ``fingerprint.json``) from a supernet's
units; ``LatencyPredictor(table, supernet).predict(subnets)`` sums them, calibrated end to end (per-kind slopes,
see :mod:`.calibration`); ``validate`` measures random subnets end to end and reports how well the
predictions hold.
"""
from .backends import BackendConfig, backend_names, create_backend
from .calibration import Calibration
from .e2e import E2EConfig
from .predictor import LatencyPredictor
from .profiler import ProfileConfig, profile
from .table import LatencyTable
from .timing import Timing, TimingConfig

__all__ = ["BackendConfig", "Calibration", "E2EConfig", "LatencyPredictor", "LatencyTable", "ProfileConfig", "Timing",
           "TimingConfig", "backend_names", "create_backend", "profile"]
