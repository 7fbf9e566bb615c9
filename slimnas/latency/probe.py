"""The reference probe: a small fixed workload timed with every table and again whenever it is used.

The machines drift in speed (the same model measured 0.39 ms and 0.69 ms fifteen minutes apart), so a
table's numbers are only meaningful relative to the machine's speed at the time. The ratio of the probe now to
the probe when the table was built rescales predictions to the machine's current speed.

Two probes (``PROBES``; a table's fingerprint names its own, ``"conv"`` when it names none):

- ``conv``: one 3x3 conv + BN + ReLU, 32 → 32 channels on a 28x28 map, timed as a unit (in an INT8 table the
  one QLinearConv kernel it becomes inside a network). Compute-bound: it follows the speed of dense kernels.
- ``net``: a whole small network (a MobileNetV2-like stem, three inverted residual blocks, a head and a
  classifier on a 32x32 input; 13 layers), timed as a network is, in the table's dtype (quantized with its
  Q/DQ and layout ops for INT8). It follows what a small network's latency is made of besides dense compute:
  depthwise kernels, per-op dispatch, the quantize and transpose ops at its ends.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ..errors import SlimnasError
from .backends.base import Backend, Workload
from .timing import Timing, TimingConfig
from .units import Signature, input_shape, output_shape, unit_onnx, unit_torch

PROBES = ("conv", "net")
# The probe a new table is built on, per dtype (benchmarks/probe_tracking.py measured which follows the models).
DEFAULT_PROBE = {"fp32": "conv", "fp16": "conv", "int8": "net"}


def default_probe(dtype: str) -> str:
    """The probe a new table of ``dtype`` is built on."""
    return DEFAULT_PROBE.get(dtype, "conv")


def table_probe(record) -> str:
    """The probe a table's fingerprint (or a timing record) names; one from before the choice existed names
    none: ``conv``."""
    return str(record.get("probe") or "conv")


def check_probe(kind: str) -> str:
    """``kind`` if it is one of :data:`PROBES`, else a one-line :class:`SlimnasError`."""
    if kind not in PROBES:
        raise SlimnasError(f"no reference probe {kind!r}; the probes are {', '.join(PROBES)}")
    return kind

PROBE_SIG = Signature("conv", (3, 3), (1, 1), (1, 1), (1, 1), False, True, "relu", (28, 28))
PROBE_CHANNELS = 32
BASELINE_SIG = Signature("dwconv", (1, 1), (1, 1), (0, 0), (1, 1), False, False, "", (1, 1))


def unit_workload(sig: Signature, cin: int, cout: int, batch: int = 1) -> Workload:
    return Workload(input_shape(sig, cin, batch), output_shape(sig, cout, batch),
                    onnx=lambda: unit_onnx(sig, cin, cout, batch), torch=lambda: unit_torch(sig, cin, cout), inner=True)


# The ``net`` probe: (in, out, kernel, stride, groups "dw" or 1, activation, residual) per layer, 32x32 input.
NET_INPUT = (3, 32, 32)
NET_LAYERS = (
    (3, 16, 3, 2, 1, True, False),  # stem → 16x16
    (16, 64, 1, 1, 1, True, False), (64, 64, 3, 1, "dw", True, False), (64, 16, 1, 1, 1, False, True),
    (16, 64, 1, 1, 1, True, False), (64, 64, 3, 1, "dw", True, False), (64, 16, 1, 1, 1, False, True),
    (16, 64, 1, 1, 1, True, False), (64, 64, 3, 2, "dw", True, False), (64, 32, 1, 1, 1, False, False),  # → 8x8
    (32, 128, 1, 1, 1, True, False),  # head
)
NET_CLASSES = 10


def probe_workload(kind: str, batch: int = 1) -> Workload:
    """The workload of probe ``kind`` (one of :data:`PROBES`)."""
    if check_probe(kind) == "conv":
        return unit_workload(PROBE_SIG, PROBE_CHANNELS, PROBE_CHANNELS, batch)
    return Workload((batch, *NET_INPUT), (batch, NET_CLASSES), onnx=lambda: net_onnx(batch), torch=net_torch)


def time_probe(backend: Backend, timing: TimingConfig, kind: str = "conv") -> Timing:
    """The reference probe ``kind`` (see the module's text) timed on ``backend``."""
    return backend.time(probe_workload(kind, backend.config.batch), timing)


def _net_weights(seed: int = 0):
    """Per layer: its spec (with ``starts``: an expansion layer, whose input the block's residual adds back after
    the projection), conv weight and bias (BN folded, as an exported network has it); then the classifier's."""
    rng = np.random.default_rng(seed)
    layers = []
    for cin, cout, k, s, g, act, res in NET_LAYERS:
        groups = cin if g == "dw" else 1
        starts = k == 1 and groups == 1 and cin < cout
        w = (rng.standard_normal((cout, cin // groups, k, k)) * (2 / (cin // groups * k * k)) ** 0.5).astype(np.float32)
        layers.append(((cin, cout, k, s, groups, act, res, starts), w, (rng.standard_normal(cout) * 0.1).astype(np.float32)))
    width = NET_LAYERS[-1][1]
    fc = ((rng.standard_normal((NET_CLASSES, width)) * width ** -0.5).astype(np.float32), np.zeros(NET_CLASSES, np.float32))
    return layers, fc


@lru_cache(maxsize=8)
def net_onnx(batch: int = 1) -> bytes:
    """The ``net`` probe as the ONNX graph torch would export for it (opset 17); built once per batch (it is timed
    in every round)."""
    layers, (fw, fb) = _net_weights()
    inits = [numpy_helper.from_array(np.array(0, np.float32), "c_lo"), numpy_helper.from_array(np.array(6, np.float32), "c_hi"),
             numpy_helper.from_array(fw, "fc_w"), numpy_helper.from_array(fb, "fc_b")]
    nodes, x, block_in = [], "x", "x"
    for i, ((cin, cout, k, s, groups, act, res, starts), w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        if starts:
            block_in = x
        p = k // 2
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k, k], strides=[s, s],
                                      pads=[p, p, p, p], group=groups))
        x = f"c{i}"
        if act:
            nodes.append(helper.make_node("Clip", [x, "c_lo", "c_hi"], [f"a{i}"]))
            x = f"a{i}"
        if res:
            nodes.append(helper.make_node("Add", [x, block_in], [f"r{i}"]))
            x = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "probe_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (batch, *NET_INPUT))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (batch, NET_CLASSES))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="slimnas")
    model.ir_version = 8
    return model.SerializeToString()


def net_torch():
    """The ``net`` probe as a torch module (for the torch and TensorRT backends), with the same weights."""
    import torch
    from torch import nn

    layers, (fw, fb) = _net_weights()

    class ProbeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList()
            self.spec = []
            for (cin, cout, k, s, groups, act, res, starts), w, b in layers:
                conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups)
                conv.weight.data, conv.bias.data = torch.from_numpy(w), torch.from_numpy(b)
                self.convs.append(conv)
                self.spec.append((starts, act, res))
            self.fc = nn.Linear(fw.shape[1], fw.shape[0])
            self.fc.weight.data, self.fc.bias.data = torch.from_numpy(fw), torch.from_numpy(fb)

        def forward(self, x):
            block_in = x
            for conv, (starts, act, res) in zip(self.convs, self.spec):
                if starts:
                    block_in = x
                x = conv(x)
                if act:
                    x = torch.clamp(x, 0, 6)
                if res:
                    x = x + block_in
            return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return ProbeNet().eval()


def time_baseline(backend: Backend, timing: TimingConfig) -> Timing:
    """An (almost) empty call: a 1x1 depthwise conv of one value. Subtracted from every unit."""
    return backend.time(unit_workload(BASELINE_SIG, 1, 1, backend.config.batch), timing)
