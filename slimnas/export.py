"""Export: a subnet becomes a plain model of the original class, a self-describing file, and an ONNX graph.

``export_subnet`` copies the supernet's network and replaces each dynamic layer by the plain torch layer of
the active channels: the result is, say, a torchvision ``MobileNetV2`` with narrower convs, and holds nothing
of slimnas. ``save_exported``/``load_exported`` store it as a state_dict plus JSON metadata (loadable with
``weights_only=True``; no pickled classes); they live in :mod:`slimnas.models`, beside the model intake that
reads such files, and are re-exported here. ``export_onnx`` writes an ONNX file (optionally with a dynamic
batch axis and metadata saying how to feed it) and checks it against onnxruntime before returning.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .dynamic import DynamicMixin
from .errors import SlimnasError
from .fileio import atomic_path
from .models import FORMAT, layer_shapes, load_exported, read_exported, reshape_to, save_exported  # noqa: F401
from .subnet import Subnet

__all__ = ["FORMAT", "export_onnx", "export_subnet", "layer_shapes", "load_exported", "onnx_max_abs_diff",
           "onnx_metadata", "read_exported", "reshape_to", "save_exported"]


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


def export_onnx(model: nn.Module, path: Union[str, Path], input_shape: tuple[int, ...], *, batch: int = 1,
                opset: int = 17, check: bool = True, atol: float = 1e-4, dynamic_batch: bool = False,
                metadata: Optional[dict[str, Any]] = None) -> Path:
    """Write ``model`` as ONNX and (by default) check onnxruntime reproduces its outputs within ``atol``.

    ``dynamic_batch`` names the batch axis ``batch`` instead of fixing it at ``batch`` (the check then runs at
    batch 1 and 3); timing files keep the fixed batch their tables were measured with. ``metadata`` becomes the
    graph's ``metadata_props``, each value JSON-encoded (read back with :func:`onnx_metadata`). The file
    appears only once the check has passed: a failed export leaves nothing behind.
    """
    path = Path(path)
    model = model.eval()
    example = torch.randn((batch,) + tuple(input_shape))
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with atomic_path(path, suffix=".tmp.onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=False, dynamic_axes=axes)
        if metadata:
            import onnx

            graph = onnx.load(str(tmp))
            for key, value in metadata.items():
                graph.metadata_props.add(key=str(key), value=json.dumps(value))
            onnx.save(graph, str(tmp))
        if check:
            for n in ((1, 3) if dynamic_batch else (batch,)):
                x = example if n == batch else torch.randn((n,) + tuple(input_shape))
                diff = onnx_max_abs_diff(model, tmp, x)
                if not diff <= atol:
                    raise SlimnasError(f"ONNX export of {type(model).__name__} differs from PyTorch by {diff:.3g} "
                                       f"(> {atol:g}) at batch {n}")
    return path


def onnx_metadata(path: Union[str, Path]) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file written by :func:`export_onnx`, JSON-decoded."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in graph.metadata_props}


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
