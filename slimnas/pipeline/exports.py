"""Deployable files of a slimmed model: ``model.pt`` (loads into the original class), ``model.onnx`` (checked
against onnxruntime) and ``model.engine`` (TensorRT, where it and a GPU are present).

``model.onnx`` has a dynamic batch axis (checked at batch 1 and 3) unless a fixed batch is asked for, and its
``metadata_props`` repeat ``model.pt``'s input spec and class names (normalisation, resize, crop, class order),
so it can be fed from an image file with nothing else. The engine is built at the fixed batch given.

:func:`export` is the library side of ``slimnas export``: from a ``slimnas slim`` run folder (its fine-tuned
``model.pt``), or from a ``slimnas train`` run plus a ``subnet.json`` (e.g. from ``slimnas search``).
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from ..errors import SlimnasError
from ..data.transforms import InputSpec
from ..export import export_onnx, export_subnet, onnx_max_abs_diff
from ..fileio import atomic_path
from ..latency.backends.tensorrt_backend import INSTALL_HINT, build_engine
from ..models import architecture_of, load_exported, read_exported, save_exported
from ..subnet import Subnet
from .config import ExportConfig


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def arch_name(model_spec) -> Optional[str]:
    """What :func:`slimnas.load_exported` can rebuild the class from: a torchvision name or module:factory, or the
    architecture a model file records (``None`` where it records none)."""
    return architecture_of(model_spec)


def onnx_metadata_of(meta: dict) -> dict:
    """``model.onnx``'s metadata from ``model.pt``'s: how to feed it and what its outputs mean."""
    out = {"format": "slimnas.onnx/1", "arch": meta.get("arch"), "num_classes": meta.get("num_classes"),
           "classes": meta.get("classes")}
    if meta.get("input"):
        out.update(meta["input"])
    if meta.get("subnet"):
        out["subnet"] = meta["subnet"]
    return out


def write_engine(onnx_path: Path, engine_path: Path, fp16: bool) -> Path:  # pragma: no cover - needs TensorRT + GPU
    data = build_engine(Path(onnx_path).read_bytes(), fp16=fp16)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(data)
    return engine_path


def write_exports(model: nn.Module, out: Path, input_shape, config: ExportConfig, batch: int = 1,
                  log: Callable[[str], None] = print, dynamic_batch: bool = True) -> dict:
    """``model.onnx`` and ``model.engine`` beside ``model.pt`` in ``out``, as ``config`` asks; returns what was written
    and what was skipped (with why).

    ``model.onnx`` gets a dynamic batch axis (``dynamic_batch``) or a fixed ``batch``; the engine is built at
    ``batch``. Its metadata comes from ``out/model.pt`` where that file records it.
    """
    out = Path(out)
    done: dict = {"files": [], "skipped": []}
    model = model.eval().cpu()
    meta = read_exported(out / "model.pt")["slimnas"] if (out / "model.pt").is_file() else {}
    if config.onnx:
        path = out / "model.onnx"
        export_onnx(model, path, tuple(input_shape), batch=batch, opset=config.opset, check=True,
                    dynamic_batch=dynamic_batch, metadata=onnx_metadata_of(meta))
        done["files"].append(path.name)
        done["onnx_batch"] = "dynamic" if dynamic_batch else batch
        sizes = (1, 3) if dynamic_batch else (batch,)
        done["onnx_max_abs_diff"] = max(onnx_max_abs_diff(model, path, torch.randn((n,) + tuple(input_shape)))
                                        for n in sizes)
    want = config.tensorrt if config.tensorrt is not None else tensorrt_available()
    if want:
        if not config.onnx:
            raise SlimnasError("export.tensorrt needs export.onnx: the engine is built from model.onnx")
        if importlib.util.find_spec("tensorrt") is None:
            raise SlimnasError(INSTALL_HINT)
        with tempfile.TemporaryDirectory() as tmp:
            source = out / "model.onnx"
            if dynamic_batch:  # TensorRT wants fixed shapes without an optimisation profile: the timed batch
                source = export_onnx(model, Path(tmp) / "fixed.onnx", tuple(input_shape), batch=batch,
                                     opset=config.opset, check=False)
            write_engine(source, out / "model.engine", config.fp16)
        done["files"].append("model.engine")
    else:
        reason = ("TensorRT is not installed (pip install slimnas[trt])" if importlib.util.find_spec("tensorrt") is None
                  else "no CUDA GPU here") if config.tensorrt is None else "export.tensorrt is false"
        done["skipped"].append(f"model.engine: {reason}")
        log(f"model.engine skipped: {reason}")
    return done


def export(run: Union[str, Path], out: Optional[Union[str, Path]] = None, subnet: Optional[Union[str, Path]] = None,
           config: ExportConfig = ExportConfig(), batch: int = 1, device: Optional[str] = None,
           log: Callable[[str], None] = print, dynamic_batch: bool = True) -> dict:
    """Write model.pt, model.onnx (and model.engine) into ``out`` (default: ``run``).

    ``run`` is a ``slimnas slim`` run folder (its ``model.pt`` is exported) or a ``slimnas train`` run folder, in
    which case ``subnet`` names a subnet JSON file (``slimnas search`` writes one). ``batch`` is the engine's
    batch, and ``model.onnx``'s where ``dynamic_batch`` is false.
    """
    run = Path(run)
    out = Path(out) if out is not None else run
    if subnet is None and (run / "model.pt").is_file():
        meta = read_exported(run / "model.pt")["slimnas"]
        model = load_exported(run / "model.pt")
        from .prepare import CONFIG

        size = _input_shape_of(run / CONFIG)
        out.mkdir(parents=True, exist_ok=True)
        if out.resolve() != run.resolve():
            save_exported(model, out / "model.pt", Subnet.from_dict(meta["subnet"]) if meta.get("subnet") else None,
                          meta.get("arch"), meta.get("num_classes"),
                          inputs=InputSpec.from_dict(meta["input"]) if meta.get("input") else None,
                          classes=meta.get("classes"))
    else:
        from ..train.run import load_run

        if subnet is None:
            raise SlimnasError(f"{run} holds no model.pt: pass --subnet SUBNET.json with a `slimnas train` run folder")
        path = Path(subnet)
        if not path.is_file():
            raise SlimnasError(f"subnet file {path} does not exist")
        chosen = Subnet.from_json(path.read_text())
        spec, net, strategy, data = load_run(run, device)
        chosen = strategy.finalize(net.space.validate(chosen))
        model = export_subnet(net, chosen).cpu().eval()
        size = tuple(net.input_shape)
        out.mkdir(parents=True, exist_ok=True)
        save_exported(model, out / "model.pt", chosen, arch_name(spec.model), spec.num_classes or data.num_classes,
                      inputs=InputSpec(size[-1], data.mean, data.std), classes=data.classes)
    result = write_exports(model, out, size, config, batch, log, dynamic_batch)
    result["files"].insert(0, "model.pt")
    log(f"wrote {', '.join(result['files'])} into {out}")
    return result


def _input_shape_of(config_file: Path) -> tuple[int, ...]:
    if not config_file.is_file():
        raise SlimnasError(f"{config_file.parent} has a model.pt but no config.yaml: cannot tell its input size")
    from .config import load_config

    size = load_config(config_file).model.input_size
    return (3, size, size)

