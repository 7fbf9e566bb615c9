"""Exported files that load and say how to feed them: model.pt rebuilds its class whatever the model was given
as, and model.onnx has a dynamic batch axis and metadata enough to classify an image file."""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision
from torch import nn

import slimnas
from slimnas.data.transforms import InputSpec, eval_transform
from slimnas.pipeline import ExportConfig
from slimnas.pipeline.exports import arch_name, write_exports
from slimnas.pipeline.report import ONNX_SNIPPET
from tests.conftest import calibrate
from tests.nets import TinyNet, conv_bn

CLASSES = ["airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class OwnNet(nn.Module):
    """A user's own class, defined in a (test) module rather than in torchvision."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16, 3), conv_bn(16, 32, 3), conv_bn(32, 32, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _slimmed(model: nn.Module, size: int = 16) -> tuple[nn.Module, slimnas.Subnet]:
    net = slimnas.convert(calibrate(model, (3, size, size)), size).eval()
    sub = net.space.uniform(0.5)
    return slimnas.export_subnet(net, sub).eval(), sub


@torch.no_grad()
@pytest.mark.parametrize("make, cls, arch", [(lambda: OwnNet(5), OwnNet, "tests.test_export_files:OwnNet"),
                                             (lambda: torchvision.models.mobilenet_v3_small(num_classes=5),
                                              torchvision.models.MobileNetV3, "mobilenet_v3_small")])
def test_a_module_given_without_its_architecture_loads_back(tmp_path, make, cls, arch):
    """An nn.Module (a user's class, or a torchvision one built by hand) exports to a model.pt that loads."""
    torch.manual_seed(0)
    plain, sub = _slimmed(make())
    path = slimnas.save_exported(plain, tmp_path / "model.pt", sub, num_classes=5, inputs=InputSpec(16, (0.5,) * 3, (0.25,) * 3))
    assert torch.load(path, weights_only=True)["slimnas"]["arch"] == arch
    loaded = slimnas.load_exported(path)
    x = torch.randn(3, 3, 16, 16)
    assert type(loaded) is cls and torch.equal(loaded(x), plain(x))


@torch.no_grad()
def test_a_class_that_cannot_be_imported_says_how_to_load_it(tmp_path):
    class Local(OwnNet):  # defined in a function: no import path reaches it
        pass

    plain, sub = _slimmed(Local(4))
    with pytest.warns(UserWarning, match=r"cannot rebuild .*Local by import; load the file with load_exported\(path, Local"):
        path = slimnas.save_exported(plain, tmp_path / "model.pt", sub, num_classes=4)
    with pytest.raises(slimnas.SlimnasError, match=r"cannot rebuild by import: pass a fresh instance, load_exported\(path, Local"):
        slimnas.load_exported(path)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(slimnas.load_exported(path, Local(4))(x), plain(x))


def test_a_model_given_as_a_file_names_its_architecture(tmp_path):
    """With a checkpoint or an exported model as the model, the run's model.pt records the architecture."""
    torch.save({"arch": "mobilenet_v2", "state_dict": torchvision.models.mobilenet_v2(num_classes=10).state_dict()},
               tmp_path / "ck.pt")
    assert arch_name(str(tmp_path / "ck.pt")) == "mobilenet_v2"
    plain, sub = _slimmed(TinyNet(10))
    slimnas.save_exported(plain, tmp_path / "slim.pt", sub, arch="tests.nets:tiny_net", num_classes=10)
    assert arch_name(str(tmp_path / "slim.pt")) == "tests.nets:tiny_net"
    # and slimming that file again: the new model.pt loads as well
    again = slimnas.load_model(str(tmp_path / "slim.pt"))
    plain2, sub2 = _slimmed(again)
    path = slimnas.save_exported(plain2, tmp_path / "again.pt", sub2, arch_name(str(tmp_path / "slim.pt")), 10)
    assert type(slimnas.load_exported(path)) is TinyNet


def _deploy(tmp_path, size: int):
    torch.manual_seed(0)
    plain, sub = _slimmed(TinyNet(10), size)
    spec = InputSpec(size, (0.45, 0.5, 0.55), (0.2, 0.25, 0.3))
    slimnas.save_exported(plain, tmp_path / "model.pt", sub, "tests.nets:tiny_net", 10, inputs=spec, classes=CLASSES)
    done = write_exports(plain, tmp_path, (3, size, size), ExportConfig(onnx=True, tensorrt=False), batch=1)
    return plain, spec, done


@torch.no_grad()
def test_model_onnx_has_a_dynamic_batch_and_says_how_to_feed_it(tmp_path):
    plain, spec, done = _deploy(tmp_path, 16)
    assert done["onnx_batch"] == "dynamic" and done["onnx_max_abs_diff"] <= 1e-4
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = torch.randn(n, 3, 16, 16)
        (got,) = sess.run(None, {"input": x.numpy()})
        assert got.shape == (n, 10) and np.abs(got - plain(x).numpy()).max() <= 1e-4
    meta = slimnas.export.onnx_metadata(tmp_path / "model.onnx")
    assert meta["classes"] == CLASSES and meta["mean"] == [0.45, 0.5, 0.55] and meta["std"] == [0.2, 0.25, 0.3]
    assert (meta["resize"], meta["crop"], meta["input_shape"], meta["color"]) == (16, 16, [3, 16, 16], "RGB")
    pt = torch.load(tmp_path / "model.pt", weights_only=True)["slimnas"]
    assert pt["classes"] == CLASSES and pt["input"]["mean"] == [0.45, 0.5, 0.55] and pt["input"]["crop"] == 16
    fixed = write_exports(plain, tmp_path, (3, 16, 16), ExportConfig(onnx=True, tensorrt=False), batch=2,
                          dynamic_batch=False)
    assert fixed["onnx_batch"] == 2
    assert ort.InferenceSession(str(tmp_path / "model.onnx")).get_inputs()[0].shape[0] == 2


@torch.no_grad()
@pytest.mark.parametrize("size", [16, 72])  # small images: resize to the side; large: resize to 8/7, centre crop
def test_the_report_snippet_classifies_a_png_with_model_onnx_alone(tmp_path, size):
    from PIL import Image

    plain, spec, _ = _deploy(tmp_path, size)
    rng = np.random.default_rng(size)
    pixels = (rng.random((37, 53, 3)) * 255).astype(np.uint8)  # a non-square image: the crop matters
    Image.fromarray(pixels).save(tmp_path / "image.png")
    code = ONNX_SNIPPET.replace('"image.jpg"', '"image.png"')
    assert code.count("\n") <= 10 and "torch" not in code and "slimnas" not in code
    scope: dict = {}
    cwd, out = os.getcwd(), io.StringIO()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Image.BILINEAR's newer spelling
            exec(compile(code, "snippet", "exec"), scope)
    finally:
        os.chdir(cwd)
    want = eval_transform(size, spec.mean, spec.std)(Image.open(tmp_path / "image.png").convert("RGB"))
    got = torch.from_numpy(scope["x"].transpose(2, 0, 1).astype(np.float32))
    assert got.shape == want.shape == (3, size, size) and float((got - want).abs().max()) <= 1e-5
    assert out.getvalue().strip() == CLASSES[int(plain(want[None]).argmax())]


def test_the_readme_shows_the_tested_snippet():
    """README's deploy snippet is the one tested above (report.md prints the same text)."""
    from tests.conftest import ROOT

    readme = "\n".join(line[3:] if line.startswith("   ") else line for line in (ROOT / "README.md").read_text().splitlines())
    assert ONNX_SNIPPET in readme + "\n"
