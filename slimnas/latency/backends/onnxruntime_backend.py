"""onnxruntime: the CPU execution provider (CUDA where the installed build has it), timed with io-binding.

Inputs and outputs are bound once to preallocated buffers, so a timed call is the session run itself: no
numpy conversion, no output allocation.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ...errors import SlimnasError
from .base import Backend, BackendConfig, Workload, random_input, register


@register
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a core dependency
            raise SlimnasError("onnxruntime is not installed: pip install onnxruntime") from None
        self.ort = ort
        want = "CUDAExecutionProvider" if config.device == "cuda" else "CPUExecutionProvider"
        if want not in ort.get_available_providers():
            raise SlimnasError(f"this onnxruntime build has no {want}; install onnxruntime-gpu or use --device cpu")
        if config.dtype != "fp32":
            raise SlimnasError("the onnxruntime backend times fp32 graphs only; use --dtype fp32")
        self.provider = want

    def version(self) -> str:
        return self.ort.__version__

    def session(self, data: bytes):
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.config.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        return self.ort.InferenceSession(data, opts, providers=[self.provider])

    def loader(self, workload: Workload) -> Callable[[int], float]:
        if workload.onnx is None:
            raise SlimnasError("the onnxruntime backend needs an ONNX form of the workload")
        sess = self.session(workload.onnx())
        ort = self.ort
        dev = "cuda" if self.config.device == "cuda" else "cpu"
        x = ort.OrtValue.ortvalue_from_numpy(random_input(workload.input_shape), dev, 0)
        outputs = sess.get_outputs()
        binding = sess.io_binding()
        binding.bind_ortvalue_input(sess.get_inputs()[0].name, x)
        keep = []
        for out in outputs:
            shape = [d if isinstance(d, int) else 1 for d in out.shape]
            if len(outputs) == 1:
                shape = list(workload.output_shape)
            y = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, dev, 0)
            keep.append(y)
            binding.bind_ortvalue_output(out.name, y)
        run = sess.run_with_iobinding
        sync = binding.synchronize_outputs if dev == "cuda" else (lambda: None)

        def call(k: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(k):
                run(binding)
            sync()
            return (time.perf_counter_ns() - t0) / 1e6

        call.keep = (sess, x, keep)  # type: ignore[attr-defined]  # buffers live as long as the closure
        return call
