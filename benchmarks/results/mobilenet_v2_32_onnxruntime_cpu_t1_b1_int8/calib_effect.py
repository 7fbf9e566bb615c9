"""Per-unit effect of the calibration values on INT8 timing: one unit quantized from inputs at 3 scales."""
import json
from slimnas.latency import BackendConfig, TimingConfig, create_backend
from slimnas.latency.backends import Workload
from slimnas.latency.units import Signature, unit_onnx, input_shape, output_shape
from slimnas import quantize as q

b = create_backend("onnxruntime", BackendConfig(dtype="int8"))
units = [(Signature("conv", (1, 1), (1, 1), (0, 0), (1, 1), False, True, "relu6", (16, 16)), 96, 24),
         (Signature("dwconv", (3, 3), (1, 1), (1, 1), (1, 1), False, True, "relu6", (16, 16)), 144, 144),
         (Signature("conv", (1, 1), (1, 1), (0, 0), (1, 1), False, True, "relu6", (56, 56)), 24, 144)]
real = q.random_calibration
out = []
for sig, cin, cout in units:
    row = {"unit": sig.key, "cin": cin, "cout": cout}
    for scale in (0.1, 1.0, 10.0):
        q_cal = lambda shape, n=4, seed=0, s=scale: [a * s for a in real(shape, n, seed)]
        import slimnas.quantize
        slimnas.quantize.random_calibration = q_cal
        b._int8.clear()
        w = Workload(input_shape(sig, cin), output_shape(sig, cout), onnx=lambda: unit_onnx(sig, cin, cout), inner=True)
        ts = [b.time(w, TimingConfig(samples=30)).median_ms for _ in range(5)]
        row[f"scale_{scale:g}_ms"] = min(ts)
    slimnas.quantize.random_calibration = real
    out.append(row)
print(json.dumps(out, indent=1))
