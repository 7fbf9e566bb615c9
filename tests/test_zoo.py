"""Every architecture the core issue names: convert, pick random subnets, export, and compare numerically."""
from __future__ import annotations

import random

import pytest
import thop
import torch
import torchvision

import slimnas
from tests.conftest import calibrate
from tests.nets import TinyNet

SIZE = 64
# one model per pattern (efficientnet_b3 repeats b0's blocks at 2-3x the cost; every torchvision CNN is checked by
# benchmarks/zoo_report.py, results in benchmarks/results/zoo.md)
ZOO = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
       "mnasnet1_0", "resnet18", "resnet50", "regnet_x_400mf", "tinynet"]


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = TinyNet(10) if name == "tinynet" else torchvision.models.get_model(name, num_classes=10)
    return calibrate(model, (3, SIZE, SIZE))


@pytest.fixture(scope="module", params=ZOO)
def zoo_model(request):
    return request.param, build(request.param)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
def test_full_width_and_broadened_supernets_compute_the_original(zoo_model):
    name, model = zoo_model
    x = torch.randn(2, 3, SIZE, SIZE)
    want = model(x)
    net = slimnas.convert(model, SIZE).eval()
    assert len(net.space) > 0, f"{name}: no searchable group"
    assert max_diff(net(x), want) <= 1e-5
    wide = slimnas.convert(model, SIZE, max_ratio=1.5).eval()
    assert any(g.max_width > g.width for g in wide.space.groups)
    wide.set_subnet(wide.space.max())
    assert max_diff(wide(x), want) <= 1e-5


@torch.no_grad()
def test_random_subnets_export_to_the_original_class(zoo_model, tmp_path):
    name, model = zoo_model
    net = slimnas.convert(model, SIZE).eval()
    rng = random.Random(1)
    x = torch.randn(1, 3, SIZE, SIZE)
    for i in range(5):
        subnet = net.space.sample(rng)
        net.set_subnet(subnet)
        got = net(x)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert type(plain) is type(model)
        assert not any(isinstance(m, slimnas.dynamic.DynamicMixin) for m in plain.modules())
        assert max_diff(plain(x), got) <= 1e-5, f"{name} subnet {subnet.hash}"
        macs, params = thop.profile(plain, inputs=(x,), verbose=False)
        assert net.flops(subnet) == pytest.approx(macs, rel=0.01)
        assert net.params(subnet) == pytest.approx(params, rel=0.01)
        onnx_path = slimnas.export_onnx(plain, tmp_path / f"{name}-{i}.onnx", (3, SIZE, SIZE))
        assert slimnas.export.onnx_max_abs_diff(plain, onnx_path, x) <= 1e-4
    # the random subnets must really be narrower than the full model somewhere
    assert net.flops(net.space.min()) < net.flops(net.space.max())
