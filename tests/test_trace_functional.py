"""Op-level rules: a functional conv/batch_norm/linear on a module's own parameters is understood like the module.

timm's wrappers (``BatchNormAct2d``, ``Conv2dSame``, timm's ``Linear``) and a hand-written module holding its
own ``weight`` become searchable; the supernet slices them at run time and export hands back the user's class
with narrower parameters. Patterns still not understood are frozen and named, never a crash.
"""
from __future__ import annotations

import random

import pytest
import thop
import torch
import torch.nn.functional as F
from torch import nn

import slimnas
from slimnas.cost import thop_custom_ops
from tests.conftest import calibrate


class FunctionalConvBN(nn.Module):
    """A conv + BN written with F.conv2d / F.batch_norm on parameters of its own (names of its own choosing)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)
        self.shift = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, self.shift, padding=1)


class FunctionalNorm(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.beta = nn.Parameter(torch.randn(c) * 0.1)
        self.register_buffer("mean", torch.randn(c) * 0.1)
        self.register_buffer("var", torch.rand(c) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.batch_norm(x, self.mean, self.var, self.gamma, self.beta, self.training, 0.1, 1e-5))


class FunctionalHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(num_classes, cin) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.mean((2, 3)), self.w)


class FunctionalNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = FunctionalConvBN(3, 32)
        self.norm1 = FunctionalNorm(32)
        self.conv2 = FunctionalConvBN(32, 48)
        self.norm2 = FunctionalNorm(48)
        self.head = FunctionalHead(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm2(self.conv2(self.norm1(self.conv1(x)))))


class Standardised(nn.Module):
    """A conv whose weight is computed (weight standardisation): not understood, so frozen and named."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 3, 3, 3))
        self.head = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / (self.weight.std((1, 2, 3), keepdim=True) + 1e-5)
        return self.fc(self.head(F.conv2d(x, w, padding=1)).mean((2, 3)))


class BorrowedBN(nn.Module):
    """A BatchNorm applied functionally by the parent with its child's parameters: frozen, never a crash."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.batch_norm(self.conv(x), self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias)
        x = F.conv2d(x, self.grouped.weight, self.grouped.bias, 1, 1, 1, 4)
        return self.fc(x.mean((2, 3)))


def test_hand_written_functional_layers_are_searchable_and_export_as_their_class(tmp_path):
    torch.manual_seed(0)
    model = calibrate(FunctionalNet(), (3, 16, 16))
    net = slimnas.convert(model, 16).eval()
    graph = net.graph
    assert graph.layers["conv1"].kind == "conv" and dict(graph.layers["conv1"].tensors)["weight"] == "kernel"
    assert graph.layers["norm1"].kind == "bn" and graph.layers["head"].kind == "linear"
    conv1 = next(g for g in graph.groups if ("conv1", "out") in g.members)
    assert conv1.searchable and ("norm1", "bn") in conv1.members and ("conv2", "in") in conv1.members
    assert len(net.space) == 2
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert float((net(x) - model(x)).abs().max()) <= 1e-5
        for subnet in [net.space.min(), net.space.sample(3)]:
            net.set_subnet(subnet)
            plain = slimnas.export_subnet(net, subnet).eval()
            assert type(plain.norm1) is FunctionalNorm and type(plain.conv1) is FunctionalConvBN
            assert plain.conv1.kernel.shape[0] == subnet[conv1.name] == plain.norm1.mean.shape[0]
            assert float((net(x) - plain(x)).abs().max()) <= 1e-5
            path = slimnas.export_onnx(plain, tmp_path / "f.onnx", (3, 16, 16))
            assert slimnas.export.onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4
    assert net.flops(net.space.min()) < 0.3 * net.flops(net.space.original())


class NormNet(nn.Module):
    """GroupNorm(1, C) on a feature map and LayerNorm over the features of a flattened vector."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.gn = nn.GroupNorm(1, 32)
        self.fc1 = nn.Linear(32, 64)
        self.ln = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.gn(self.conv(x))).mean((2, 3))
        return self.fc2(F.relu(self.ln(self.fc1(x))))


def test_group_norm_and_layer_norm_over_channels_slice_with_their_group(tmp_path):
    torch.manual_seed(0)
    model = NormNet().eval()
    net = slimnas.convert(model, 16).eval()
    assert not net.graph.notes, net.graph.notes
    assert net.graph.layers["gn"].kind == net.graph.layers["ln"].kind == "bn"
    assert len(net.space) == 2
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert float((net(x) - model(x)).abs().max()) <= 1e-5
        net.set_subnet(net.space.min())
        plain = slimnas.export_subnet(net).eval()
        assert type(plain.gn) is nn.GroupNorm and plain.gn.num_channels == plain.gn.weight.shape[0] == 8
        assert type(plain.ln) is nn.LayerNorm and plain.ln.normalized_shape == (16,)
        assert float((net(x) - plain(x)).abs().max()) <= 1e-5
        macs, params = thop.profile(plain, inputs=(x[:1],), verbose=False)
        assert net.flops() == pytest.approx(macs, rel=0.01)  # thop counts no FLOPs (and no parameters) for GroupNorm
        assert net.params() == sum(p.numel() for p in plain.parameters())
        path = slimnas.export_onnx(plain, tmp_path / "n.onnx", (3, 16, 16))
        assert slimnas.export.onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4


