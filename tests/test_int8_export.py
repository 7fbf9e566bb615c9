"""model.int8.onnx: onnxruntime static quantization calibrated on training images, written only if onnxruntime
runs it, its accuracy that of the INT8 graph in onnxruntime on the test split; missing calibration data refused."""
from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch

import slimnas
from slimnas import SlimnasError
from slimnas.data import DataConfig, load_data, make_loader
from slimnas.export import onnx_metadata
from slimnas.pipeline import ExportConfig
from slimnas.pipeline.exports import write_exports
from slimnas.quantize import SETTINGS, int8_ops
from tests.conftest import calibrate
from tests.nets import TinyNet

SIZE = 16


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig("digits", image_size=SIZE, train_subset=200, test_subset=120))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = slimnas.convert(calibrate(TinyNet(10), (3, SIZE, SIZE)), SIZE).eval()
    return slimnas.export_subnet(net, net.space.uniform(0.5)).eval()


def _ort_top1(path, dataset) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    right = n = 0
    for x, y in make_loader(dataset, 50):
        right += int((sess.run(None, {"input": x.numpy()})[0].argmax(1) == y.numpy()).sum())
        n += len(y)
    return right / n


def test_model_int8_onnx_is_quantized_runs_and_is_scored_in_onnxruntime(tmp_path, model, data):
    done = write_exports(model, tmp_path, (3, SIZE, SIZE), ExportConfig(tensorrt=False, int8=True, int8_calibration=40),
                         data=data)
    path = tmp_path / "model.int8.onnx"
    assert "model.int8.onnx" in done["files"] and path.is_file()
    ops = int8_ops(path)
    assert ops.get("QuantizeLinear", 0) >= 1 and ops.get("DequantizeLinear", 0) >= 1
    info = done["int8"]
    assert info["written"] and info["quantization"] == SETTINGS.describe() and info["calibration_images"] == 40
    # the accuracy is the INT8 graph's, run by onnxruntime on the test split (not the torch model's)
    assert info["test_images"] == len(data.test) and info["accuracy_from"].startswith("onnxruntime")
    assert info["test_top1"] == pytest.approx(_ort_top1(path, data.test))
    assert info["onnx_fp32_test_top1"] == pytest.approx(_ort_top1(tmp_path / "model.onnx", data.test))
    meta = onnx_metadata(path)
    assert meta["quantization"]["calibration_images"] == 40 and meta["format"] == "slimnas.onnx/1"
    assert "model.int8.engine: TensorRT is not installed (pip install slimnas[trt])" in done["skipped"] or \
        "model.int8.engine" in " ".join(done["skipped"] + done["files"])
    json.dumps(done)  # goes into exports.json as it is
    # the run's report says how model.int8.onnx was made and what onnxruntime scored it
    from slimnas.pipeline.report import _int8_lines

    line = _int8_lines(info)[0]
    assert "calibrated on 40 training images" in line and f"test top-1 {info['test_top1']:.4f} run in onnxruntime" in line
    assert _int8_lines({"written": False, "reason": "onnxruntime cannot run it"}) == [
        "- `model.int8.onnx` not written: onnxruntime cannot run it"]


def test_an_int8_latency_target_exports_int8_too(tmp_path, model, data):
    done = write_exports(model, tmp_path, (3, SIZE, SIZE), ExportConfig(tensorrt=False, int8_calibration=8), data=data,
                         dtype="int8")
    assert (tmp_path / "model.int8.onnx").is_file() and done["int8"]["written"]
    (tmp_path / "fp32").mkdir()
    plain = write_exports(model, tmp_path / "fp32", (3, SIZE, SIZE), ExportConfig(tensorrt=False), data=data)
    assert "int8" not in plain and not (tmp_path / "fp32" / "model.int8.onnx").exists()


def test_missing_calibration_data_is_refused_before_anything_is_written(tmp_path, model):
    with pytest.raises(SlimnasError, match="calibration images from the training split"):
        write_exports(model, tmp_path, (3, SIZE, SIZE), ExportConfig(tensorrt=False, int8=True), data=None)
    assert not list(tmp_path.iterdir())
    with pytest.raises(SlimnasError, match="int8_calibration"):
        ExportConfig(int8=True, int8_calibration=0)


