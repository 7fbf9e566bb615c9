"""Paths in configs and run folders: relative ones are made absolute where they are read.

A path in a YAML config is relative to the config file, a path on the command line to the working directory;
run folders store absolute paths, so a run (``config.json`` of ``slimnas train``, ``config.yaml`` of
``slimnas slim``) can be resumed, searched or exported from any directory. Some values are a path or a name
(``model.name``: ``mobilenet_v2`` or ``ck/net.pt``; ``data.source``: ``digits`` or an ImageFolder root;
``bins``: ``latency:4:TABLE``): only the path part is touched.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def absolute(value: Optional[str], base: Union[str, Path, None] = None) -> Optional[str]:
    """``value`` (``~`` expanded) made absolute against ``base`` (default: the working directory)."""
    if value is None or str(value) == "":
        return value
    p = Path(os.path.expanduser(str(value)))
    if not p.is_absolute():
        p = Path(base if base is not None else Path.cwd()) / p
    return os.path.normpath(str(p))


def _is_path(value: str, base: Union[str, Path, None]) -> bool:
    return ("/" in value or os.sep in value or value.startswith("~") or value.endswith(CHECKPOINT_SUFFIXES)
            or Path(absolute(value, base)).exists())


def model_name(value: Optional[str], base: Union[str, Path, None] = None) -> Optional[str]:
    """A saved model file made absolute; a torchvision name or ``package.module:factory`` left as it is."""
    if value is None or ":" in str(value).split("/")[-1] or not _is_path(str(value), base):
        return value
    return absolute(value, base)


def weights(value: Optional[str], base: Union[str, Path, None] = None) -> Optional[str]:
    """A state_dict file made absolute; a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V2``) left alone."""
    if value is None or not _is_path(str(value), base):
        return value
    return absolute(value, base)


def data_source(value: Optional[str], base: Union[str, Path, None] = None) -> Optional[str]:
    """``digits`` / ``cifar10`` kept, ``cifar10:PATH`` with PATH made absolute, a folder made absolute."""
    if value is None:
        return value
    from .data.sources import SOURCES

    name, sep, arg = str(value).partition(":")
    if name in SOURCES:
        return f"{name}:{absolute(arg, base)}" if sep and arg else value
    return absolute(value, base)


def bins(value: Optional[str], base: Union[str, Path, None] = None) -> Optional[str]:
    """``latency:N:PATH`` with PATH made absolute; ``flops:N`` as it is."""
    if not value:
        return value
    kind, _, rest = str(value).partition(":")
    n, sep, path = rest.partition(":")
    if kind != "latency" or not sep or not path:
        return value
    return f"{kind}:{n}:{absolute(path, base)}"
