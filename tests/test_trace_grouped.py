"""Grouped (non-depthwise) convolutions: the group count follows the width, each group keeps its width.

A grouped conv with as many output as input channels (ResNeXt's and RegNet's 3x3) ties its input and output
channels into one group whose widths are multiples of the group width; a subnet keeps whole groups, and the
export is a plain ``nn.Conv2d`` with fewer groups. On by default (``ConvertConfig(grouped=False)`` freezes them).
"""
from __future__ import annotations

import random

import pytest
import thop
from thop.profile import register_hooks
import torch
import torchvision
from torch import nn

import slimnas
from slimnas.supernet import ConvertConfig
from tests.conftest import calibrate
from tests.nets import conv_bn


GROUPED = ConvertConfig(grouped=True)


class Grouped(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, 32, 3)
        self.grouped = conv_bn(32, 32, 3, groups=4)  # group width 8
        self.head = conv_bn(32, 48, 1)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.grouped(self.stem(x))).mean((2, 3)))


def test_grouped_conv_ties_input_and_output_in_multiples_of_its_group_width():
    assert not slimnas.convert(Grouped(), 16, ConvertConfig(grouped=False)).space.names().count("stem.0")  # frozen
    net = slimnas.convert(Grouped(), 16)  # on by default
    assert net.config == GROUPED
    g = next(g for g in net.graph.groups if ("stem.0", "out") in g.members)
    assert g.searchable and ("grouped.0", "dw") in g.members and g.multiple == 8
    assert all(c % 8 == 0 for c in net.space[g.name].choices) and net.space[g.name].choices[0] == 8


@pytest.mark.parametrize("name", ["resnext50_32x4d", "regnet_x_400mf", "regnet_y_400mf"])
@torch.no_grad()
def test_grouped_models_shrink_and_export_as_plain_grouped_convs(name, tmp_path):
    torch.manual_seed(0)
    model = calibrate(torchvision.models.get_model(name, num_classes=10), (3, 64, 64))
    net = slimnas.convert(model, 64, GROUPED).eval()
    assert not [n for n in net.graph.notes if "grouped" in n], net.graph.notes[:3]
    assert net.flops(net.space.min()) / net.flops(net.space.original()) < 0.3
    x = torch.randn(1, 3, 64, 64)
    assert float((net(x) - model(x)).abs().max()) <= 1e-4
    rng = random.Random(1)
    for i, subnet in enumerate([net.space.min(), net.space.sample(rng)]):
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert type(plain) is type(model)
        assert float((net(x) - plain(x)).abs().max()) <= 1e-5
        macs, params = thop.profile(plain, inputs=(x,), verbose=False)
        assert net.flops(subnet) == pytest.approx(macs, rel=0.01) and net.params(subnet) == pytest.approx(params, rel=0.01)
        path = slimnas.export_onnx(plain, tmp_path / f"{i}.onnx", (3, 64, 64))
        assert slimnas.export.onnx_max_abs_diff(plain, path, x) <= 1e-4


class PaddedConv(nn.Conv2d):
    """A Conv2d subclass that pads itself and calls F.conv2d with its own groups (like timm's Conv2dSame)."""

    def forward(self, x):
        x = torch.nn.functional.pad(x, (1, 1, 1, 1))
        return torch.nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@torch.no_grad()
def test_functional_grouped_conv_of_a_conv_subclass_exports_as_its_class(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(conv_bn(3, 32, 1), PaddedConv(32, 32, 3, groups=8), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 16, 1), nn.Flatten(), nn.Linear(16 * 16 * 16, 10))
    model = calibrate(model, (3, 16, 16))
    net = slimnas.convert(model, 16, GROUPED).eval()
    assert net.graph.layers["1"].kind == "gconv" and not net.graph.notes
    g = next(g for g in net.graph.groups if ("1", "dw") in g.members)
    assert g.multiple == 4 and net.space[g.name].choices[0] == 8
    x = torch.randn(2, 3, 16, 16)
    net.set_subnet(net.space.min())
    plain = slimnas.export_subnet(net).eval()
    assert type(plain[1]) is PaddedConv and plain[1].groups == 2 and plain[1].weight.shape == (8, 4, 3, 3)
    assert float((net(x) - plain(x)).abs().max()) <= 1e-5
    macs, _ = thop.profile(plain, inputs=(x[:1],), verbose=False, custom_ops={PaddedConv: register_hooks[nn.Conv2d]})
    assert net.flops() == pytest.approx(macs, rel=0.01)
    assert net.params() == sum(p.numel() for p in plain.parameters())


def test_grouped_conv_widening_its_channels_is_frozen_and_named():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3, groups=4), nn.Flatten(), nn.Linear(32 * 12 * 12, 4))
    net = slimnas.convert(model, 16, GROUPED)
    g = next(g for g in net.graph.groups if ("0", "out") in g.members)
    assert g.frozen and "grouped conv 1 (groups=4) at 1 (" in g.frozen
    assert any(n.startswith("grouped conv 1 (groups=4)") for n in net.graph.notes)


def test_wide_conv_groups_still_reach_a_fifth_of_the_flops():
    """RegNetX-8GF's conv groups are 120 channels wide: 0.25 x 720 = 180 channels must round down to one group (the
    smallest candidate never rounds up), or that stage stays at a third of its width and the net at 0.214."""
    net = slimnas.convert(torchvision.models.regnet_x_8gf(num_classes=10).eval(), 32,
                          ConvertConfig(grouped=True, reorder=False))
    stage3 = next(g for g in net.graph.groups if g.name == "trunk_output.block3.block3-0.f.a.0")
    assert stage3.multiple == 120 and net.space[stage3.name].choices[:2] == (120, 240)
    assert net.flops(net.space.min()) / net.flops(net.space.original()) <= 0.20


