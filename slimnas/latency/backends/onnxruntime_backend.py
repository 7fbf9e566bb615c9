"""onnxruntime: the CPU execution provider (CUDA where the installed build has it), timed with io-binding.

Inputs and outputs are bound once to preallocated buffers, so a timed call is the session run itself: no
numpy conversion, no output allocation.

``dtype="int8"`` (CPU only): every graph is quantized on load with :data:`slimnas.quantize.SETTINGS`, the
settings ``model.int8.onnx`` is exported with, calibrated on random inputs of its shape (the values set the
scales, not which kernels run). A whole network is then timed as it is (one QuantizeLinear and NCHW→NHWC
Transpose at its input, their inverses at its output). A unit (``Workload.inner``) is timed as the one kernel
it becomes inside such a network: onnxruntime turns Q→DQ→Conv→Q into an NHWC QLinearConv with a Transpose on
either side, and between two quantized layers of a network those Transposes (and the Q/DQ) are gone, so the
unit's graph is optimised once, stripped of them and run as that kernel alone on 8-bit NHWC tensors.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

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
        if config.dtype not in ("fp32", "int8"):
            raise SlimnasError(f"the onnxruntime backend times fp32 or int8 graphs, not {config.dtype}; use --dtype fp32 or int8")
        if config.dtype == "int8" and config.device != "cpu":
            raise SlimnasError("the onnxruntime backend times INT8 graphs on the CPU provider only; use --device cpu")
        self.provider = want
        self._int8: dict[str, tuple[bytes, bool]] = {}  # float graph digest -> (graph to run, already optimised)

    def describe(self) -> dict:
        out = super().describe()
        if self.config.dtype == "int8":
            from ...quantize import SETTINGS

            out["quantization"] = SETTINGS.describe()
        return out

    def version(self) -> str:
        return self.ort.__version__

    def session(self, data: bytes, optimized: bool = False, save_to: str = ""):
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.config.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = (self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL if optimized
                                         else self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if save_to:
            opts.optimized_model_filepath = save_to
        opts.log_severity_level = 3
        return self.ort.InferenceSession(data, opts, providers=[self.provider])

    def graph(self, workload: Workload) -> tuple[bytes, bool]:
        """The graph this backend runs for ``workload`` and whether it is already optimised (INT8 units)."""
        data = workload.onnx()
        if self.config.dtype != "int8":
            return data, False
        key = hashlib.sha1(data).hexdigest() + ("/inner" if workload.inner else "")
        if key not in self._int8:
            from ...quantize import quantize_onnx, quantized_io, random_calibration

            q = quantize_onnx(data, random_calibration(workload.input_shape))
            self._int8[key] = (self._kernel_alone(quantized_io(q)), True) if workload.inner else (q, False)
        return self._int8[key]

    def _kernel_alone(self, data: bytes) -> bytes:
        """An INT8 unit graph as onnxruntime optimises it, without the layout Transposes at its ends."""
        import onnx

        with tempfile.TemporaryDirectory(prefix="slimnas-int8-") as tmp:
            path = str(Path(tmp) / "opt.onnx")
            self.session(data, save_to=path)
            m = onnx.load(path)
        return _strip_end_transposes(m).SerializeToString()

    def loader(self, workload: Workload) -> Callable[[int], float]:
        if workload.onnx is None:
            raise SlimnasError("the onnxruntime backend needs an ONNX form of the workload")
        data, optimized = self.graph(workload)
        sess = self.session(data, optimized)
        ort = self.ort
        dev = "cuda" if self.config.device == "cuda" else "cpu"
        inp = sess.get_inputs()[0]
        in_type = _NP_TYPES.get(inp.type, np.float32)
        if in_type is np.float32:
            x = random_input(workload.input_shape)
        else:  # an INT8 unit: the 8-bit NHWC tensor its graph now takes
            x = np.random.default_rng(0).integers(0, 128, size=list(inp.shape)).astype(in_type)
        x = ort.OrtValue.ortvalue_from_numpy(x, dev, 0)
        outputs = sess.get_outputs()
        binding = sess.io_binding()
        binding.bind_ortvalue_input(inp.name, x)
        keep = []
        for out in outputs:
            shape = [d if isinstance(d, int) else 1 for d in out.shape]
            out_type = _NP_TYPES.get(out.type, np.float32)
            if len(outputs) == 1 and out_type is np.float32:
                shape = list(workload.output_shape)
            y = ort.OrtValue.ortvalue_from_shape_and_type(shape, out_type, dev, 0)
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


_NP_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _strip_end_transposes(m):
    """``m`` without a Transpose that alone reads its input or writes its output (the graph then takes and
    gives the NHWC tensors inside)."""
    from onnx import helper

    g = m.graph

    def end_transpose(nodes, value) -> Optional[tuple]:
        """The lone Transpose among ``nodes``, its perm, and the shape and type of the graph's ``value``."""
        if len(nodes) != 1 or nodes[0].op_type != "Transpose":
            return None
        t = nodes[0]
        perm = list(helper.get_attribute_value(next(a for a in t.attribute if a.name == "perm")))
        return t, perm, [d.dim_value for d in value.type.tensor_type.shape.dim], value.type.tensor_type.elem_type

    found = end_transpose([n for n in g.node if g.input[0].name in n.input], g.input[0])
    if found is not None:
        t, perm, dims, elem = found
        g.node.remove(t)
        del g.input[:]
        g.input.append(helper.make_tensor_value_info(t.output[0], elem, [dims[p] for p in perm]))
    found = end_transpose([n for n in g.node if g.output[0].name in n.output], g.output[0])
    if found is not None:
        t, perm, dims, elem = found
        inv = [perm.index(i) for i in range(len(perm))]
        g.node.remove(t)
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(t.input[0], elem, [dims[p] for p in inv]))
    return m
