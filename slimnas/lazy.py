"""Attributes of a package imported on first use (PEP 562), so a process that needs a small part of slimnas
(the end-to-end timing worker) starts without importing torch."""
from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str], namespace: dict) -> Callable[[str], object]:
    """A module ``__getattr__`` importing ``names[attr]`` (a module relative to ``package``) on first access;
    other names are tried as submodules."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name], package), name)
            namespace[name] = value
            return value
        try:  # a submodule not imported yet (``slimnas.export.onnx_max_abs_diff``), as an eager package allows
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
