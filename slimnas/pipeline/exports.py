"""Deployable files of a slimmed model: ``model.pt`` (loads into the original class), ``model.onnx`` (checked
against onnxruntime), ``model.int8.onnx`` (asked for, or when the latency target is INT8) and ``model.engine``
(TensorRT, where it and a GPU are present; ``model.int8.engine`` beside an INT8 export).

``model.int8.onnx`` is ``model.onnx`` statically quantized by onnxruntime with :data:`slimnas.quantize.SETTINGS`
(the settings INT8 latency tables are timed with), calibrated on ``export.int8_calibration`` images of the
training split. It is written only once onnxruntime has run it, and its accuracy is that of the INT8 graph run
in onnxruntime on the test split (``model.onnx`` is scored there too, beside it), never the torch model's.

``model.onnx`` has a dynamic batch axis (checked at batch 1 and 3) unless a fixed batch is asked for, and its
``metadata_props`` repeat ``model.pt``'s input spec and class names (normalisation, resize, crop, class order),
so it can be fed from an image file with nothing else. The engine is built at the fixed batch given.

:func:`export` is the library side of ``slimnas export``: from a ``slimnas slim`` run folder (its fine-tuned
``model.pt``), or from a ``slimnas train`` run plus a ``subnet.json`` (e.g. from ``slimnas search``).
"""
from __future__ import annotations

import copy
import logging
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import SlimnasError
from ..data import Datasets
from ..data.transforms import InputSpec
from ..export import export_onnx, export_subnet, onnx_max_abs_diff
from ..fileio import atomic_path
from ..latency.backends.tensorrt_backend import INSTALL_HINT, build_engine
from ..models import architecture_of, load_exported, read_exported, save_exported
from ..subnet import Subnet
from .config import ExportConfig

logger = logging.getLogger(__name__)


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


def write_engine(onnx_path: Path, engine_path: Path, fp16: bool, int8: bool = False) -> Path:  # pragma: no cover - needs TensorRT + GPU
    data = build_engine(Path(onnx_path).read_bytes(), fp16=fp16, int8=int8)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(data)
    return engine_path


def calibration_batches(data: Optional[Datasets], n: int, batch: Optional[int]) -> list[np.ndarray]:
    """``n`` training images (evaluation transform, seeded pick) in batches: what ``model.int8.onnx`` is
    calibrated on. ``batch`` is a fixed-batch graph's batch (None: dynamic, batches of 32)."""
    if data is None or data.calib is None or len(data.calib) == 0:
        raise SlimnasError("model.int8.onnx needs calibration images from the training split and none were given: "
                           "export from a run folder whose data loads (or set export.int8: false)")
    pick = np.sort(np.random.default_rng(0).permutation(len(data.calib))[:min(n, len(data.calib))])
    images = np.stack([np.asarray(data.calib[int(i)][0], dtype=np.float32) for i in pick])
    size = batch or 32
    if batch:  # a fixed-batch graph takes exactly `batch` images: the last batch is filled from the first
        images = np.concatenate([images, images[:(-len(images)) % batch]]) if len(images) % batch else images
    return [images[i:i + size] for i in range(0, len(images), size)]


def onnx_top1(path: Path, dataset, batch: Optional[int] = None) -> dict:
    """Top-1 of an ONNX classifier run by onnxruntime (CPU provider) over ``dataset``: the accuracy of the graph
    that is deployed. ``batch``: a fixed-batch graph's batch (None: dynamic, batches of 64)."""
    import onnxruntime as ort

    from ..data import make_loader

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    right = seen = 0
    for x, y in make_loader(dataset, batch or 64):
        x, y = x.numpy().astype(np.float32), y.numpy()
        n = len(x)
        if batch and n < batch:  # pad a fixed-batch graph's last batch; only the real images are scored
            x = np.concatenate([x, np.repeat(x[:1], batch - n, axis=0)])
        logits = sess.run(None, {name: x})[0][:n]
        right += int((logits.argmax(1) == y).sum())
        seen += n
    return {"top1": right / seen, "images": seen}


def _qat_float_graph(model: nn.Module, config: ExportConfig, data: Optional[Datasets], input_shape,
                     batch: Optional[int]) -> tuple[bytes, dict]:
    """The float ONNX graph of ``model`` after the quantization-aware fine-tune (:mod:`slimnas.qat`), and what
    to report of the fine-tune."""
    from ..data import make_loader
    from ..qat import qat_finetune

    torch.manual_seed(0)
    loader = make_loader(data.train, config.int8_qat_batch, shuffle=True, seed=0)
    teacher = copy.deepcopy(model).eval()
    t0 = time.perf_counter()
    folded, losses = qat_finetune(model, loader, config.int8_qat_steps, config.int8_qat_lr, teacher=teacher)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(folded, Path(tmp) / "qat.onnx", tuple(input_shape), batch=batch or 1, opset=config.opset,
                           check=True, dynamic_batch=batch is None)
        data_bytes = Path(path).read_bytes()
    report = {"steps": config.int8_qat_steps, "lr": config.int8_qat_lr, "batch": config.int8_qat_batch,
              "first_loss": losses[0], "last_loss": sum(losses[-10:]) / len(losses[-10:]),
              "seconds": round(time.perf_counter() - t0, 1), "teacher": "the model before the fine-tune"}
    logger.info(f"quantization-aware fine-tune: {config.int8_qat_steps} steps in {report['seconds']} s, loss "
                f"{report['first_loss']:.3f} -> {report['last_loss']:.3f}")
    return data_bytes, report


