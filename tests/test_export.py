"""Exported models: save/load without the supernet, loadable with weights_only=True; ONNX checked."""
from __future__ import annotations

import random

import pytest
import torch
import torchvision

import slimnas
from tests.conftest import CHECKPOINT, calibrate


@torch.no_grad()
def test_save_load_round_trip_rebuilds_the_original_class(tmp_path):
    torch.manual_seed(0)
    net = slimnas.convert(calibrate(torchvision.models.mobilenet_v3_small(num_classes=10), (3, 32, 32)), 32).eval()
    subnet = net.space.sample(random.Random(0))
    plain = slimnas.export_subnet(net, subnet).eval()
    path = slimnas.save_exported(plain, tmp_path / "model.pt", subnet, arch="mobilenet_v3_small", num_classes=10)
    raw = torch.load(path, weights_only=True)  # no pickled classes inside
    assert raw["slimnas"]["subnet"] == subnet.to_dict()
    loaded = slimnas.load_exported(path)
    x = torch.randn(2, 3, 32, 32)
    assert type(loaded) is torchvision.models.MobileNetV3
    assert torch.equal(loaded(x), plain(x))
    # load_model recognises the file too
    assert torch.equal(slimnas.load_model(str(path))(x), plain(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_failed_onnx_check_leaves_no_file(tmp_path):
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    with pytest.raises(slimnas.SlimnasError, match="differs from PyTorch"):
        slimnas.export_onnx(model, tmp_path / "m.onnx", (3, 32, 32), atol=-1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="shared checkpoint not present")
@torch.no_grad()
def test_existing_checkpoint_on_real_images(cifar_images, tmp_path):
    """The shared CIFAR-10 MobileNetV2 keeps its predictions through convert, export and ONNX."""
    model = slimnas.load_model("mobilenet_v2", num_classes=10, weights=str(CHECKPOINT))
    want = model(cifar_images)
    net = slimnas.convert(model, 32).eval()
    assert float((net(cifar_images) - want).abs().max()) <= 1e-5
    full = slimnas.export_subnet(net, net.space.original()).eval()
    assert torch.equal(full(cifar_images).argmax(1), want.argmax(1))
    onnx_path = slimnas.export_onnx(full, tmp_path / "full.onnx", (3, 32, 32))
    assert slimnas.export.onnx_max_abs_diff(full, onnx_path, cifar_images[:1]) <= 1e-4
    # half the width: a real, smaller model that still runs on real images
    half = slimnas.export_subnet(net, net.space.uniform(0.5)).eval()
    assert half(cifar_images).shape == (32, 10)
    assert sum(p.numel() for p in half.parameters()) < 0.5 * sum(p.numel() for p in full.parameters())


def test_a_width_that_is_not_a_candidate_is_refused():
    """The latency table only knows candidate widths: anything else must stop at validate, not in the predictor."""
    net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), 32)
    g = net.space.groups[0]
    odd = next(w for w in range(1, g.max_width) if w not in g.choices)
    with pytest.raises(slimnas.SlimnasError, match=rf"width {odd} of group '{g.name}' is not one of its candidates"):
        net.space.validate(net.space.max().replace({g.name: odd}))
    assert net.space.validate(net.space.max().replace({g.name: g.choices[0]}))[g.name] == g.choices[0]


def test_onnx_check_scales_with_large_outputs(tmp_path):
    """Logits in the hundreds differ by a few 1e-4 between two correct runtimes (float32 rounding): accepted,
    while the same model with a real mismatch (a tolerance below zero) is still refused."""
    from slimnas.export import onnx_max_abs_diff

    torch.manual_seed(0)
    model = calibrate(torchvision.models.mobilenet_v2(num_classes=10), (3, 32, 32)).eval()
    with torch.no_grad():
        model.classifier[1].weight.mul_(3e4)  # logits ~1e3: float32 rounding alone exceeds an absolute 1e-4
        x = torch.randn(1, 3, 32, 32)
        scale = float(model(x).abs().max())
    path = slimnas.export_onnx(model, tmp_path / "big.onnx", (3, 32, 32))
    diff = onnx_max_abs_diff(model, path, x)
    assert scale > 100 and diff > 1e-4  # the case an absolute tolerance refused
    assert diff <= 1e-4 * scale
    with pytest.raises(slimnas.SlimnasError, match="outputs' largest magnitude"):
        slimnas.export_onnx(model, tmp_path / "bad.onnx", (3, 32, 32), atol=-1e-9)