def test_a_quantized_graph_that_does_not_run_is_not_written(tmp_path, model, data, monkeypatch):
    """The quantizer's graph is broken for real (an op onnxruntime has no kernel for): onnxruntime refuses
    to run it, so model.int8.onnx is skipped with the reason and nothing half-written is left."""
    import slimnas.quantize as q

    real = q.quantize_onnx

    def broken(*args, **kwargs):
        m = onnx.load_from_string(real(*args, **kwargs))
        next(n for n in m.graph.node if n.op_type == "DequantizeLinear").op_type = "DequantizeLinearNowhere"
        return m.SerializeToString()

    monkeypatch.setattr(q, "quantize_onnx", broken)
    done = write_exports(model, tmp_path, (3, SIZE, SIZE), ExportConfig(tensorrt=False, int8=True, int8_calibration=8),
                         data=data)
    assert not done["int8"]["written"] and "cannot run" in done["int8"]["reason"]
    assert not (tmp_path / "model.int8.onnx").exists() and "model.int8.onnx" not in done["files"]
    assert any(s.startswith("model.int8.onnx: onnxruntime cannot run") for s in done["skipped"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_export_cli_int8_without_a_loadable_run_is_one_line(tmp_path, capsys):
    from slimnas.cli import main

    assert main(["export", str(tmp_path), "--int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1


def test_export_of_a_slim_run_folder_writes_int8_from_its_own_data(tmp_path, model, capsys):
    """`slimnas export RUN --int8` on a `slimnas slim` folder (model.pt + config.yaml): the run's own data gives
    the calibration images and the test split; the figures land in the returned summary."""
    from slimnas.cli import main
    from slimnas.data.transforms import InputSpec
    from slimnas.pipeline.exports import export
    from tests.slim_helpers import TINY_YAML

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(TINY_YAML.replace("input_size: 32", f"input_size: {SIZE}")
                                     .replace("data: {source: digits}", "data: {source: digits, test_subset: 60}"))
    slimnas.save_exported(model, run / "model.pt", None, "tests.nets:tiny_net", 10, inputs=InputSpec(SIZE, (0.5,) * 3, (0.25,) * 3))
    done = export(run, tmp_path / "out", config=ExportConfig(tensorrt=False, int8=True, int8_calibration=16))
    assert (tmp_path / "out" / "model.int8.onnx").is_file() and done["int8"]["test_images"] == 60
    assert main(["export", str(run), "--out", str(tmp_path / "cli"), "--int8", "--int8-calibration", "8"]) == 0
    assert (tmp_path / "cli" / "model.int8.onnx").is_file()


def test_fake_quant_computes_what_the_int8_graph_computes():
    """slimnas.qat's fake quantization is the INT8 graph onnxruntime runs: its outputs are much closer to the
    quantized graph's than the float model's are (same weights, the same calibration batch for both ranges)."""
    import io

    import torchvision

    from slimnas.qat import FakeQuant, fold_batchnorm
    from slimnas.quantize import quantize_onnx

    torch.manual_seed(0)
    model = calibrate(torchvision.models.mobilenet_v2(num_classes=10), (3, 32, 32)).eval()
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() <= 1e-5
    buf = io.BytesIO()
    torch.onnx.export(folded, (x,), buf, opset_version=17, dynamo=False, input_names=["input"])
    sess = ort.InferenceSession(quantize_onnx(buf.getvalue(), [x.numpy()]), providers=["CPUExecutionProvider"])
    int8 = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
    fq = FakeQuant(folded)
    with torch.no_grad():
        simulated = folded(x)  # eval: the ranges are this batch's min/max, as the calibration's
    fq.remove()
    with torch.no_grad():
        plain = folded(x)
    assert (simulated - int8).abs().max() < 0.5 * (plain - int8).abs().max()
    assert torch.equal(plain, folded(x).detach())  # removed: the float model again


def test_quantization_aware_finetune_writes_the_int8_graph_and_scores_both(tmp_path, model, data):
    done = write_exports(model, tmp_path, (3, SIZE, SIZE),
                         ExportConfig(tensorrt=False, int8=True, int8_calibration=40, int8_qat_steps=12, int8_qat_lr=1e-3),
                         data=data)
    info = done["int8"]
    assert info["written"] and (tmp_path / "model.int8.onnx").is_file()
    assert info["qat"]["steps"] == 12 and info["qat"]["last_loss"] > 0
    assert 0 <= info["test_top1"] <= 1 and 0 <= info["ptq_test_top1"] <= 1
    assert info["test_top1"] == pytest.approx(_ort_top1(tmp_path / "model.int8.onnx", data.test))
    assert int8_ops(tmp_path / "model.int8.onnx")["QuantizeLinear"] > 0
    meta = onnx_metadata(tmp_path / "model.int8.onnx")["quantization"]  # JSON-decoded
    assert meta["qat"]["steps"] == 12
    from slimnas.pipeline.report import _int8_lines

    assert "quantization-aware fine-tune of 12 steps" in _int8_lines(info)[0]
    with pytest.raises(SlimnasError, match="int8_qat_steps must be >= 0"):
        ExportConfig(int8_qat_steps=-1)