def write_int8(out: Path, config: ExportConfig, data: Optional[Datasets], batch: Optional[int],
               model: Optional[nn.Module] = None, input_shape=None) -> dict:
    """``model.int8.onnx`` from ``out/model.onnx``: quantized, run, and scored in onnxruntime; returns what goes into
    ``exports.json`` (``written`` false, with the reason, when onnxruntime cannot run the quantized graph).

    With ``export.int8_qat_steps``, ``model`` is first fine-tuned as its INT8 graph computes and that graph is
    quantized instead; the post-training graph of ``model.onnx`` is scored beside it (``ptq_test_top1``)."""
    import onnx

    from ..quantize import SETTINGS, quantize_onnx, runs

    batches = calibration_batches(data, config.int8_calibration, batch)
    source = out / "model.onnx"
    qat = None
    if config.int8_qat_steps:
        if model is None:
            raise SlimnasError("export.int8_qat_steps needs the model to fine-tune")  # pragma: no cover - internal
        ptq = quantize_onnx(source, batches)
        float_graph, qat = _qat_float_graph(model, config, data, input_shape, batch)
        q = quantize_onnx(float_graph, batches)
    else:
        q = quantize_onnx(source, batches)
    model = onnx.load_from_string(q)
    del model.metadata_props[:]
    for p in onnx.load(str(source), load_external_data=False).metadata_props:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key="quantization", value=json.dumps({**SETTINGS.describe(),
                                                                    "calibration_images": config.int8_calibration,
                                                                    **({"qat": qat} if qat else {})}))
    q = model.SerializeToString()
    info: dict = {"quantization": SETTINGS.describe(), "calibration_images": int(sum(len(b) for b in batches))}
    if qat:
        info["qat"] = qat
    why = runs(q, batches[0])
    if why is not None:
        info.update(written=False, reason=f"onnxruntime cannot run the quantized graph ({why})")
        logger.warning(f"model.int8.onnx not written: {info['reason']}")
        return info
    path = out / "model.int8.onnx"
    with atomic_path(path, suffix=".tmp.onnx") as tmp:
        tmp.write_bytes(q)
    info["written"] = True
    if data is not None and data.test is not None and len(data.test):
        int8 = onnx_top1(path, data.test, batch)
        fp32 = onnx_top1(source, data.test, batch)
        info.update(test_top1=int8["top1"], test_images=int8["images"], onnx_fp32_test_top1=fp32["top1"],
                    accuracy_from="onnxruntime (CPU provider) on the test split")
        extra = ""
        if qat:  # the post-training graph, scored the same way
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "ptq.onnx").write_bytes(ptq)
                info["ptq_test_top1"] = onnx_top1(Path(tmp) / "ptq.onnx", data.test, batch)["top1"]
            extra = f", post-training quantization {info['ptq_test_top1']:.4f}"
        logger.info(f"model.int8.onnx: test top-1 {int8['top1']:.4f} in onnxruntime on {int8['images']} images "
                    f"(model.onnx {fp32['top1']:.4f}{extra})")
    else:
        info.update(test_top1=None, reason="the data has no test split: accuracy not measured")
    return info


