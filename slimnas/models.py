"""Model intake: torchvision names, checkpoint files, ``module:factory`` specs, or a user's own module.

Checkpoints are read with ``weights_only=True``: a file that needs pickled classes is refused with an error
saying so. Every mistake (unknown name, wrong architecture or class count, unreadable file) is a
:class:`SlimnasError` whose one line names the problem and what to do.
"""
from __future__ import annotations

import difflib
import importlib
import pickle
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torchvision
from torch import nn

from .errors import SlimnasError

ModelSpec = Union[str, Path, nn.Module]


def torchvision_names() -> list[str]:
    """Image-classification architectures torchvision can build."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".pt", ".pth", ".ckpt", ".bin")) or "/" in spec or Path(spec).is_file()


def build_model(arch: str, num_classes: Optional[int] = None, weights: Optional[str] = None) -> nn.Module:
    """Build an architecture by torchvision name or ``package.module:factory`` (called with ``num_classes``).

    ``weights`` is a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``: downloads on first use).
    """
    if ":" in arch:
        mod_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SlimnasError(f"cannot import {arch!r} ({exc}); give 'package.module:factory' of an importable callable") from None
        kwargs = {"num_classes": num_classes} if num_classes is not None else {}
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise SlimnasError(f"{arch!r} returned a {type(model).__name__}, not a torch.nn.Module")
        return model
    names = torchvision_names()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise SlimnasError(f"unknown model name {arch!r}: {hint}")
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if weights is not None:
        kwargs["weights"] = weights
        classes = _weights_classes(arch, weights)
        if num_classes is not None and num_classes != classes:  # torchvision would refuse it; never drop it silently
            raise SlimnasError(f"torchvision weights {weights} of {arch} have {classes} classes but num_classes={num_classes}: "
                               f"drop num_classes (or set it to {classes}), or load your own state_dict file as weights")
    try:
        return torchvision.models.get_model(arch, **kwargs)
    except (ValueError, TypeError) as exc:
        raise SlimnasError(f"cannot build {arch}: {exc}") from None


def _weights_classes(arch: str, weights: str) -> int:
    """The class count of a torchvision weights name (from its metadata: nothing is downloaded)."""
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise SlimnasError(f"{arch} has no torchvision weights: pass a state_dict file as weights") from None
    names = [w.name for w in enum]
    chosen = enum.DEFAULT if weights == "DEFAULT" else next((w for w in enum if w.name == weights or str(w) == weights), None)
    if chosen is None:
        raise SlimnasError(f"unknown weights {weights!r} for {arch}: one of DEFAULT, {', '.join(names)}, or a state_dict file")
    return len(chosen.meta["categories"])


def read_checkpoint(path: Union[str, Path]) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise SlimnasError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise SlimnasError(f"checkpoint {path} is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise SlimnasError(
                f"checkpoint {path} contains pickled Python objects, which slimnas does not load "
                "(weights_only=True); save model.state_dict() instead"
            ) from None
        detail = next((l.strip() for l in str(exc).splitlines() if l.startswith(("Unsupported operand", "invalid load key"))),
                      "not a zip archive or pickle that torch.load accepts")
        raise SlimnasError(f"{path} is not a PyTorch checkpoint ({detail[:120]})") from None
    except Exception as exc:  # the unpickler fails on garbage with many exception types
        raise SlimnasError(f"{path} is not a readable PyTorch checkpoint ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    lines = [l for l in str(exc).strip().splitlines() if l.strip()]
    tail = lines[-1].strip() if lines else ""
    return f"{type(exc).__name__}: {tail[:120]}" if tail else type(exc).__name__


def _state_dict_of(data: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict):
        for key in ("state_dict", "model", "model_state_dict", "net"):
            if isinstance(data.get(key), dict) and data[key] and all(isinstance(v, torch.Tensor) for v in data[key].values()):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise SlimnasError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    prefix = "module."
    if all(k.startswith(prefix) for k in data):  # saved from DataParallel / DDP
        data = {k[len(prefix):]: v for k, v in data.items()}
    return data


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load a state_dict strictly, explaining the first mismatches (architecture or class count)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shape:
        parts = []
        if shape:
            k = shape[0]
            parts.append(f"{k} is {tuple(state[k].shape)} in the checkpoint but {tuple(own[k].shape)} in the model")
            last = list(own)[-1]
            if k in (last, list(own)[-2]) and state[k].shape[:1] != own[k].shape[:1]:
                parts[-1] += f" (pass num_classes={state[k].shape[0]})"
        if missing:
            parts.append(f"missing keys {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {', '.join(unexpected[:3])}{' …' if len(unexpected) > 3 else ''}")
        raise SlimnasError(f"checkpoint {source} does not fit {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(state)
    return model


def load_model(name_or_path: ModelSpec, num_classes: Optional[int] = None,
               weights: Optional[Union[str, Path]] = None) -> nn.Module:
    """The model a user brings, ready to convert.

    - an ``nn.Module``: returned as is (``weights`` may still name a state_dict file to load into it);
    - a torchvision name (``"mobilenet_v2"``) or ``"package.module:factory"``, optionally with ``weights``:
      a state_dict file (read with ``weights_only=True``) or a torchvision weights name (``"DEFAULT"``);
    - a file written by :func:`slimnas.save_exported`, or a checkpoint ``{"arch": name, "state_dict": ...}``.

    >>> m = load_model("mobilenet_v2", num_classes=10, weights="cifar10_mobilenet_v2.pth")  # doctest: +SKIP
    """
    if isinstance(name_or_path, nn.Module):
        model = name_or_path
    else:
        spec = str(name_or_path)
        if _looks_like_path(spec) and ":" not in spec.split("/")[-1]:
            path = Path(spec)
            data = read_checkpoint(path)
            if isinstance(data, dict) and isinstance(data.get("slimnas"), dict):
                from .export import load_exported

                return load_exported(path)
            arch = data.get("arch") if isinstance(data, dict) else None
            if not isinstance(arch, str):
                raise SlimnasError(
                    f"checkpoint {path} does not say which architecture it is: pass the name and the file, "
                    f"e.g. load_model('mobilenet_v2', num_classes=10, weights='{path}')"
                )
            classes = num_classes if num_classes is not None else data.get("num_classes")
            model = build_model(arch, num_classes=classes)
            return load_state(model, _state_dict_of(data, path), str(path)).eval()
        is_file = weights is not None and (Path(str(weights)).is_file() or _looks_like_path(str(weights)))
        model = build_model(spec, num_classes=num_classes, weights=None if is_file else weights)
        if not is_file:
            return model.eval()
    if weights is not None:
        path = Path(str(weights))
        load_state(model, _state_dict_of(read_checkpoint(path), path), str(path))
    return model.eval()
