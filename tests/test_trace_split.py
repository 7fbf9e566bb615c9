"""Split, chunk and slice along channels, and ``cat`` of the parts (issue 14, item 4), on real timm models.

Each part of a split becomes its own channel group (or is tied where the model needs equal parts); the channel
counts the model's modules hold (``MixedConv2d.splits``, ``GhostModule.out_chs``, ReXNet's ``in_channels``,
CSP's ``expand_chs``) follow the subnet in the supernet, the exported model and the saved ``model.pt``. A pattern
that is not understood is frozen and named, never a crash (item 6).
"""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import slimnas
from slimnas.models import read_exported
from slimnas.supernet import ConvertConfig
from tests.conftest import calibrate

timm = pytest.importorskip("timm")

SIZE = 64
MODELS = ["mixnet_s", "ghostnet_100", "rexnet_100", "cspresnet50"]
FACTORY = {"mixnet_s": "timm.models.efficientnet:mixnet_s", "ghostnet_100": "timm.models.ghostnet:ghostnet_100",
           "rexnet_100": "timm.models.rexnet:rexnet_100", "cspresnet50": "timm.models.cspnet:cspresnet50"}
CONFIG = ConvertConfig(grouped=True)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return calibrate(timm.create_model(name, pretrained=False, num_classes=10), (3, SIZE, SIZE))


