"""torch: eager PyTorch on the CPU (threads fixed) or CUDA (timed with CUDA events after synchronising).

Units are timed as the conv → BN → activation module of :func:`..units.unit_torch`, whole networks as the
plain exported module (``.pt`` files from :func:`..e2e.export_subnets`). torch's thread count is process-wide,
so it is set only around the timing (:meth:`session_threads`) and the caller's count is given back.
"""
from __future__ import annotations

import time
from typing import Callable, ContextManager

from ...errors import SlimnasError
from ..timing import torch_threads
from .base import Backend, BackendConfig, Workload, register


@register
class TorchBackend(Backend):
    name = "torch"
    model_format = "torch"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        import torch

        self.torch = torch
        if config.device == "cuda" and not torch.cuda.is_available():
            raise SlimnasError("--device cuda: torch sees no CUDA device here; use --device cpu")
        if config.dtype == "int8":
            raise SlimnasError("the torch backend cannot time INT8 graphs; use --backend onnxruntime --dtype int8")
        if config.dtype == "fp16" and config.device != "cuda":
            raise SlimnasError("--dtype fp16 is timed on CUDA only; use --dtype fp32 on the CPU")

    def session_threads(self) -> ContextManager:
        return torch_threads(self.config.threads)

    def version(self) -> str:
        return self.torch.__version__

    def device_name(self) -> str:
        if self.config.device == "cuda":
            return self.torch.cuda.get_device_name(0)
        return super().device_name()

    def loader(self, workload: Workload) -> Callable[[int], float]:
        if workload.torch is None:
            raise SlimnasError("the torch backend times PyTorch modules, not ONNX files: export whole networks "
                               "with export_subnets(..., fmt='torch')")
        torch = self.torch
        dev = torch.device(self.config.device)
        dtype = torch.float16 if self.config.dtype == "fp16" else torch.float32
        model = workload.torch().eval().to(dev, dtype)
        x = torch.randn(workload.input_shape, device=dev, dtype=dtype)

        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

            def call(k: int) -> float:
                with torch.inference_mode(), self.session_threads():
                    torch.cuda.synchronize()
                    start.record()
                    for _ in range(k):
                        model(x)
                    end.record()
                    torch.cuda.synchronize()
                return float(start.elapsed_time(end))
        else:
            def call(k: int) -> float:
                with torch.inference_mode(), self.session_threads():  # no-op inside time(): already set
                    t0 = time.perf_counter_ns()
                    for _ in range(k):
                        model(x)
                    return (time.perf_counter_ns() - t0) / 1e6

        return call
