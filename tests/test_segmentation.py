"""Issue 14: torchvision's two MobileNetV3 segmentation models convert, and export with every output.

Their forward returns a dict ({"out": ...}, plus "aux" with ``aux_loss=True``): the supernet, the exported
model and the ONNX graph must agree on every entry, and the heads' input widths must follow the backbone's.
"""
from __future__ import annotations

import random

import onnx
import pytest
import torch
import torchvision
from torch import nn

import slimnas
from slimnas.errors import SlimnasError
from slimnas.export import max_output_diff, named_outputs, onnx_max_abs_diff
from tests.conftest import calibrate

SIZE = 64
# (torchvision name, extra arguments, a head conv whose input comes from the backbone, outputs)
MODELS = [("lraspp_mobilenet_v3_large", {}, "classifier.cbr.0", ["out"]),
          ("deeplabv3_mobilenet_v3_large", {"aux_loss": True}, "classifier.0.convs.0.0", ["out", "aux"])]


@pytest.fixture(scope="module", params=MODELS, ids=[m[0] for m in MODELS])
def seg(request):
    name, kwargs, head, outputs = request.param
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=5, **kwargs)
    model = calibrate(model, (3, SIZE, SIZE))
    return name, model, head, outputs, slimnas.convert(model, SIZE).eval()


@torch.no_grad()
def test_segmentation_models_convert_to_a_wide_space(seg):
    name, model, _, outputs, net = seg
    x = torch.randn(1, 3, SIZE, SIZE)
    want = model(x)
    assert list(want) == outputs
    assert max_output_diff(net(x), want) <= 1e-5
    ratio = net.flops(net.space.min()) / net.flops(net.space.original())
    assert ratio <= 0.20, f"{name}: min/original FLOPs {ratio:.3f}"
    assert not net.graph.notes, f"{name}: groups frozen by the tracer: {net.graph.notes}"


@torch.no_grad()
def test_segmentation_subnet_exports_with_every_output(seg, tmp_path):
    name, model, head, outputs, net = seg
    rng = random.Random(3)
    x = torch.randn(1, 3, SIZE, SIZE)
    for i, subnet in enumerate([net.space.min(), net.space.sample(rng)]):
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert type(plain) is type(model)
        # the head reads the backbone's last features: its input width follows the backbone's
        got_in = plain.get_submodule(head).in_channels
        assert isinstance(plain.get_submodule(head), nn.Conv2d) and got_in < model.get_submodule(head).in_channels
        assert plain.get_submodule(head).weight.shape[1] == got_in
        assert max_output_diff(plain(x), net(x)) <= 1e-5, f"{name} subnet {subnet.hash}"
        path = slimnas.export_onnx(plain, tmp_path / f"{name}-{i}.onnx", (3, SIZE, SIZE), dynamic_batch=True)
        graph = onnx.load(str(path))
        assert [o.name for o in graph.graph.output] == outputs
        assert onnx_max_abs_diff(plain, path, torch.randn(2, 3, SIZE, SIZE)) <= 1e-4
        assert [n for n, _ in named_outputs(plain(x))] == outputs


def test_named_outputs_names_and_refusals():
    t = torch.zeros(1)
    assert [n for n, _ in named_outputs(t)] == ["output"]
    assert [n for n, _ in named_outputs((t, {"a": t, "b": [t, t]}))] == ["output0", "output1.a", "output1.b.0",
                                                                         "output1.b.1"]
    with pytest.raises(SlimnasError, match="str cannot be exported"):
        named_outputs({"out": "text"})


@torch.no_grad()
def test_onnx_check_compares_every_output(tmp_path):
    """A graph exported from a one-output model is refused against a two-output model (not silently zipped)."""
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return {"out": y, "aux": 2 * y}

    two = Two().eval()
    path = slimnas.export_onnx(two, tmp_path / "two.onnx", (3, 8, 8))
    x = torch.randn(1, 3, 8, 8)
    assert onnx_max_abs_diff(two, path, x) <= 1e-5
    one = slimnas.export_onnx(two.conv, tmp_path / "one.onnx", (3, 8, 8))
    with pytest.raises(SlimnasError, match="1 outputs but the model returns 2"):
        onnx_max_abs_diff(two, one, x)
    # a wrong second output is seen: aux differs from out by |y|
    assert max_output_diff(two(x), {"out": two(x)["out"], "aux": two(x)["out"]}) > 0.01
