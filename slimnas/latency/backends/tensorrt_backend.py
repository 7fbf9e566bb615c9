"""tensorrt: build an engine from the ONNX graph (FP32/FP16) and time it with CUDA events.

TensorRT is imported only here, and only when this backend is created; where it is missing the error names
the extra to install.
"""
from __future__ import annotations

from typing import Callable

from ...errors import SlimnasError
from .base import Backend, BackendConfig, Workload, register

INSTALL_HINT = "TensorRT is not installed: pip install slimnas[trt] (needs an NVIDIA GPU), or use --backend onnxruntime"


def import_tensorrt():
    """The tensorrt module, or a one-line error naming the extra to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise SlimnasError(INSTALL_HINT) from None
    return trt


def build_engine(onnx: bytes, fp16: bool = False, int8: bool = False) -> bytes:  # pragma: no cover - needs TensorRT + GPU
    """A serialized TensorRT engine of an ONNX graph, built for the GPU of this machine (FP16 if asked; INT8 for
    a QDQ graph such as ``model.int8.onnx``: TensorRT's explicit quantization takes the graph's own scales)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        raise SlimnasError(f"TensorRT cannot parse the graph: {parser.get_error(0)}")
    cfg = builder.create_builder_config()
    if fp16:
        cfg.set_flag(trt.BuilderFlag.FP16)
    if int8:
        cfg.set_flag(trt.BuilderFlag.INT8)
    data = builder.build_serialized_network(network, cfg)
    if data is None:
        raise SlimnasError("TensorRT could not build an engine from the graph (see its log above)")
    return bytes(data)


@register
class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        if config.dtype == "int8":
            raise SlimnasError("the tensorrt backend does not time INT8 tables yet; use --backend onnxruntime --dtype int8")
        trt = import_tensorrt()
        import torch

        if config.device != "cuda" or not torch.cuda.is_available():
            raise SlimnasError("the tensorrt backend runs on a CUDA GPU: pass --device cuda on a machine with one")
        self.trt = trt
        self.torch = torch

    def version(self) -> str:
        return self.trt.__version__

    def device_name(self) -> str:
        return self.torch.cuda.get_device_name(0)

    def loader(self, workload: Workload) -> Callable[[int], float]:  # pragma: no cover - needs TensorRT + GPU
        trt, torch = self.trt, self.torch
        logger = trt.Logger(trt.Logger.ERROR)
        engine = trt.Runtime(logger).deserialize_cuda_engine(build_engine(workload.onnx(), self.config.dtype == "fp16"))
        context = engine.create_execution_context()
        x = torch.randn(workload.input_shape, device="cuda")
        y = torch.empty(workload.output_shape, device="cuda")
        context.set_tensor_address(engine.get_tensor_name(0), x.data_ptr())
        context.set_tensor_address(engine.get_tensor_name(1), y.data_ptr())
        stream = torch.cuda.Stream()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def call(k: int) -> float:
            with torch.cuda.stream(stream):
                start.record(stream)
                for _ in range(k):
                    context.execute_async_v3(stream.cuda_stream)
                end.record(stream)
            stream.synchronize()
            return float(start.elapsed_time(end))

        call.keep = (engine, context, x, y)  # type: ignore[attr-defined]
        return call
