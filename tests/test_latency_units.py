"""Latency units follow the traced graph's data flow: what a unit fuses, and one unit per call."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import slimnas
from slimnas.latency import LatencyPredictor, LatencyTable
from slimnas.latency.units import units_of

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "latency_tables"


def _by_layer(units):
    out = {}
    for u in units:
        out.setdefault(u.layer, []).append(u)
    return out


def test_resnet_relu_after_the_residual_add_is_not_fused():
    net = slimnas.convert(torchvision.models.resnet18(num_classes=10), 32)
    units = _by_layer(units_of(net))
    assert units["conv1"][0].absorbed == ("bn1", "relu") and units["conv1"][0].sig.act == "relu"
    for block in ("layer1.0", "layer1.1", "layer2.0", "layer3.1", "layer4.1"):
        (first,), (last,) = units[f"{block}.conv1"], units[f"{block}.conv2"]
        assert first.absorbed == (f"{block}.bn1", f"{block}.relu") and first.sig.act == "relu"
        # bn2 feeds the add; the block's ReLU runs on the sum, so the runtime cannot fuse it into conv2
        assert last.absorbed == (f"{block}.bn2",) and last.sig.bn and last.sig.act == ""
    (down,) = units["layer2.0.downsample.0"]
    assert down.absorbed == ("layer2.0.downsample.1",) and down.sig.act == ""


class SharedConv(nn.Module):
    """One conv module called twice (at two resolutions), and a conv whose output also feeds a residual."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.shared = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn_a, self.bn_b = nn.BatchNorm2d(16), nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.side = nn.Conv2d(16, 16, 1, bias=False)
        self.side_bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.act(self.bn_a(self.shared(x)))
        x = F.max_pool2d(x, 2)
        x = self.act(self.bn_b(self.shared(x)))  # the same conv again, on a smaller map
        s = self.side(x)
        x = self.side_bn(s) + s  # the conv's output has two users: the BN cannot be folded into it
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_a_module_called_twice_is_two_units():
    net = slimnas.convert(SharedConv().eval(), 16)
    units = _by_layer(units_of(net))
    first, second = units["shared"]
    assert first.absorbed == ("bn_a", "act") and second.absorbed == ("bn_b", "act")
    assert first.sig.hw == (16, 16) and second.sig.hw == (8, 8)
    assert first.sig.act == second.sig.act == "relu" and first.sig.bn and second.sig.bn
    (side,) = units["side"]
    assert side.absorbed == () and not side.sig.bn and side.sig.act == ""
    assert [u.layer for u in units_of(net)] == ["stem.0", "shared", "shared", "side", "fc"]


MBV2 = {"relu6/bn": 35, "id/bn": 17, "id/nobn": 1}  # (activation/BN) of the units, as the tables were built
EFFNET = {"silu/bn": 33, "silu/nobn": 16, "sigmoid/nobn": 16, "id/bn": 16, "id/nobn": 1}


@pytest.mark.parametrize("name, size, kinds", [("mobilenet_v2", 32, MBV2), ("mobilenet_v2", 224, MBV2),
                                               ("efficientnet_b0", 224, EFFNET)])
def test_shipped_tables_cover_every_unit(name, size, kinds):
    path = TABLES / f"{name}_{size}_onnxruntime_cpu_t1_b1_fp32"
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    net = slimnas.convert(slimnas.load_model(name, num_classes=10), size)
    units = units_of(net)
    n = sum(kinds.values())
    assert len(units) == n and len({u.layer for u in units}) == n
    assert Counter(f"{u.sig.act or 'id'}/{'bn' if u.sig.bn else 'nobn'}" for u in units) == kinds
    have = set(LatencyTable.load(path).units()["signature"])
    assert {u.sig.key for u in units} <= have
    rng = random.Random(0)
    subnets = [net.space.min(), net.space.max()] + [net.space.sample(rng) for _ in range(4)]
    assert (LatencyPredictor(path, net).predict(subnets) > 0).all()