def _x(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", MODELS)
def test_split_model_is_searchable_and_exports_exactly(name, tmp_path):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        want = model(x)
    net = slimnas.convert(model, SIZE, CONFIG).eval()
    assert not [n for n in net.graph.notes if "split" in n or "indexing" in n or "slice" in n], net.graph.notes
    assert net.graph.patches  # the split sizes / slice bounds follow the widths
    frozen = [g.name for g in net.graph.groups if not g.searchable]
    assert "input" in frozen and len(frozen) == 2  # only the image channels and the logits
    assert net.flops(net.space.min()) / net.flops(net.space.original()) <= 0.20
    with torch.no_grad():
        assert (net(x) - want).abs().max().item() <= 1e-5
    for i, subnet in enumerate([net.space.sample(random.Random(0)), net.space.min()]):  # min: every part smallest
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        with torch.no_grad():
            assert (net(x) - plain(x)).abs().max().item() <= 1e-5
        if i == 0:
            slimnas.export_onnx(plain, tmp_path / "sub.onnx", (3, SIZE, SIZE), atol=1e-4)  # checks onnxruntime
    # Broadened (1.5x): the added channels start function-preserving, and a wider-than-checkpoint subnet exports.
    wide = slimnas.convert(model, SIZE, CONFIG, max_ratio=1.5).eval()
    assert any(wide.space[g].max_width > wide.space[g].width for g in wide.space.names())
    with torch.no_grad():
        assert (wide(x) - want).abs().max().item() <= 1e-5
    subnet = wide.space.sample(random.Random(2))
    wide.set_subnet(subnet)
    with torch.no_grad():
        assert (wide(x) - slimnas.export_subnet(wide, subnet).eval()(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["mixnet_s", "ghostnet_100"])  # a list attribute and an int one (all four: below)
def test_saved_split_subnet_loads_back_with_its_channel_counts(name, tmp_path):
    net = slimnas.convert(_model(name), SIZE, CONFIG).eval()
    subnet = net.space.sample(random.Random(5))
    plain = slimnas.export_subnet(net, subnet).eval()
    path = slimnas.save_exported(plain, tmp_path / "model.pt", subnet, arch=FACTORY[name], num_classes=10)
    meta = read_exported(path)["slimnas"]
    patched = {(p.module, p.attr) for p in net.graph.patches}
    assert all(attr in meta["attrs"][module] for module, attr in patched)  # recorded as plain JSON values
    back = slimnas.load_exported(path)
    x = _x()
    with torch.no_grad():
        assert (back(x) - plain(x)).abs().max().item() <= 1e-6
    for module, attr in patched:
        assert getattr(back.get_submodule(module), attr) == getattr(plain.get_submodule(module), attr)
    if name != "mixnet_s":
        return  # a narrower ghost slice would clamp anyway; a split's sizes must add up:
    # without the recorded counts the rebuilt class would split at its original sizes: the metadata is what works.
    data = read_exported(path)
    data["slimnas"]["attrs"] = {}
    torch.save(data, tmp_path / "bare.pt")
    bare = slimnas.load_exported(tmp_path / "bare.pt")
    with torch.no_grad():
        try:
            differs = (bare(x) - plain(x)).abs().max().item() > 1e-3
        except RuntimeError:  # the split sizes no longer add up to the channels
            differs = True
    assert differs


def test_parts_become_groups_and_equal_halves_are_tied():
    mix = slimnas.convert(timm.create_model("mixnet_s", num_classes=10), SIZE, CONFIG)
    names = [g.name for g in mix.graph.groups]
    # conv_dw is a MixedConv2d of three kernel sizes: the conv_pw before it is cut in three, one group each
    assert {"blocks.2.0.conv_pw[0:48]", "blocks.2.0.conv_pw[48:96]", "blocks.2.0.conv_pw[96:144]"} <= set(names)
    patch = next(p for p in mix.graph.patches if p.module == "blocks.2.0.conv_dw")
    assert (patch.attr, patch.scale, patch.offset) == ("splits", 1.0, 0.0)
    csp = slimnas.convert(timm.create_model("cspresnet50", num_classes=10), SIZE, CONFIG)
    exp = csp.graph.layers["stages.0.conv_exp.conv"].out_layout
    assert len(exp.segs) == 2 and exp.segs[0].space == exp.segs[1].space  # x.split(expand_chs // 2): equal halves
    patch = next(p for p in csp.graph.patches if p.module == "stages.0")
    assert (patch.attr, patch.scale) == ("expand_chs", 0.5)


class _OddSplits(nn.Module):
    """Splits the rules must freeze and name: a literal slice bound no attribute sets, sizes that move against
    each other, a negative bound, and an op with several outputs the rules do not know."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.lit = nn.Conv2d(32, 16, 1)
        self.a = nn.Conv2d(8, 16, 1)
        self.k = 12
        self.b = nn.Conv2d(32, 32, 1)
        self.neg = nn.Conv2d(32, 16, 1)
        self.c = nn.Conv2d(8, 8, 1)
        self.odd = nn.Conv2d(32, 16, 1)
        self.d = nn.Conv2d(8, 16, 1)
        self.head = nn.Linear(16 + 12 + 20 + 8 + 16, 10)

    def forward(self, x):
        x = self.stem(x)
        lit = self.a(self.lit(x)[:, :8])  # 8 comes from no attribute
        p, q = torch.split(self.b(x), [self.k, 32 - self.k], 1)  # one attribute moves both sizes, oppositely
        neg = self.c(self.neg(x)[:, -8:])
        t1, _ = torch.tensor_split(self.odd(x), 2, dim=1)
        y = torch.cat([lit, p, q, neg, self.d(t1)], 1)
        return self.head(y.mean((2, 3)))


def test_unknown_split_patterns_are_frozen_and_named_not_a_crash():
    torch.manual_seed(0)
    model = _OddSplits().eval()
    x = torch.randn(2, 3, 16, 16)
    net = slimnas.convert(model, 16).eval()
    notes = "\n".join(net.graph.notes)
    assert "channel count 8 at the model (getitem): no int attribute of _OddSplits sets it" in notes
    assert "_OddSplits.k sets constants that follow different channels" in notes
    assert "negative" in notes and "op 'tensor_split' with several outputs" in notes
    frozen = {g.name for g in net.graph.groups if not g.searchable}
    assert {"lit[0:8]", "b[0:12]", "b[12:32]", "neg", "odd"} <= frozen
    assert {"stem", "lit[8:16]", "a", "c", "d"} <= set(net.space.names())  # the rest is still searchable
    with torch.no_grad():
        want = model(x)
        assert (net(x) - want).abs().max().item() <= 1e-5
        subnet = net.space.min()
        net.set_subnet(subnet)
        assert (net(x) - slimnas.export_subnet(net, subnet).eval()(x)).abs().max().item() <= 1e-5


class _Parts(nn.Module):
    """The four patterns in one small net: ReXNet's partial residual, MixConv's split, GhostNet's sliced cat and
    CSP's equal halves, each reading its channel count from an attribute."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 24, 1), nn.BatchNorm2d(24))
        self.in_channels = 16
        self.splits = [16, 8]
        self.dw3 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.dw5 = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.primary = nn.Sequential(nn.Conv2d(24, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.cheap = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16))
        self.out_chs = 32
        self.exp = nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.expand_chs = 32
        self.inner = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.expand(x)
        x = torch.cat([y[:, 0:self.in_channels] + x, y[:, self.in_channels:]], dim=1)
        a, b = torch.split(x, self.splits, 1)
        x = torch.cat([self.dw3(a), self.dw5(b)], 1)
        p = self.primary(x)
        x = torch.cat([p, self.cheap(p)], dim=1)[:, :self.out_chs]
        xs, xb = self.exp(x).split(self.expand_chs // 2, dim=1)
        x = torch.cat([xs, self.inner(xb) + xb], dim=1)
        return self.fc(x.mean((2, 3)))


def test_the_four_patterns_in_a_small_net_follow_every_subnet(tmp_path):
    torch.manual_seed(0)
    model = calibrate(_Parts(), (3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
    net = slimnas.convert(model, 16, divisor=2).eval()
    assert not net.graph.notes
    assert {(p.attr, p.index) for p in net.graph.patches} == {("in_channels", None), ("splits", 0), ("splits", 1),
                                                               ("out_chs", None), ("expand_chs", None)}
    assert net.space.names() == ["stem.0", "expand.0[16:24]", "primary.0", "exp.0[0:16]"]  # the halves of exp: one
    assert model.splits == [16, 8] and model.out_chs == 32  # probing left the user's model as it was
    wide = slimnas.convert(model, 16, divisor=2, max_ratio=1.5).eval()
    with torch.no_grad():
        assert (net(x) - want).abs().max().item() <= 1e-5
        assert (wide(x) - want).abs().max().item() <= 1e-5
    rng = random.Random(0)
    for i, supernet in enumerate([net, wide, net, wide]):
        subnet = supernet.space.sample(rng) if i < 2 else supernet.space.min()
        supernet.set_subnet(subnet)
        plain = slimnas.export_subnet(supernet, subnet).eval()
        with torch.no_grad():
            got = supernet(x)
            assert (got - plain(x)).abs().max().item() <= 1e-5
        path = slimnas.save_exported(plain, tmp_path / f"{i}.pt", subnet, arch="tests.test_trace_split:_Parts")
        back = slimnas.load_exported(path)
        assert back.splits == plain.splits and back.out_chs == plain.out_chs
        with torch.no_grad():
            assert (back(x) - got).abs().max().item() <= 1e-5
