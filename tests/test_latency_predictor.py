"""The predictor: vectorised lookups, calibration, and refusal of tables made for something else."""
from __future__ import annotations

import random

import numpy as np
import pytest

from slimnas import SlimnasError
from slimnas.latency import LatencyPredictor, LatencyTable, create_backend, profile
from slimnas.latency.fingerprint import FingerprintWarning
from slimnas.latency.predictor import fit_calibration
from slimnas.search.costs import CostTable, supernet_costs
from slimnas.latency.validate import device_of, kendall_tau, metrics

from .latency_helpers import FAST, MODEL_ARGS, tiny_supernet


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    return profile(tiny_supernet(), create_backend("onnxruntime"), str(out), "tiny", FAST, model_args=MODEL_ARGS)


def test_vectorised_prediction_equals_one_by_one(table):
    net = tiny_supernet()
    pred = LatencyPredictor(table, net, device=device_of(create_backend("onnxruntime")))
    rng = random.Random(0)
    subnets = [net.space.sample(rng) for _ in range(64)]
    batch = pred.predict(subnets)
    assert batch.shape == (64,) and np.isfinite(batch).all() and (batch > 0).all()
    one = np.array([pred.predict([s])[0] for s in subnets])
    np.testing.assert_allclose(batch, one)
    np.testing.assert_allclose(pred.predict(net.widths_matrix(subnets)), batch)
    assert pred.predict([net.space.max()])[0] > 0


def test_calibration_and_rescale(table):
    net = tiny_supernet()
    pred = LatencyPredictor(table, net)
    s = [net.space.min(), net.space.max(), net.space.uniform(0.75)]
    raw = pred.raw(s)
    before = pred.predict(s)
    fitted, cal = pred.calibrated(s, 2 * raw + 0.01, probe_ms=0.5, drift_corrected=pred.drift_corrected)
    assert cal["a"] == pytest.approx(2.0) and cal["b"] == pytest.approx(0.01, abs=1e-9)
    np.testing.assert_allclose(fitted.predict(s), 2 * raw + 0.01)
    np.testing.assert_allclose(pred.predict(s), before)  # the predictor it was fitted from is as it was
    np.testing.assert_allclose(fitted.rescale(1.0).predict(s), 2 * (2 * raw + 0.01))
    assert fit_calibration(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]))[0] == pytest.approx(2.0)


def test_speed_is_a_fixed_part_of_a_predictor_value(table):
    """Re-speeding gives a new predictor: a cost table built on the old one stays right (it caches by subnet)."""
    net = tiny_supernet()
    pred = LatencyPredictor(table, net)
    rng = random.Random(1)
    subnets = [net.space.sample(rng) for _ in range(8)]
    costs = CostTable(supernet_costs(net, pred), [])
    first = costs.column("latency_ms", subnets[:4])
    slower = pred.rescale(2 * pred.reference_probe_ms)
    assert isinstance(slower, LatencyPredictor) and slower is not pred
    assert pred.speed == 1.0 and slower.speed == pytest.approx(2.0)
    both = costs.column("latency_ms", subnets)  # half cached before, half computed after the re-speeding
    np.testing.assert_allclose(both[:4], first)
    np.testing.assert_allclose(both, pred.predict(subnets))
    np.testing.assert_allclose(CostTable(supernet_costs(net, slower), []).column("latency_ms", subnets), 2 * both)
    np.testing.assert_allclose(slower.at_speed(0.5).predict(subnets), 0.5 * both)
    np.testing.assert_allclose(pred.predict(subnets), both)
    for name, value in (("speed", 3.0), ("b", 0.0), ("reference_probe_ms", 1.0), ("calibration", None)):
        with pytest.raises(AttributeError, match="cannot be changed"):
            setattr(pred, name, value)
    with pytest.raises(ValueError):
        pred.slopes[0] = 5.0  # not even in place
    with pytest.raises(AttributeError):
        del pred.speed
    np.testing.assert_allclose(pred.predict(subnets), both)


def test_mismatch_is_refused_naming_it(table):
    with pytest.raises(SlimnasError, match="input_shape"):
        LatencyPredictor(table, tiny_supernet(size=20))
    device = device_of(create_backend("onnxruntime"))
    with pytest.raises(SlimnasError, match="threads"):
        LatencyPredictor(table, tiny_supernet(), device={**device, "threads": 4})
    with pytest.raises(SlimnasError, match="device_name"):
        LatencyPredictor(table, tiny_supernet(), device={**device, "device_name": "Some Other CPU"})
    with pytest.warns(FingerprintWarning, match="cores"):  # the same CPU with other cores only warns
        LatencyPredictor(table, tiny_supernet(), device={**device, "cores": 64})
    with pytest.raises(SlimnasError, match="model"):
        LatencyPredictor(table, tiny_supernet(), model="resnet18")
    LatencyPredictor(table, tiny_supernet(), model="tiny")  # the right name passes
    import slimnas

    other = slimnas.convert(tiny_supernet().model, 16, ratios=(0.25, 1.0))
    with pytest.raises(SlimnasError, match="space_hash"):
        LatencyPredictor(table, other)
    with pytest.raises(SlimnasError, match="not a latency table"):
        LatencyTable.load(table.path / "nothing-here")


def test_metrics():
    m = metrics(np.array([1.0, 2.1, 2.9]), np.array([1.0, 2.0, 3.0]))
    assert m["within_10pct"] == 1.0 and m["kendall_tau"] == 1.0
    assert kendall_tau(np.array([1, 2, 3]), np.array([3, 2, 1])) == -1.0


def test_predictor_imports_neither_profiler_nor_validate():
    """No import circle predictor ↔ profiler ↔ validate: not at the top, not inside a function."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import slimnas.latency.predictor as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.rsplit(".", 1)[-1] in ("profiler", "validate")}, imported
    code = ("import sys; from slimnas.latency.predictor import LatencyPredictor; "
            "print(sorted(m for m in sys.modules if m in ('slimnas.latency.profiler', 'slimnas.latency.validate')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
