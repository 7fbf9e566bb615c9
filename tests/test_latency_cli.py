"""CLI and backends: one-line errors with exit code 2; TensorRT absent → a clean error and skipped tests."""
from __future__ import annotations

import importlib.util

import pytest

from slimnas import SlimnasError
from slimnas.cli import main
from slimnas.latency import backend_names, create_backend

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err
    return err


def test_validate_without_table(capsys, tmp_path):
    _one_line_error(capsys, ["latency", "validate", "--table", str(tmp_path / "none"), "--samples", "3"], "no fingerprint.json")


def test_validate_too_few_samples(capsys, tmp_path):
    _one_line_error(capsys, ["latency", "validate", "--table", str(tmp_path), "--samples", "1"], "--samples")


def test_profile_bad_threads(capsys):
    _one_line_error(capsys, ["profile", "mobilenet_v2", "--threads", "0"], "threads")


def test_profile_bad_passes(capsys):
    _one_line_error(capsys, ["profile", "mobilenet_v2", "--passes", "0"], "--passes")


def test_profile_unknown_model(capsys):
    _one_line_error(capsys, ["profile", "mobilenet_v9", "--input-size", "32"], "unknown model name")


def test_registry_lists_backends():
    assert {"onnxruntime", "torch", "tensorrt"} <= set(backend_names())
    with pytest.raises(SlimnasError, match="unknown latency backend"):
        create_backend("tvm")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_tensorrt_missing_is_one_line_error(capsys):
    _one_line_error(capsys, ["profile", "mobilenet_v2", "--backend", "tensorrt", "--device", "cuda"], "pip install slimnas[trt]")


@pytest.mark.trt
def test_tensorrt_times_a_unit():
    pytest.importorskip("tensorrt")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.probe import time_probe

    t = time_probe(create_backend("tensorrt", BackendConfig(device="cuda")), TimingConfig())
    assert t.n >= 30 and t.median_ms > 0


def test_torch_backend_times_a_unit():
    from slimnas.latency import BackendConfig, TimingConfig
    from slimnas.latency.probe import time_probe

    t = time_probe(create_backend("torch", BackendConfig(threads=1)), TimingConfig(warmup_ms=1, samples=30, min_sample_ms=0.05))
    assert t.n == 30 and t.p10_ms <= t.median_ms <= t.p90_ms


def test_profile_too_few_samples(capsys):
    _one_line_error(capsys, ["profile", "mobilenet_v2", "--samples", "5"], "--samples", "at least 30")


def test_latency_unknown_action_is_one_line(capsys):
    _one_line_error(capsys, ["latency", "check"], "'check'", "validate", "calibrate")
    _one_line_error(capsys, ["latency"], "validate", "calibrate")
    # a wrong action with a table after it names the action, not "unrecognized arguments"
    _one_line_error(capsys, ["latency", "recalibrate", "T"], "unknown action 'recalibrate'", "calibrate")


def test_latency_table_as_a_word(capsys, tmp_path):
    _one_line_error(capsys, ["latency", "calibrate", str(tmp_path / "none")], "no fingerprint.json")  # read as --table
    _one_line_error(capsys, ["latency", "calibrate", "A", "--table", "B"], "two tables given")


def test_latency_missing_table_is_one_line(capsys):
    _one_line_error(capsys, ["latency", "validate"], "--table")
