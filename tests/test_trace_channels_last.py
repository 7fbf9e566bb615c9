"""Channels-last blocks (ConvNeXt): permute to NHWC, LayerNorm/Linear over the last dimension, permute back, and a
per-channel layer scale sliced with its channels.

Converted, torchvision's ConvNeXt has no frozen channels: its residual streams and every block's hidden (4x)
width are searchable, and every subnet exports as a plain ConvNeXt with narrower layers and layer scales.
"""
from __future__ import annotations

import random

import numpy as np
import onnxruntime
import pytest
import thop
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import slimnas
from slimnas.cost import thop_custom_ops
from slimnas.latency.units import input_shape, output_shape, unit_onnx, units_of
from slimnas.supernet import ConvertConfig
from tests.conftest import calibrate

GROUPED = ConvertConfig(grouped=True)


def _ratio(net) -> float:
    return net.flops(net.space.min()) / net.flops(net.space.original())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = calibrate(torchvision.models.convnext_tiny(num_classes=10), (3, 64, 64))
    return model, slimnas.convert(model, 64, GROUPED).eval()


@torch.no_grad()
def test_convnext_tiny_has_no_frozen_channels_and_shrinks(tiny):
    model, net = tiny
    assert not net.graph.notes, net.graph.notes[:3]
    assert len(net.space) == 4 + 18  # one residual stream per stage, one hidden width per block
    stream = next(g for g in net.graph.groups if ("features.0.0", "out") in g.members)
    # the stem conv, every block's dwconv, LayerNorm, both Linears and layer scale, the downsampling LayerNorm2d
    for member in [("features.0.1", "bn"), ("features.1.0.block.0", "dw"), ("features.1.0.block.2", "bn"),
                   ("features.1.0.block.3", "in"), ("features.1.2.block.5", "out"), ("features.1.1", "bn"),
                   ("features.2.0", "bn"), ("features.2.1", "in")]:
        assert member in stream.members, member
    assert net.graph.layers["features.1.1"].op == "mul"  # the layer scale, a parameter of CNBlock itself
    assert _ratio(net) <= 0.20
    x = torch.randn(2, 3, 64, 64)
    assert float((net(x) - model(x)).abs().max()) <= 1e-5


@torch.no_grad()
def test_convnext_subnets_export_save_and_count_like_thop(tiny, tmp_path):
    _, net = tiny
    x = torch.randn(1, 3, 64, 64)
    rng = random.Random(1)
    for i, subnet in enumerate([net.space.min(), net.space.sample(rng), net.space.sample(rng)]):
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert type(plain) is torchvision.models.ConvNeXt and not any("Dynamic" in type(m).__name__ for m in plain.modules())
        block = plain.features[1][0]
        width = subnet[net.graph.groups[net.graph.layers["features.1.0"].out_layout.segs[0].space].name]
        assert type(block) is torchvision.models.convnext.CNBlock and block.layer_scale.shape == (width, 1, 1)
        assert block.block[2].normalized_shape == (width,) and block.block[3].in_features == width
        assert float((net(x) - plain(x)).abs().max()) <= 1e-5
        slimnas.export_onnx(plain, tmp_path / f"{i}.onnx", (3, 64, 64))  # checks onnxruntime within 1e-4 itself
        path = slimnas.save_exported(plain, tmp_path / f"{i}.pt", subnet, arch="convnext_tiny", num_classes=10)
        loaded = slimnas.load_exported(path)
        assert float((loaded(x) - plain(x)).abs().max()) == 0.0
        macs, _ = thop.profile(plain, inputs=(x,), verbose=False, custom_ops=thop_custom_ops(plain))
        assert net.flops(subnet) == pytest.approx(macs, rel=0.01)
        # thop misses the layer scales (CNBlock has no thop rule); the analytic count is every parameter
        assert net.params(subnet) == sum(p.numel() for p in plain.parameters())
    net.set_subnet(net.space.max())


@torch.no_grad()
def test_broadened_convnext_at_init_is_the_original(tiny):
    model, _ = tiny
    wide = slimnas.convert(model, 64, GROUPED, max_ratio=1.5).eval()
    x = torch.randn(2, 3, 64, 64)
    assert float((wide(x) - model(x)).abs().max()) <= 1e-5
    stream = next(g for g in wide.graph.groups if ("features.0.0", "out") in g.members)
    hidden = next(g for g in wide.graph.groups if ("features.1.0.block.3", "out") in g.members)
    assert wide.space[stream.name].max_width == stream.width  # normalised by LayerNorm: never wider
    assert wide.space[hidden.name].max_width == 576 > hidden.width  # the MLP's hidden width broadens


def test_convnext_latency_units_run_linear_layers_on_every_pixel(tiny):
    _, net = tiny
    units = {u.layer: u for u in units_of(net)}
    fc1 = units["features.1.0.block.3"]
    assert fc1.sig.kind == "linear" and fc1.sig.hw == (16, 16)
    assert units["classifier.2"].sig.hw == (1, 1)
    assert input_shape(fc1.sig, 96) == (256, 96) and output_shape(fc1.sig, 384) == (256, 384)
    runtime = onnxruntime.InferenceSession(unit_onnx(fc1.sig, 24, 96), providers=["CPUExecutionProvider"])
    (y,) = runtime.run(None, {"x": np.zeros((256, 24), np.float32)})
    assert y.shape == (256, 96)


@torch.no_grad()
def test_convnext_small_shrinks_below_a_fifth():
    torch.manual_seed(0)
    model = torchvision.models.convnext_small(num_classes=10).eval()
    net = slimnas.convert(model, 32, GROUPED).eval()
    assert not net.graph.notes, net.graph.notes[:3]
    assert _ratio(net) <= 0.20
    subnet = net.space.sample(3)
    net.set_subnet(subnet)
    x = torch.randn(1, 3, 32, 32)
    assert float((net(x) - slimnas.export_subnet(net, subnet).eval()(x)).abs().max()) <= 1e-5