def test_functional_batch_norm_trains_its_active_running_statistics():
    torch.manual_seed(0)
    net = slimnas.convert(FunctionalNet(), 16)
    subnet = net.space.min()
    net.set_subnet(subnet)
    before = net.model.norm1.mean.clone()
    net.train()(torch.randn(4, 3, 16, 16))
    width = subnet[next(g.name for g in net.graph.groups if ("norm1", "bn") in g.members)]
    assert not torch.equal(net.model.norm1.mean[:width], before[:width])
    assert torch.equal(net.model.norm1.mean[width:], before[width:])


@pytest.mark.parametrize("model_cls, where", [(Standardised, "computed weight"), (BorrowedBN, "not its own")])
def test_functional_patterns_not_understood_are_frozen_and_named(model_cls, where):
    torch.manual_seed(0)
    net = slimnas.convert(model_cls(), 16)  # never a crash
    assert any(where in n for n in net.graph.notes), net.graph.notes
    assert all(" at " in n for n in net.graph.notes if where in n)  # named by module and node
    x = torch.randn(1, 3, 16, 16)
    net.set_subnet(net.space.min())
    plain = slimnas.export_subnet(net).eval()
    with torch.no_grad():
        assert float((net.eval()(x) - plain(x)).abs().max()) <= 1e-5


# -- timm ---------------------------------------------------------------------------------------------------
TIMM = [("mobilenetv2_100", 32), ("efficientnet_b0", 32), ("mobilenetv3_large_100", 32), ("lcnet_050", 64),
        ("tf_efficientnet_b0", 32)]


@pytest.fixture(scope="module", params=TIMM, ids=[n for n, _ in TIMM])
def timm_model(request):
    timm = pytest.importorskip("timm", reason="timm (the dev extra) is not installed")
    name, size = request.param
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10)  # no weights: nothing is downloaded
    return name, size, calibrate(model, (3, size, size))


def test_timm_wrappers_are_understood_and_the_space_shrinks(timm_model):
    name, size, model = timm_model
    net = slimnas.convert(model, size)
    assert not [n for n in net.graph.notes if "batch_norm" in n or "not traceable" in n], net.graph.notes
    ratio = net.flops(net.space.min()) / net.flops(net.space.original())
    assert ratio < 0.3, f"{name}: min/original FLOPs {ratio:.3f}"


@torch.no_grad()
def test_timm_random_subnets_export_to_timm_classes(timm_model, tmp_path):
    name, size, model = timm_model
    net = slimnas.convert(model, size).eval()
    x = torch.randn(2, 3, size, size)
    want = model(x)
    assert float((net(x) - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))
    rng = random.Random(1)
    for i, subnet in enumerate([net.space.min(), net.space.sample(rng), net.space.sample(rng)]):
        net.set_subnet(subnet)
        got = net(x)
        plain = slimnas.export_subnet(net, subnet).eval()
        assert type(plain) is type(model)
        assert not any(isinstance(m, slimnas.dynamic.DynamicMixin) for m in plain.modules())
        if i == 0:  # the smallest subnet: plain timm BatchNormAct2d layers, narrower than the original's
            narrower = [n for n, m in plain.named_modules() if type(m).__name__ == "BatchNormAct2d"
                        and m.num_features == m.weight.shape[0] == m.running_mean.shape[0]
                        < model.get_submodule(n).num_features]
            assert len(narrower) > 5
        assert float((plain(x) - got).abs().max()) <= 1e-5 * max(1.0, float(got.abs().max())), f"{name} {subnet.hash}"
        macs, params = thop.profile(plain, inputs=(x[:1],), verbose=False, custom_ops=thop_custom_ops(plain))
        assert net.flops(subnet) == pytest.approx(macs, rel=0.01)
        assert net.params(subnet) == pytest.approx(params, rel=0.01)
        path = slimnas.export_onnx(plain, tmp_path / f"{name}-{i}.onnx", (3, size, size))
        assert slimnas.export.onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4


# mixnet_s, ghostnet_100 and cspresnet50 were here until their splits became searchable (tests/test_trace_split.py)
@pytest.mark.parametrize("name", ["nf_resnet26", "skresnet18"])
def test_timm_patterns_of_later_items_are_frozen_and_named_not_a_crash(name):
    timm = pytest.importorskip("timm", reason="timm (the dev extra) is not installed")
    torch.manual_seed(0)
    net = slimnas.convert(timm.create_model(name, pretrained=False, num_classes=10), 32)
    frozen = [g for g in net.graph.groups if g.frozen and g.frozen not in ("model input", "model output")]
    modules = [n for n, _ in net.model.named_modules() if n]
    assert frozen and all(any(f"{n} (" in g.frozen for n in modules) for g in frozen)  # reasons name the module
    net.set_subnet(net.space.min())
    plain = slimnas.export_subnet(net).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert float((net.eval()(x) - plain(x)).abs().max()) <= 1e-4
