"""The reference probe: a small fixed workload timed with every table and again whenever it is used.

The machines drift in speed (the same model measured 0.39 ms and 0.69 ms fifteen minutes apart), so a
table's numbers are only meaningful relative to the machine's speed at the time. The ratio of the probe now to
the probe when the table was built rescales predictions to the machine's current speed.
"""
from __future__ import annotations

from .backends.base import Backend, Workload
from .timing import Timing, TimingConfig
from .units import Signature, input_shape, output_shape, unit_onnx, unit_torch

PROBE_SIG = Signature("conv", (3, 3), (1, 1), (1, 1), (1, 1), False, True, "relu", (28, 28))
PROBE_CHANNELS = 32
BASELINE_SIG = Signature("dwconv", (1, 1), (1, 1), (0, 0), (1, 1), False, False, "", (1, 1))


def unit_workload(sig: Signature, cin: int, cout: int, batch: int = 1) -> Workload:
    return Workload(input_shape(sig, cin, batch), output_shape(sig, cout, batch),
                    onnx=lambda: unit_onnx(sig, cin, cout, batch), torch=lambda: unit_torch(sig, cin, cout), inner=True)


def time_probe(backend: Backend, timing: TimingConfig) -> Timing:
    """The reference probe: a 3x3 conv + BN + ReLU, 32 → 32 channels on a 28x28 map."""
    return backend.time(unit_workload(PROBE_SIG, PROBE_CHANNELS, PROBE_CHANNELS, backend.config.batch), timing)


def time_baseline(backend: Backend, timing: TimingConfig) -> Timing:
    """An (almost) empty call: a 1x1 depthwise conv of one value. Subtracted from every unit."""
    return backend.time(unit_workload(BASELINE_SIG, 1, 1, backend.config.batch), timing)
