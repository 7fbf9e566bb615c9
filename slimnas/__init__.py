"""slimnas: slim a trained CNN to a latency budget on a specific device.

The core verbs: ``load_model`` → ``convert`` (a width-searchable supernet found by tracing) → pick a
``Subnet`` → ``export_subnet`` (a plain model of the original class) → ``export_onnx``/``save_exported``.
The whole pipeline: :func:`slimnas.pipeline.slim` (``slimnas slim``) and :func:`slimnas.pipeline.demo`.
"""
from .errors import SlimnasError
from .lazy import lazy_getattr

__version__ = "0.1.0"

# Everything else is imported on first use, so a process that needs only a small part (the end-to-end timing
# worker, ``python -m slimnas.latency.worker``) starts without importing torch.
_LAZY = {
    "export_onnx": ".export", "export_subnet": ".export", "load_exported": ".export", "save_exported": ".export",
    "build_model": ".models", "load_model": ".models",
    "Constraint": ".search", "SearchConfig": ".search", "SearchResult": ".search", "evolve": ".search",
    "parse_constraint": ".search", "parse_constraints": ".search",
    "SearchSpace": ".space", "SpaceConfig": ".space", "Subnet": ".subnet",
    "ConvertConfig": ".supernet", "Supernet": ".supernet", "convert": ".supernet",
}

__all__ = ["SlimnasError", *sorted(_LAZY)]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