def write_exports(model: nn.Module, out: Path, input_shape, config: ExportConfig, batch: int = 1, dynamic_batch: bool = True,
                  data: Optional[Datasets] = None, dtype: str = "fp32") -> dict:
    """``model.onnx``, ``model.int8.onnx`` and ``model.engine`` beside ``model.pt`` in ``out``, as ``config`` asks;
    returns what was written and what was skipped (with why).

    ``model.onnx`` gets a dynamic batch axis (``dynamic_batch``) or a fixed ``batch``; the engine is built at
    ``batch``. Its metadata comes from ``out/model.pt`` where that file records it. ``model.int8.onnx`` is written
    when ``config.int8`` is set or ``dtype`` (the latency target's) is int8; it needs ``data`` (calibration images
    from its training split, accuracy on its test split).
    """
    out = Path(out)
    done: dict = {"files": [], "skipped": []}
    model = model.eval().cpu()
    meta = read_exported(out / "model.pt")["slimnas"] if (out / "model.pt").is_file() else {}
    int8 = config.int8 or dtype == "int8"
    if int8 and not config.onnx:
        raise SlimnasError("model.int8.onnx is quantized from model.onnx: set export.onnx: true (or drop export.int8)")
    if int8:
        calibration_batches(data, 1, None)  # calibration data missing: refused before any file is written
        if config.int8_qat_steps and (data is None or data.train is None or len(data.train) == 0):
            raise SlimnasError("export.int8_qat_steps needs the training split to fine-tune on: export from a run "
                               "folder whose data loads (or set export.int8_qat_steps: 0)")
    if config.onnx:
        path = out / "model.onnx"
        export_onnx(model, path, tuple(input_shape), batch=batch, opset=config.opset, check=True,
                    dynamic_batch=dynamic_batch, metadata=onnx_metadata_of(meta))
        done["files"].append(path.name)
        done["onnx_batch"] = "dynamic" if dynamic_batch else batch
        sizes = (1, 3) if dynamic_batch else (batch,)
        done["onnx_max_abs_diff"] = max(onnx_max_abs_diff(model, path, torch.randn((n,) + tuple(input_shape)))
                                        for n in sizes)
    if int8:
        done["int8"] = write_int8(out, config, data, None if dynamic_batch else batch, model, input_shape)
        if done["int8"]["written"]:
            done["files"].append("model.int8.onnx")
        else:
            done["skipped"].append(f"model.int8.onnx: {done['int8']['reason']}")
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
            if int8 and done["int8"]["written"]:  # pragma: no cover - needs TensorRT + GPU
                # TensorRT's explicit quantization: the QDQ graph's scales, at the timed batch
                source = out / "model.int8.onnx"
                if dynamic_batch:
                    fixed = export_onnx(model, Path(tmp) / "fixed.onnx", tuple(input_shape), batch=batch,
                                        opset=config.opset, check=False)
                    source = Path(tmp) / "fixed.int8.onnx"
                    from ..quantize import quantize_onnx

                    source.write_bytes(quantize_onnx(fixed, calibration_batches(data, config.int8_calibration, batch)))
                write_engine(source, out / "model.int8.engine", config.fp16, int8=True)
                done["files"].append("model.int8.engine")
    else:
        reason = ("TensorRT is not installed (pip install slimnas[trt])" if importlib.util.find_spec("tensorrt") is None
                  else "no CUDA GPU here") if config.tensorrt is None else "export.tensorrt is false"
        done["skipped"].append(f"model.engine: {reason}")
        logger.info(f"model.engine skipped: {reason}")
        if int8:
            done["skipped"].append(f"model.int8.engine: {reason}")
    return done


def export(run: Union[str, Path], out: Optional[Union[str, Path]] = None, subnet: Optional[Union[str, Path]] = None,
           config: ExportConfig = ExportConfig(), batch: int = 1, device: Optional[str] = None, dynamic_batch: bool = True) -> dict:
    """Write model.pt, model.onnx (and model.engine) into ``out`` (default: ``run``).

    ``run`` is a ``slimnas slim`` run folder (its ``model.pt`` is exported) or a ``slimnas train`` run folder, in
    which case ``subnet`` names a subnet JSON file (``slimnas search`` writes one). ``batch`` is the engine's
    batch, and ``model.onnx``'s where ``dynamic_batch`` is false.
    """
    run = Path(run)
    out = Path(out) if out is not None else run
    data, dtype = None, "fp32"
    if subnet is None and (run / "model.pt").is_file():
        meta = read_exported(run / "model.pt")["slimnas"]
        model = load_exported(run / "model.pt")
        from .prepare import CONFIG

        size = _input_shape_of(run / CONFIG)
        if config.int8 or _run_config(run / CONFIG).latency.dtype == "int8":
            data, dtype = _data_of(run / CONFIG), _run_config(run / CONFIG).latency.dtype
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
    result = write_exports(model, out, size, config, batch, dynamic_batch, data=data, dtype=dtype)
    result["files"].insert(0, "model.pt")
    logger.info(f"wrote {', '.join(result['files'])} into {out}")
    return result


def _run_config(config_file: Path):
    if not config_file.is_file():
        raise SlimnasError(f"{config_file.parent} has a model.pt but no config.yaml: cannot tell its input size")
    from .config import load_config

    return load_config(config_file)


def _input_shape_of(config_file: Path) -> tuple[int, ...]:
    size = _run_config(config_file).model.input_size
    return (3, size, size)


def _data_of(config_file: Path) -> Datasets:
    """The data a `slimnas slim` run was made with (INT8 calibration and test accuracy)."""
    from dataclasses import replace

    from ..data import load_data

    cfg = _run_config(config_file)
    return load_data(replace(cfg.data, image_size=cfg.model.input_size))