class ChannelsLastNet(nn.Module):
    """timm-style channels-last pieces: an (C,) gamma multiplying NHWC, a functional linear, tokens (a flatten of the
    pixels) into a linear, and a softmax over the channels (not understood: its channels are frozen and named)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.mix = Mix(32)
        self.attn = nn.Conv2d(32, 24, 1)
        self.head = nn.Linear(32, num_classes)
        self.aux = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.mix(self.stem(x))
        a = self.attn(x).permute(0, 2, 3, 1).softmax(-1)  # over the channels: they cannot change width
        tokens = x.permute(0, 2, 3, 1).flatten(1, 2)  # (N, H*W, C)
        return self.head(tokens).mean(1) + self.aux(a.mean((1, 2)))


class FunctionalLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(cout, cin) / cin ** 0.5)
        self.b = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return F.linear(x, self.w, self.b)


def _count_linear(m, x, y):  # thop's rule for nn.Linear, for the functional one thop does not know
    m.total_ops += torch.DoubleTensor([int(m.w.shape[1] * y.numel())])


class Mix(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = FunctionalLinear(2 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        y = x.permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


@torch.no_grad()
def test_channels_last_rules_on_a_small_net(tmp_path):
    torch.manual_seed(0)
    model = ChannelsLastNet().eval()
    net = slimnas.convert(model, 16).eval()
    layers = net.graph.layers
    assert layers["mix"].op == "mul" and dict(layers["mix"].tensors) == {"weight": "gamma"}
    stem = next(g for g in net.graph.groups if ("stem", "out") in g.members)
    hidden = next(g for g in net.graph.groups if ("mix.fc1", "out") in g.members)
    attn = next(g for g in net.graph.groups if ("attn", "out") in g.members)
    assert stem.searchable and hidden.searchable and ("mix", "bn") in stem.members and ("mix.norm", "bn") in stem.members
    assert not attn.searchable and "softmax" in attn.frozen
    assert layers["mix.fc2"].op == "linear" and ("mix.fc2", "in") in hidden.members and ("head", "in") in stem.members
    assert any("softmax" in n and "channels at dim 3" in n for n in net.graph.notes)
    x = torch.randn(2, 3, 16, 16)
    assert float((net(x) - model(x)).abs().max()) <= 1e-5
    for subnet in [net.space.min(), net.space.sample(0)]:
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert plain.mix.gamma.shape == (subnet[stem.name],) and plain.mix.fc2.w.shape[1] == subnet[hidden.name]
        assert float((net(x) - plain(x)).abs().max()) <= 1e-5
        macs, _ = thop.profile(plain, inputs=(x[:1],), verbose=False, custom_ops={FunctionalLinear: _count_linear})
        assert net.flops() == pytest.approx(macs, rel=0.01)
        path = slimnas.export_onnx(plain, tmp_path / "c.onnx", (3, 16, 16))
        assert slimnas.export.onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4


class Borrowed(nn.Module):
    """A per-channel parameter multiplied in another module's forward: not that module's layer scale."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.scale = nn.Parameter(torch.ones(16, 1, 1))
        self.inner = Apply()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.inner(self.conv(x), self.scale).mean((2, 3)))


class Apply(nn.Module):
    def forward(self, x, s):
        return x * s


def test_a_borrowed_per_channel_parameter_freezes_its_channels():
    net = slimnas.convert(Borrowed(), 16)  # never a crash
    conv = next(g for g in net.graph.groups if ("conv", "out") in g.members)
    assert not conv.searchable and "per-channel parameter of another module" in conv.frozen


class NormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.gn = nn.GroupNorm(1, 32)
        self.fc1 = nn.Linear(32, 64)
        self.ln = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 48)
        self.fc3 = nn.Linear(48, 10)

    def forward(self, x):
        x = F.relu(self.gn(self.conv(x))).mean((2, 3))
        return self.fc3(F.relu(self.fc2(F.relu(self.ln(self.fc1(x))))))


@torch.no_grad()
def test_groups_normalised_over_their_channels_are_not_broadened():
    """Extra channels, even zero ones, change a LayerNorm's or GroupNorm's statistics: broadening them would not
    start from the original function."""
    torch.manual_seed(0)
    model = NormNet().eval()
    wide = slimnas.convert(model, 16, max_ratio=1.5).eval()
    x = torch.randn(2, 3, 16, 16)
    assert float((wide(x) - model(x)).abs().max()) <= 1e-5
    assert wide.space["conv"].max_width == 32 and wide.space["fc1"].max_width == 64
    assert wide.space["fc2"].max_width == 72  # no norm over it: broadened


@torch.no_grad()
def test_timm_convnext_gamma_reshaped_per_channel_is_its_blocks_layer_scale():
    """timm multiplies by ``self.gamma.reshape(1, -1, 1, 1)``: a 1-D parameter shaped by a -1 at the channels."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10).eval()
    net = slimnas.convert(model, 32, GROUPED).eval()
    assert not net.graph.notes, net.graph.notes[:3]
    assert net.graph.layers["stages.0.blocks.0"].op == "mul" and _ratio(net) <= 0.20
    subnet = net.space.sample(2)
    net.set_subnet(subnet)
    plain = slimnas.export_subnet(net, subnet).eval()
    x = torch.randn(1, 3, 32, 32)
    assert float((net(x) - plain(x)).abs().max()) <= 1e-5
    assert plain.stages[0].blocks[0].gamma.shape[0] == plain.stages[0].blocks[0].conv_dw.out_channels
