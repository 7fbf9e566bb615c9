"""Export: a subnet becomes a plain model of the original class, a self-describing file, and an ONNX graph.

``export_subnet`` copies the supernet's network and replaces each dynamic layer by the plain torch layer of
the active channels: the result is, say, a torchvision ``MobileNetV2`` with narrower convs, and holds nothing
of slimnas. ``save_exported``/``load_exported`` store it as a state_dict plus JSON metadata (loadable with
``weights_only=True``; no pickled classes). ``export_onnx`` writes an ONNX file and checks it against
onnxruntime before returning.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .dynamic import DynamicMixin
from .errors import SlimnasError
from .fileio import atomic_path, atomic_torch_save
from .subnet import Subnet

FORMAT = "slimnas.exported/1"


def export_subnet(supernet, subnet: Optional[Subnet] = None) -> nn.Module:
    """A plain ``nn.Module`` (the original class) computing ``subnet`` (default: the active one)."""
    previous = supernet.active
    if subnet is not None:
        supernet.set_subnet(subnet)
    try:
        model = copy.deepcopy(supernet.model)
        for name, module in list(model.named_modules()):
            if isinstance(module, DynamicMixin):
                parent_name, _, attr = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, attr, module.export())
    finally:
        if subnet is not None:
            supernet.set_subnet(previous)
    model.train(supernet.training)
    return model


def layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """Constructor arguments of every conv, BatchNorm and linear layer: enough to rebuild narrower layers."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d:
            out[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            out[name] = {"out": m.num_features}
        elif type(m) is nn.Linear:
            out[name] = {"in": m.in_features, "out": m.out_features}
    return out


def save_exported(model: nn.Module, path: Union[str, Path], subnet: Optional[Subnet] = None,
                  arch: Optional[str] = None, num_classes: Optional[int] = None) -> Path:
    """Save an exported model as ``{state_dict, slimnas metadata}``; readable with ``weights_only=True``.

    ``arch`` is a torchvision model name or ``module:factory`` so :func:`load_exported` can rebuild the class;
    without it, pass the freshly built original model to :func:`load_exported` instead.
    """
    meta = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": num_classes,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "layers": layer_shapes(model),
        "subnet": subnet.to_dict() if subnet is not None else None,
    }
    atomic_torch_save({"state_dict": model.state_dict(), "slimnas": meta}, path)
    return Path(path)


def reshape_to(model: nn.Module, layers: dict[str, dict[str, int]]) -> nn.Module:
    """Rebuild ``model``'s conv, BatchNorm and linear layers with the given channel counts (in place)."""
    for name, shape in layers.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise SlimnasError(f"the saved model has a layer {name!r} that this architecture lacks") from None
        if type(old) is nn.Conv2d:
            if (old.in_channels, old.out_channels, old.groups) == (shape["in"], shape["out"], shape["groups"]):
                continue
            new = nn.Conv2d(shape["in"], shape["out"], old.kernel_size, old.stride, old.padding, old.dilation,
                            shape["groups"], old.bias is not None, old.padding_mode)
        elif type(old) in (nn.BatchNorm1d, nn.BatchNorm2d):
            if old.num_features == shape["out"]:
                continue
            new = type(old)(shape["out"], old.eps, old.momentum, old.affine, old.track_running_stats)
        elif type(old) is nn.Linear:
            if (old.in_features, old.out_features) == (shape["in"], shape["out"]):
                continue
            new = nn.Linear(shape["in"], shape["out"], old.bias is not None)
        else:
            raise SlimnasError(f"layer {name!r} is a {type(old).__name__} here but was saved as a conv/BN/linear")
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return model


def read_exported(path: Union[str, Path]) -> dict[str, Any]:
    """The raw ``{state_dict, slimnas}`` contents of a file written by :func:`save_exported`."""
    from .models import read_checkpoint

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
            raise SlimnasError(f"{path} does not name its architecture: pass the original model, load_exported(path, model)")
        from .models import build_model

        model = build_model(meta["arch"], num_classes=meta.get("num_classes"))
    reshape_to(model, meta["layers"])
    model.load_state_dict(data["state_dict"])
    return model.eval()


def export_onnx(model: nn.Module, path: Union[str, Path], input_shape: tuple[int, ...], *, batch: int = 1,
                opset: int = 17, check: bool = True, atol: float = 1e-4) -> Path:
    """Write ``model`` as ONNX and (by default) check onnxruntime reproduces its outputs within ``atol``.

    The file appears only once the check has passed: a failed export leaves nothing behind.
    """
    path = Path(path)
    model = model.eval()
    example = torch.randn((batch,) + tuple(input_shape))
    with atomic_path(path, suffix=".tmp.onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=False)
        if check:
            diff = onnx_max_abs_diff(model, tmp, example)
            if not diff <= atol:
                raise SlimnasError(f"ONNX export of {type(model).__name__} differs from PyTorch by {diff:.3g} (> {atol:g})")
    return path


def onnx_max_abs_diff(model: nn.Module, onnx_path: Union[str, Path], example: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch and onnxruntime (CPU provider) on ``example``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: example.numpy()})
    with torch.no_grad():
        want = model.eval()(example).numpy()
    return float(np.abs(got - want).max())