def test_cafenet_frees_whole_conv_groups_of_a_group_feeding_a_grouped_conv():
    """A conv group cannot be split: CafeNet's free channels of such a group are whole blocks, and a subnet
    listing part of a block is refused naming the group."""
    from slimnas.errors import SlimnasError
    from slimnas.train import make_strategy

    net = slimnas.convert(calibrate(Grouped(), (3, 16, 16)), 16)
    st = make_strategy("cafenet", net, widest=False, narrowest=False, n_random=1, k=4, distill=False, free_ratio=0.5)
    g = next(g for g in net.graph.groups if ("stem.0", "out") in g.members)
    rng = random.Random(0)
    seen = set()
    for width in (8, 16, 24):
        for _ in range(20):
            idx = st.random_arrangement(g.name, width, rng)
            assert idx is not None and len(idx) == width
            assert set(idx) == {j // 8 * 8 + i for j in idx for i in range(8)}, idx
            seen.add(idx)
            net.set_subnet(net.space.max().replace({g.name: width}, {g.name: idx}))
    assert any(idx != tuple(range(len(idx))) for idx in seen), "no arrangement left the leftmost blocks"
    with pytest.raises(SlimnasError, match="whole conv groups of 8 channels") as err:
        net.set_subnet(net.space.max().replace({g.name: 8}, {g.name: (*range(7), 8)}))
    assert len(str(err.value).splitlines()) == 1


NARROW = ConvertConfig(space=slimnas.SpaceConfig(conv_groups="narrow"))


@pytest.mark.parametrize("name", ["resnext50_32x4d", "regnet_x_400mf", "regnet_y_400mf"])
@torch.no_grad()
def test_narrow_conv_groups_keep_the_group_count_and_export_exactly(name, tmp_path):
    """``conv_groups="narrow"``: every conv group narrows (Torch-Pruning's way); the count stays."""
    torch.manual_seed(0)
    model = calibrate(torchvision.models.get_model(name, num_classes=10), (3, 64, 64)).eval()
    whole = slimnas.convert(model, 64, GROUPED)
    net = slimnas.convert(model, 64, NARROW).eval()
    narrow = [g for g in net.graph.groups if g.narrow]
    assert narrow and all(g.multiple > 1 for g in narrow)
    assert all(c % (g.width // g.multiple) == 0 for g in narrow for c in net.space[g.name].choices)
    ratio = net.flops(net.space.min()) / net.flops(net.space.original())
    assert ratio <= 0.075 and ratio < whole.flops(whole.space.min()) / whole.flops(whole.space.original())
    # the importance order moved channels inside the conv groups (not only whole groups), function-preserving
    mods = dict(model.named_modules())
    gconvs = [n for n, s in net.graph.layers.items() if s.kind == "gconv"]
    assert any(not torch.equal(net.model.get_submodule(n).weight, mods[n].weight) for n in gconvs)
    x = torch.randn(2, 3, 64, 64)
    assert float((net(x) - model(x)).abs().max()) <= 1e-4
    for i, subnet in enumerate([net.space.min(), net.space.sample(random.Random(1))]):
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert float((net(x) - plain(x)).abs().max()) <= 1e-5
        for n in gconvs:  # the same group count as the checkpoint, fewer channels in each group
            assert plain.get_submodule(n).groups == mods[n].groups
        assert any(plain.get_submodule(n).in_channels < mods[n].in_channels for n in gconvs)
        macs, params = thop.profile(plain, inputs=(x[:1],), verbose=False)
        assert net.flops(subnet) == pytest.approx(macs, rel=0.01) and net.params(subnet) == pytest.approx(params, rel=0.01)
        if i == 1:
            path = slimnas.export_onnx(plain, tmp_path / "sub.onnx", (3, 64, 64))
            assert slimnas.export.onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4


def test_narrow_conv_groups_time_as_convs_that_keep_their_group_count():
    """The latency unit of a narrowing grouped conv keeps the group count (its own table key), and its ONNX unit
    runs in onnxruntime at a narrowed width."""
    import onnxruntime as ort

    from slimnas.latency.units import input_shape, unit_onnx, units_of

    net = slimnas.convert(calibrate(Grouped(), (3, 16, 16)), 16, NARROW)
    unit = next(u for u in units_of(net) if u.layer == "grouped.0")
    assert unit.sig.group_count == 4 and unit.sig.groups(16) == 4 and unit.sig.diagonal and "-g4-" in unit.sig.key
    whole = next(u for u in units_of(slimnas.convert(calibrate(Grouped(), (3, 16, 16)), 16)) if u.layer == "grouped.0")
    assert whole.sig.key != unit.sig.key and whole.sig.groups(16) == 2
    sess = ort.InferenceSession(unit_onnx(unit.sig, 16, 16), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": torch.randn(input_shape(unit.sig, 16)).numpy()})[0]
    assert y.shape[1] == 16
    with pytest.raises(slimnas.SlimnasError, match="conv_groups='narrow'"):
        g = next(g for g in net.graph.groups if g.narrow)
        net.set_subnet(net.space.max().replace({g.name: 16}, {g.name: tuple(range(16))}))
    with pytest.raises(slimnas.SlimnasError, match="conv_groups must be"):
        slimnas.SpaceConfig(conv_groups="half")
