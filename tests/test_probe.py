"""The reference probes (slimnas.latency.probe): the ``net`` probe's graph, its timing on real runtimes, the kind
a table is built on, and every later timing of that table timing the same kind."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from slimnas import SlimnasError
from slimnas.latency import BackendConfig, LatencyTable, TimingConfig, create_backend, profile
from slimnas.latency.e2e import E2EConfig, export_subnets, time_onnx_files
from slimnas.latency.probe import PROBES, default_probe, net_onnx, net_torch, probe_workload, table_probe, time_probe
from slimnas.quantize import int8_ops

from .latency_helpers import FAST, MODEL_ARGS, tiny_supernet

QUICK = TimingConfig(warmup_ms=1, samples=30, min_sample_ms=0.02, max_inner=5)


def test_the_net_probe_is_the_same_network_in_onnx_and_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(net_onnx(batch=2), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    with torch.no_grad():
        want = net_torch()(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 10) and np.abs(got - want).max() < 1e-4
    assert np.abs(got).max() > 0.1  # a network that computes something (not zeros through the residuals)


def test_the_net_probe_runs_quantized_on_an_int8_backend_and_float_on_fp32():
    int8 = create_backend("onnxruntime", BackendConfig(dtype="int8"))
    graph, optimized = int8.graph(probe_workload("net"))
    assert not optimized and int8_ops(graph).get("QuantizeLinear", 0) >= 10  # a whole network, as subnets are
    fp32_graph, _ = create_backend("onnxruntime").graph(probe_workload("net"))
    assert not int8_ops(fp32_graph)
    for backend in (int8, create_backend("onnxruntime"), create_backend("torch", BackendConfig(threads=1))):
        for kind in PROBES:
            t = time_probe(backend, QUICK, kind)
            assert t.n == 30 and np.isfinite(t.median_ms) and t.median_ms > 0


def test_an_unknown_probe_is_refused_in_one_line(tmp_path):
    with pytest.raises(SlimnasError, match="probes are conv, net"):
        probe_workload("mystery")
    net = tiny_supernet()
    paths = export_subnets(net, [net.space.min()], tmp_path)
    with pytest.raises(SlimnasError, match="no reference probe 'mystery'"):
        time_onnx_files(paths, "onnxruntime", BackendConfig(), QUICK, E2EConfig(rounds=2, samples_per_round=3), probe="mystery")


def test_the_worker_times_the_tables_probe_and_the_extra_ones_in_every_round(tmp_path):
    net = tiny_supernet()
    paths = export_subnets(net, [net.space.max(), net.space.min()], tmp_path)
    res = time_onnx_files(paths, "onnxruntime", BackendConfig(dtype="int8"), QUICK,
                          E2EConfig(rounds=3, samples_per_round=3, processes=2), probe="net", extra_probes=["conv"])
    assert res["probe"] == "net" and set(res["probe_ms_by_kind"]) == {"net", "conv"}
    assert res["probe_ms"] == res["probe_ms_by_kind"]["net"]
    assert all(len(v) == 2 * 4 for v in res["probe_ms_by_kind"].values())  # rounds + 1, per process
    assert res["probe_ms_by_kind"]["net"] != res["probe_ms_by_kind"]["conv"]
    plain = time_onnx_files(paths, "onnxruntime", BackendConfig(), QUICK, E2EConfig(rounds=2, samples_per_round=3))
    assert plain["probe"] == "conv" and list(plain["probe_ms_by_kind"]) == ["conv"]


def test_defaults_and_old_tables():
    assert default_probe("int8") == "net" and default_probe("fp32") == "conv"
    assert table_probe({}) == "conv" and table_probe({"probe": "net"}) == "net"


@pytest.fixture(scope="module")
def int8_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "int8"
    return profile(tiny_supernet(), create_backend("onnxruntime", BackendConfig(dtype="int8")), out, "tiny", FAST,
                   model_args=MODEL_ARGS)


def test_an_int8_table_is_built_on_the_net_probe_and_validated_on_it(int8_table, tmp_path):
    from slimnas.latency.validate import validate

    assert int8_table.fingerprint["probe"] == "net" and int8_table.probe == "net"
    cal = json.loads((int8_table.path / "calibration.json").read_text())
    assert np.isfinite(cal["probe_ms"]) and cal["probe_ms"] > 0
    result = validate(int8_table.path, tiny_supernet(), samples=2, seed=1, out=tmp_path / "v", rounds=2)
    assert result["finished"] and result["probe"] == "net"
    (chunk,) = (tmp_path / "v" / "work").glob("chunk_*.json")
    assert json.loads(chunk.read_text())["job"]["probe"] == "net"


def test_a_resumed_table_keeps_its_probe_and_refuses_another(int8_table):
    from dataclasses import replace

    backend = create_backend("onnxruntime", BackendConfig(dtype="int8"))
    again = profile(tiny_supernet(), backend, int8_table.path, "tiny", FAST, model_args=MODEL_ARGS)
    assert again.probe == "net"
    with pytest.raises(SlimnasError, match="'net' reference probe, not 'conv'"):
        profile(tiny_supernet(), backend, int8_table.path, "tiny", replace(FAST, probe="conv"), model_args=MODEL_ARGS)


def test_a_table_from_before_the_choice_resumes_on_conv(tmp_path):
    """A table whose fingerprint names no probe was built on ``conv``: resuming it goes on timing conv."""
    out = tmp_path / "old"
    backend = create_backend("onnxruntime", BackendConfig(dtype="int8"))
    table = profile(tiny_supernet(), backend, out, "tiny", FAST, model_args=MODEL_ARGS)
    fp = dict(table.fingerprint)
    del fp["probe"]
    (out / "fingerprint.json").write_text(json.dumps(fp))
    assert LatencyTable.load(out).probe == "conv"
    assert profile(tiny_supernet(), backend, out, "tiny", FAST, model_args=MODEL_ARGS).probe == "conv"


def test_anchor_skips_the_rescale_of_a_reference_timed_on_another_probe(int8_table):
    from slimnas.latency import LatencyPredictor
    from slimnas.latency.validate import device_of
    from slimnas.pipeline.prepare import anchor

    net = tiny_supernet()
    pred = LatencyPredictor(int8_table, net, device=device_of(create_backend("onnxruntime", BackendConfig(dtype="int8"))))
    original_ms = float(pred.predict([net.space.original()])[0]) * 1.2
    ref = {"original": {"median_ms": original_ms}, "probe_ms": pred.reference_probe_ms * 3}
    same, how = anchor(pred, net, {**ref, "probe": "net"})
    other, how_other = anchor(pred, net, {**ref, "probe": "conv"})
    assert how["probe_factor"] == pytest.approx(3.0) and how_other["probe_factor"] == pytest.approx(1.0)
    for p in (same, other):  # either way the original is predicted as measured
        assert float(p.predict([net.space.original()])[0]) == pytest.approx(original_ms)
