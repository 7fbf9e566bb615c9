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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .dynamic import DynamicMixin
from .dynamic.skip import SkippableBlock
from .errors import SlimnasError
from .fileio import atomic_path
from .models import FORMAT, layer_shapes, load_exported, read_exported, reshape_to, save_exported  # noqa: F401
from .subnet import Subnet

__all__ = ["FORMAT", "export_onnx", "export_subnet", "layer_shapes", "load_exported", "max_output_diff",
           "named_outputs", "onnx_max_abs_diff", "onnx_metadata", "read_exported", "reshape_to", "save_exported"]


def named_outputs(result: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """A model's result as ``(name, tensor)`` pairs, in the order the ONNX exporter flattens it.

    A tensor is ``output``; a dict (torchvision's segmentation models return ``{"out": ..., "aux": ...}``) gives
    one entry per key, named by the key; a tuple or list gives ``output0``, ``output1``, ...; nested containers
    join their names with ``.``. Anything else is refused naming its type.
    """
    if isinstance(result, torch.Tensor):
        return [(prefix or "output", result)]
    if isinstance(result, Mapping):
        return [pair for key, value in result.items()
                for pair in named_outputs(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(result, (tuple, list)):
        return [pair for i, value in enumerate(result)
                for pair in named_outputs(value, f"{prefix}.{i}" if prefix else f"output{i}")]
    raise SlimnasError(f"a model output of type {type(result).__name__} cannot be exported: return a tensor, or a "
                       "dict/tuple/list of tensors")


def max_output_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two results of :func:`named_outputs`' kind, over every output."""
    pa, pb = named_outputs(a), named_outputs(b)
    if [n for n, _ in pa] != [n for n, _ in pb]:
        raise SlimnasError(f"the outputs differ in kind: {[n for n, _ in pa]} vs {[n for n, _ in pb]}")
    return max(float((x.detach() - y.detach()).abs().max()) for (_, x), (_, y) in zip(pa, pb))


def export_subnet(supernet, subnet: Optional[Subnet] = None) -> nn.Module:
    """A plain ``nn.Module`` (the original class) computing ``subnet`` (default: the active one).

    A skippable block the subnet drops becomes ``nn.Identity``; a kept one is its own module again."""
    previous = supernet.active
    if subnet is not None:
        supernet.set_subnet(subnet)
    try:
        model = copy.deepcopy(supernet.model)
        for kind in (SkippableBlock, DynamicMixin):  # blocks first: a dropped one's layers are not exported
            for name, module in list(model.named_modules()):
                if isinstance(module, kind):
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

    ``atol`` is absolute for outputs within [-1, 1] and scales with the outputs' largest magnitude beyond that:
    float32 rounding grows with the values, so logits near 100 legitimately differ by a few 1e-4 between two
    correct runtimes, while the same gap on logits near 0.1 is a real mismatch.

    ``dynamic_batch`` names the batch axis ``batch`` instead of fixing it at ``batch`` (the check then runs at
    batch 1 and 3); timing files keep the fixed batch their tables were measured with. ``metadata`` becomes the
    graph's ``metadata_props``, each value JSON-encoded (read back with :func:`onnx_metadata`). The file
    appears only once the check has passed: a failed export leaves nothing behind.
    """
    path = Path(path)
    model = model.eval()
    example = torch.randn((batch,) + tuple(input_shape))
    with torch.no_grad():
        names = [name for name, _ in named_outputs(model(example))]
    axes = {name: {0: "batch"} for name in ["input", *names]} if dynamic_batch else None
    with atomic_path(path, suffix=".tmp.onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=names,
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
                with torch.no_grad():
                    scale = max([1.0] + [float(t.abs().max()) for _, t in named_outputs(model(x))])
                if not diff <= atol * scale:
                    bound = f"{atol:g}" if scale == 1.0 else f"{atol:g} x {scale:.3g}, the outputs' largest magnitude"
                    raise SlimnasError(f"ONNX export of {type(model).__name__} differs from PyTorch by {diff:.3g} "
                                       f"(> {bound}) at batch {n}")
    return path


def onnx_metadata(path: Union[str, Path]) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file written by :func:`export_onnx`, JSON-decoded."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in graph.metadata_props}


def onnx_max_abs_diff(model: nn.Module, onnx_path: Union[str, Path], example: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch and onnxruntime (CPU provider) on ``example``, over every output.

    The model's outputs (see :func:`named_outputs`) are matched to the graph's by position; a graph with another
    number of outputs is refused.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: example.numpy()})
    with torch.no_grad():
        want = named_outputs(model.eval()(example))
    if len(got) != len(want):
        raise SlimnasError(f"{onnx_path} has {len(got)} outputs but the model returns {len(want)} "
                           f"({', '.join(n for n, _ in want)}): export it again with slimnas.export_onnx")
    return max(float(np.abs(g - w.numpy()).max()) for g, (_, w) in zip(got, want))
