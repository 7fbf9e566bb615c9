"""Latency backends: one file per runtime, registered by name (``onnxruntime``, ``torch``, ``tensorrt``).

Adding one is one new file with a :class:`Backend` subclass decorated by :func:`register`.
"""
from .base import BACKENDS, Backend, BackendConfig, Workload, backend_names, create_backend, register
from . import onnxruntime_backend, torch_backend, tensorrt_backend  # noqa: F401  (registration)

__all__ = ["BACKENDS", "Backend", "BackendConfig", "Workload", "backend_names", "create_backend", "register"]
