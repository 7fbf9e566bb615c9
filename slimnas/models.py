"""Model intake and storage: torchvision names, checkpoint files, ``module:factory`` specs, a user's own module,
and the self-describing ``model.pt`` of an exported (slimmed) model.

Checkpoints are read with ``weights_only=True``: a file that needs pickled classes is refused with an error
saying so. Every mistake (unknown name, wrong architecture or class count, unreadable file) is a
:class:`SlimnasError` whose one line names the problem and what to do.

``save_exported``/``load_exported`` store an exported model as a state_dict plus JSON metadata: the
architecture to rebuild (a torchvision name or ``module:factory``), every conv/BN/linear layer's width, the
channel counts the model's own modules hold as int attributes (a split's sizes), the subnet, and how to feed it (:class:`slimnas.data.transforms.InputSpec`, class names). When the caller does not
name the architecture, :func:`rebuild_spec` finds one that provably rebuilds the model (a torchvision builder
of its class, or its importable ``module:Class``); a class that cannot be rebuilt by import (one defined in
``__main__`` or a function) is saved too, and loads by passing a fresh instance: ``load_exported(path, MyNet())``.
No code is pickled: TorchScript is deprecated and ``torch.export.load`` unpickles, so neither is stored.
This module needs nothing from :mod:`slimnas.export` (which re-exports these names).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torchvision
from torch import nn

from .data.transforms import InputSpec
from .errors import SlimnasError
from .fileio import atomic_torch_save

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


def architecture_of(spec: ModelSpec) -> Optional[str]:
    """What :func:`build_model` rebuilds ``spec``'s class from: the name or ``module:factory`` itself, or, for a
    file, the architecture it records (a checkpoint's ``arch``, an exported model's); ``None`` if unknown."""
    if isinstance(spec, nn.Module):
        return None
    spec = str(spec)
    if not (_looks_like_path(spec) and ":" not in spec.split("/")[-1]):
        return spec
    data = read_checkpoint(spec)
    if isinstance(data, dict) and isinstance(data.get("slimnas"), dict):
        arch = data["slimnas"].get("arch")
    else:
        arch = data.get("arch") if isinstance(data, dict) else None
    return arch if isinstance(arch, str) else None


# -- exported models: model.pt -------------------------------------------------------------------------------
FORMAT = "slimnas.exported/1"


_CONV, _BN, _LINEAR = nn.Conv2d, (nn.BatchNorm1d, nn.BatchNorm2d), nn.Linear
_LN, _GN = nn.LayerNorm, nn.GroupNorm


def layer_shapes(model: nn.Module) -> dict[str, dict]:
    """Widths of every conv, BatchNorm, linear, LayerNorm and GroupNorm layer, subclasses included (timm's
    ``BatchNormAct2d``, ``Conv2dSame``, torchvision's ``LayerNorm2d``), and the shapes of the tensors any other
    module holds itself (a ConvNeXt block's per-channel layer scale): enough to rebuild narrower layers."""
    out: dict[str, dict] = {}
    for name, m in model.named_modules():
        if isinstance(m, _CONV):
            out[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, _BN):
            out[name] = {"out": m.num_features}
        elif isinstance(m, _LINEAR):
            out[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, _LN):
            out[name] = {"normalized_shape": list(m.normalized_shape)}
        elif isinstance(m, _GN):
            out[name] = {"out": m.num_channels, "groups": m.num_groups}
        else:
            own = {k: list(t.shape) for k, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
                   if t is not None}
            if own:
                out[name] = {"tensors": own}
    return out


def _resized(old: nn.Module, sizes: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """A copy of ``old``, of its exact class, with its size attributes and tensors at the new shapes.

    Copying instead of calling the constructor keeps every other attribute of a subclass (an activation, a
    padding rule) whatever its constructor takes; the tensors are placeholders that the state_dict fills."""
    new = type(old).__new__(type(old))
    new.__dict__.update(old.__dict__)
    new._parameters, new._buffers, new._modules = dict(old._parameters), dict(old._buffers), dict(old._modules)
    for attr, shape in shapes.items():
        if attr in old._parameters and old._parameters[attr] is not None:
            t = old._parameters[attr]
            new._parameters[attr] = nn.Parameter(t.new_empty(shape), requires_grad=t.requires_grad)
        elif attr in old._buffers and old._buffers[attr] is not None:
            new._buffers[attr] = old._buffers[attr].new_empty(shape)
    for attr, v in sizes.items():
        object.__setattr__(new, attr, v)
    return new


def reshape_to(model: nn.Module, layers: dict[str, dict]) -> nn.Module:
    """Rebuild ``model``'s conv, BatchNorm, linear, LayerNorm and GroupNorm layers (subclasses keep their class) with
    the given channel counts, and give other modules' own tensors the given shapes (in place)."""
    for name, shape in layers.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise SlimnasError(f"the saved model has a layer {name!r} that this architecture lacks") from None
        if "tensors" in shape and not isinstance(old, (_CONV, _BN, _LINEAR, _LN, _GN)):
            _reshape_own(old, name, shape["tensors"])
            continue
        if isinstance(old, _CONV) and "groups" in shape and "in" in shape:
            if (old.in_channels, old.out_channels, old.groups) == (shape["in"], shape["out"], shape["groups"]):
                continue
            cin, cout, groups = shape["in"], shape["out"], shape["groups"]
            new = _resized(old, {"in_channels": cin, "out_channels": cout, "groups": groups},
                           {"weight": (cout, cin // groups, *old.weight.shape[2:]), "bias": (cout,)})
        elif isinstance(old, _BN) and set(shape) == {"out"}:
            if old.num_features == shape["out"]:
                continue
            n = shape["out"]
            new = _resized(old, {"num_features": n}, {k: (n,) for k in ("weight", "bias", "running_mean", "running_var")})
        elif isinstance(old, _LINEAR) and "in" in shape and "groups" not in shape:
            if (old.in_features, old.out_features) == (shape["in"], shape["out"]):
                continue
            new = _resized(old, {"in_features": shape["in"], "out_features": shape["out"]},
                           {"weight": (shape["out"], shape["in"]), "bias": (shape["out"],)})
        elif isinstance(old, _LN) and "normalized_shape" in shape:
            ns = tuple(shape["normalized_shape"])
            if tuple(old.normalized_shape) == ns:
                continue
            new = _resized(old, {"normalized_shape": ns}, {"weight": ns, "bias": ns})
        elif isinstance(old, _GN) and "groups" in shape and "in" not in shape:
            if (old.num_channels, old.num_groups) == (shape["out"], shape["groups"]):
                continue
            n = shape["out"]
            new = _resized(old, {"num_channels": n, "num_groups": shape["groups"]}, {"weight": (n,), "bias": (n,)})
        else:
            raise SlimnasError(f"layer {name!r} is a {type(old).__name__} here but was saved as another kind of layer "
                               f"({', '.join(sorted(shape))})")
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return model


def _reshape_own(module: nn.Module, name: str, shapes: dict[str, list[int]]) -> None:
    """Give a module's own parameters and buffers new shapes (placeholders the state_dict fills), in place: the module
    may hold sub-modules, which stay where they are."""
    for attr, shape in shapes.items():
        shape = tuple(shape)
        if attr in module._parameters and module._parameters[attr] is not None:
            t = module._parameters[attr]
            if tuple(t.shape) != shape:
                module._parameters[attr] = nn.Parameter(t.new_empty(shape), requires_grad=t.requires_grad)
        elif attr in module._buffers and module._buffers[attr] is not None:
            if tuple(module._buffers[attr].shape) != shape:
                module._buffers[attr] = module._buffers[attr].new_empty(shape)
        else:
            raise SlimnasError(f"the saved model has a tensor {name}.{attr} that this architecture lacks")


def _is_count(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, (list, tuple)) and bool(v)
                                  and all(isinstance(e, int) and not isinstance(e, bool) for e in v))


def module_attrs(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The int and int-list data attributes of the model's own modules (torch's layers aside).

    Some forwards read channel counts from these (timm's ``MixedConv2d.splits``, ``GhostModule.out_chs``): a
    subnet sets them (:class:`slimnas.trace.constants.AttrPatch`), so a saved export records them, as plain
    values."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if type(m).__module__.startswith("torch."):
            continue
        attrs = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in vars(m).items()
                 if not k.startswith("_") and _is_count(v)}
        if attrs:
            out[name] = attrs
    return out


def set_module_attrs(model: nn.Module, attrs: dict[str, dict[str, Any]]) -> nn.Module:
    """Give ``model``'s modules the attribute values :func:`module_attrs` recorded (in place)."""
    for name, values in attrs.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise SlimnasError(f"the saved model has a module {name!r} that this architecture lacks") from None
        for k, v in values.items():
            old = getattr(m, k, None)
            if not _is_count(old) or isinstance(old, int) != isinstance(v, int):
                raise SlimnasError(f"the saved model sets {name}.{k} to {v}, which this architecture does not hold as "
                                   "a channel count")
            new = int(v) if isinstance(old, int) else type(old)(int(e) for e in v)
            if new != old:
                setattr(m, k, new)
    return model


def conv_kernels(model: nn.Module) -> dict[str, dict[str, list[int]]]:
    """Kernel size and padding of every conv with a kernel larger than 1x1: what an export with elastic kernels
    changes (kept apart from :func:`layer_shapes`, whose digest names an architecture's widths)."""
    return {name: {"kernel": list(m.kernel_size), "padding": list(m.padding)} for name, m in model.named_modules()
            if isinstance(m, _CONV) and not isinstance(m.padding, str) and max(m.kernel_size) > 1}


def set_conv_kernels(model: nn.Module, kernels: dict[str, dict[str, list[int]]]) -> nn.Module:
    """Give ``model``'s convs the kernel sizes and paddings :func:`conv_kernels` recorded (in place; weights are
    placeholders the state_dict fills)."""
    for name, spec in kernels.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise SlimnasError(f"the saved model has a conv {name!r} that this architecture lacks") from None
        k, pad = tuple(spec["kernel"]), tuple(spec["padding"])
        if not isinstance(old, _CONV):
            raise SlimnasError(f"the saved model has a conv {name!r} where this architecture has a {type(old).__name__}")
        if tuple(old.kernel_size) == k and tuple(old.padding) == pad:
            continue
        new = _resized(old, {"kernel_size": k, "padding": pad}, {"weight": tuple(old.weight.shape[:2]) + k})
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return model


def identity_modules(model: nn.Module) -> list[str]:
    """The names of the model's ``nn.Identity`` modules (blocks an export with elastic depth dropped among them)."""
    return [name for name, m in model.named_modules() if name and type(m) is nn.Identity]


def to_identity(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Replace the named modules of ``model`` by ``nn.Identity`` (in place), as :func:`identity_modules` recorded."""
    for name in names:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise SlimnasError(f"the saved model drops a block {name!r} that this architecture lacks") from None
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, nn.Identity())
    return model


def architecture(model: nn.Module) -> dict:
    """What a slimmed model changed of its class, as plain JSON: layer shapes, channel-count attributes, the blocks
    it dropped (``nn.Identity``) and its conv kernels. :func:`apply_architecture` gives a fresh instance the same."""
    return {"layers": layer_shapes(model), "attrs": module_attrs(model), "identity": identity_modules(model),
            "kernels": conv_kernels(model)}


def apply_architecture(model: nn.Module, arch: Mapping) -> nn.Module:
    """Give a fresh instance of the original class what :func:`architecture` recorded (in place; weights are
    placeholders a state_dict fills). Records from before depth, kernels or attributes lack those keys."""
    to_identity(model, arch.get("identity") or [])  # blocks the subnet dropped (elastic depth)
    set_conv_kernels(model, arch.get("kernels") or {})  # elastic kernels
    reshape_to(model, arch["layers"])
    set_module_attrs(model, arch.get("attrs") or {})
    return model


def _candidate_archs(cls: type) -> list[str]:
    """Specs that may build ``cls``: torchvision builders returning it, then the class's own import path."""
    out = []
    if cls.__module__.startswith("torchvision.models"):
        for name in torchvision_names():
            if inspect.signature(torchvision.models.get_model_builder(name)).return_annotation is cls:
                out.append(name)
    if cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__:
        try:
            mod = importlib.import_module(cls.__module__)
            obj = mod
            for part in cls.__qualname__.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            obj = None
        if obj is cls:
            out.append(f"{cls.__module__}:{cls.__qualname__}")
    return out


@torch.no_grad()
def rebuild_spec(model: nn.Module, num_classes: Optional[int] = None, inputs: Optional[InputSpec] = None) -> Optional[str]:
    """A torchvision name or ``module:Class`` from which :func:`load_exported` provably rebuilds ``model``.

    Each candidate is built (with ``num_classes`` when given), reshaped to the model's layer widths and must take
    its state_dict strictly, with the same module types; with ``inputs``, it must also compute the same outputs.
    ``None`` when no candidate does (a class defined in ``__main__``, or one whose constructor needs arguments).
    """
    state, layers, attrs = model.state_dict(), layer_shapes(model), module_attrs(model)
    kinds = [type(m) for m in model.modules()]
    for spec in _candidate_archs(type(model)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fresh = set_module_attrs(reshape_to(build_model(spec, num_classes=num_classes), layers), attrs)
            fresh.load_state_dict(state)
        except Exception:  # any constructor may fail in its own way: the candidate simply does not fit
            continue
        if [type(m) for m in fresh.modules()] != kinds:
            continue
        if inputs is not None:
            x = torch.randn(2, 3, inputs.size, inputs.size, generator=torch.Generator().manual_seed(0))
            was = model.training
            try:
                same = torch.allclose(fresh.eval()(x), model.eval()(x), atol=1e-5, rtol=1e-4)
            except Exception:
                same = False
            finally:
                model.train(was)
            if not same:
                continue
        return spec
    return None


def save_exported(model: nn.Module, path: Union[str, Path], subnet=None, arch: Optional[str] = None,
                  num_classes: Optional[int] = None, *, inputs: Optional[InputSpec] = None,
                  classes: Optional[Sequence[str]] = None) -> Path:
    """Save an exported model as ``{state_dict, slimnas metadata}``; readable with ``weights_only=True``.

    ``arch`` is a torchvision model name or ``module:factory`` so :func:`load_exported` can rebuild the class;
    without it, :func:`rebuild_spec` looks for one (a warning says when there is none: then load the file with
    ``load_exported(path, fresh_instance)``). ``inputs`` and ``classes`` record how to feed the model and what
    its outputs mean.
    """
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise SlimnasError(f"{len(classes)} class names given for a model with {num_classes} classes")
    if arch is None:
        arch = rebuild_spec(model, num_classes, inputs)
        if arch is None:
            cls = type(model)
            warnings.warn(f"{path}: slimnas cannot rebuild {cls.__module__}.{cls.__qualname__} by import; load the file "
                          f"with load_exported(path, {cls.__name__}(...)) or pass arch='package.module:factory'", stacklevel=2)
    meta = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": num_classes,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        **architecture(model),
        "subnet": subnet.to_dict() if subnet is not None else None,
        "input": inputs.to_dict() if inputs is not None else None,
        "classes": [str(c) for c in classes] if classes is not None else None,
    }
    atomic_torch_save({"state_dict": model.state_dict(), "slimnas": meta}, path)
    return Path(path)


def read_exported(path: Union[str, Path]) -> dict[str, Any]:
    """The raw ``{state_dict, slimnas}`` contents of a file written by :func:`save_exported`."""
    data = read_checkpoint(path)
    if not isinstance(data, dict) or not isinstance(data.get("slimnas"), dict):
        raise SlimnasError(f"{path} is not a slimnas export (no 'slimnas' metadata); use slimnas.load_model for checkpoints")
    return data


def load_exported(path: Union[str, Path], model: Optional[nn.Module] = None) -> nn.Module:
    """Load a file written by :func:`save_exported` into the original class, without any supernet.

    ``model`` is a freshly built instance of the original architecture; by default it is rebuilt from the
    saved torchvision name (or ``module:factory``).
    """
    data = read_exported(path)
    meta = data["slimnas"]
    if model is None:
        if not meta.get("arch"):
            cls = meta.get("class") or "its class"
            raise SlimnasError(f"{path} holds a {cls}, which slimnas cannot rebuild by import: pass a fresh instance, "
                               f"load_exported(path, {cls.rpartition('.')[2]}(...)), or deploy model.onnx")
        model = build_model(meta["arch"], num_classes=meta.get("num_classes"))
    apply_architecture(model, meta)
    load_state(model, data["state_dict"], str(path))
    return model.eval()
