"""INT8 graphs: onnxruntime's static quantization with the one set of settings slimnas uses everywhere.

The latency profiler times each unit as the quantized graph onnxruntime really runs, the end-to-end timings
quantize whole subnets, and ``model.int8.onnx`` is the exported model quantized: all three go through
:func:`quantize_onnx` with :data:`SETTINGS`, so a table cannot be measured under other quantizer settings than
the model it predicts for is exported with (the settings are also written into the table's fingerprint and
``exports.json``).

Calibration: the exported model is calibrated on real training images (``export.int8_calibration`` of them);
timing graphs on random inputs of the right shape (:func:`random_calibration`). The values only set each
tensor's scale and zero point; which kernels run (QLinearConv and friends, and the tensors' widths) follows
from the graph and the settings, not from the calibration values.

torch is never imported here: the timing worker quantizes the graphs it times in a fresh process.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from .errors import SlimnasError


@dataclass(frozen=True)
class QuantSettings:
    """How a float ONNX graph becomes INT8 (onnxruntime.quantization.quantize_static)."""

    format: str = "qdq"  # QuantizeLinear/DequantizeLinear pairs; onnxruntime fuses them into QLinear kernels
    activations: str = "uint8"  # U8S8: what onnxruntime's x86 CPU kernels (VNNI) are fastest with
    weights: str = "int8"
    per_channel: bool = True  # one scale per output channel of each conv/linear weight
    reduce_range: bool = False  # 7-bit weights only help CPUs without VNNI
    calibrate_method: str = "minmax"
    optimize_first: bool = True  # fold BatchNorm into the conv first (onnxruntime's quant_pre_process)

    def describe(self) -> dict:
        return asdict(self)


SETTINGS = QuantSettings()


def _ort_quantization():
    try:
        from onnxruntime import quantization as q
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        raise SlimnasError("INT8 needs onnxruntime's quantization tools: pip install onnxruntime") from None
    return q


class _Reader:
    """A CalibrationDataReader over a list of input batches."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]):
        self.name, self.batches, self.i = name, list(batches), 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.batches[self.i - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0


def random_calibration(shape: Sequence[int], n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """``n`` random inputs of ``shape`` (standard normal, the scale of normalised images) for timing graphs."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for _ in range(n)]


def quantize_onnx(model: Union[bytes, str, Path], calibration: Iterable[np.ndarray],
                  settings: QuantSettings = SETTINGS) -> bytes:
    """The INT8 (QDQ) form of a float ONNX graph, calibrated on ``calibration`` (input batches), as bytes."""
    import onnx

    q = _ort_quantization()
    batches = list(calibration)
    if not batches:
        raise SlimnasError("INT8 quantization needs calibration data: give at least one input batch")
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
    types = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="slimnas-quant-") as tmp:
        src = Path(tmp) / "float.onnx"
        src.write_bytes(data)
        if settings.optimize_first:
            pre = Path(tmp) / "pre.onnx"
            q.shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        name = onnx.load(str(src), load_external_data=False).graph.input[0].name
        dst = Path(tmp) / "int8.onnx"
        q.quantize_static(str(src), str(dst), _Reader(name, batches),
                          quant_format=q.QuantFormat.QDQ if settings.format == "qdq" else q.QuantFormat.QOperator,
                          per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                          activation_type=types[settings.activations], weight_type=types[settings.weights],
                          calibrate_method=methods[settings.calibrate_method],
                          calibration_providers=["CPUExecutionProvider"])
        return dst.read_bytes()


def quantized_io(data: bytes) -> bytes:
    """A quantized unit graph with its input QuantizeLinear and output DequantizeLinear removed: it takes and
    gives the 8-bit tensors that flow between two quantized layers of a network, so a timed unit is the fused
    QLinear kernel alone, as it runs inside the whole INT8 model (whose one Q at the input and DQ at the output
    belong to the fixed part)."""
    import onnx
    from onnx import helper

    m = onnx.load_from_string(data)
    g = m.graph
    x, y = g.input[0], g.output[0]
    first = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == x.name]
    last = [n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == y.name]
    if len(first) != 1 or len(last) != 1 or any(x.name in n.input for n in g.node if n is not first[0]):
        return data  # not the Q … DQ shape of a unit: time it as it is
    q_in, dq_out = first[0], last[0]
    elem = {"uint8": onnx.TensorProto.UINT8, "int8": onnx.TensorProto.INT8}[SETTINGS.activations]
    shape_in = [d.dim_value for d in x.type.tensor_type.shape.dim]
    shape_out = [d.dim_value for d in y.type.tensor_type.shape.dim]
    new_in = helper.make_tensor_value_info(q_in.output[0], elem, shape_in)
    new_out = helper.make_tensor_value_info(dq_out.input[0], elem, shape_out)
    g.node.remove(q_in)
    g.node.remove(dq_out)
    del g.input[:]
    g.input.append(new_in)
    del g.output[:]
    g.output.append(new_out)
    return m.SerializeToString()


def int8_ops(data: Union[bytes, str, Path]) -> dict[str, int]:
    """How many nodes of each quantization op type a graph holds (QuantizeLinear, DequantizeLinear, QLinear*)."""
    import onnx

    m = onnx.load_from_string(data) if isinstance(data, bytes) else onnx.load(str(data), load_external_data=False)
    out: dict[str, int] = {}
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith(("QLinear", "QGemm")):
            out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def runs(data: Union[bytes, str, Path], x: np.ndarray) -> Optional[str]:
    """None when onnxruntime's CPU provider loads the graph and runs it on ``x`` to finite outputs, else why not."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        src = data if isinstance(data, bytes) else str(data)
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[:1]
    except Exception as exc:  # onnxruntime raises its own exception types for graphs it cannot run
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not np.all(np.isfinite(y)):
        return "its outputs are not finite"
    return None
