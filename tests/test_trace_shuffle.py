"""Channel shuffle (issue 14, item 4): ShuffleNetV2's stages become searchable and export exactly.

The stage width is one channel group (a unit's halves keep equal widths); the narrow network's own shuffles
route the channels, so each producer keeps the channels that the narrow routing sends to each consumer. The
routing test checks that against the models themselves: it perturbs single channels and watches where they
arrive, in the original and in the exported subnet, and matches weights to see which stored channel each one is.
"""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import slimnas
from slimnas.errors import SlimnasError
from slimnas.subnet import Subnet
from tests.conftest import calibrate

torchvision = pytest.importorskip("torchvision")

SIZE = 64


def _model(name: str = "shufflenet_v2_x0_5") -> nn.Module:
    torch.manual_seed(0)
    return calibrate(getattr(torchvision.models, name)(num_classes=10), (3, SIZE, SIZE)).eval()


def _x(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _routed(net) -> list[str]:
    return [g.name for g in net.graph.groups if g.routed]


def _only_routed_narrowed(net, width_of) -> Subnet:
    """The original subnet with each routed group at ``width_of(choices)`` and every other group at full width."""
    widths = dict(net.space.original().widths)
    for name in _routed(net):
        widths[name] = width_of(net.space[name].choices)
    return Subnet(widths)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0"])
def test_shufflenet_stages_are_searchable_and_export_exactly(name, tmp_path):
    model = _model(name)
    x = _x()
    net = slimnas.convert(model, SIZE).eval()
    assert not [n for n in net.graph.notes if "shuffle" in n], net.graph.notes
    routed = _routed(net)
    assert len(routed) == 3 and all(r in net.space.names() for r in routed)  # one group per stage, searchable
    assert net.flops(net.space.min()) / net.flops(net.space.original()) <= 0.20
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max().item() <= 1e-5
    for i, subnet in enumerate([net.space.min(), net.space.sample(random.Random(0)),
                                _only_routed_narrowed(net, lambda c: c[len(c) // 2])]):
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        stage2 = subnet.widths[routed[0]]
        assert plain.stage2[0].branch1[2].out_channels == stage2 and plain.stage3[0].branch1[0].in_channels == 2 * stage2
        with torch.no_grad():
            assert (net(x) - plain(x)).abs().max().item() <= 1e-5
        if i == 1:
            slimnas.export_onnx(plain, tmp_path / "sub.onnx", (3, SIZE, SIZE), atol=1e-4)  # checks onnxruntime
            path = slimnas.save_exported(plain, tmp_path / "model.pt", subnet, arch=name, num_classes=10)
            back = slimnas.load_exported(path).eval()
            with torch.no_grad():
                assert (back(x) - plain(x)).abs().max().item() == 0


def _arrivals(model: nn.Module, producers: list[str], consumers: list[str]) -> dict:
    """``{(producer, k): {consumer: input position}}``: where each producer output channel arrives, found by
    adding 100 to that one channel (one image per channel) and seeing which consumer input carries exactly that
    bump (a channel passes on untouched to its consumers; what a branch makes of it is not the channel)."""
    mods = dict(model.named_modules())
    widths = {}
    seen: dict[str, torch.Tensor] = {}

    def grab(name):
        return lambda _m, args: seen.__setitem__(name, args[0].detach().clone())

    hooks = [mods[c].register_forward_pre_hook(grab(c)) for c in consumers]
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model(x)
    base = dict(seen)
    for p in producers:  # each producer's width, from its output
        h = mods[p].register_forward_hook(lambda _m, _a, o, p=p: widths.__setitem__(p, o.shape[1]))
        with torch.no_grad():
            model(x)
        h.remove()
    found: dict = {}
    for p in producers:
        n = widths[p]

        def bump(_m, _a, o, n=n):
            o = o.clone()
            o[torch.arange(n), torch.arange(n)] += 100.0  # image k: channel k of this producer
            return o

        h = mods[p].register_forward_hook(bump)
        seen.clear()
        with torch.no_grad():
            model(x.repeat(n, 1, 1, 1))
        h.remove()
        for c in consumers:
            # [channel k of p, input position]: the bump itself arrived there (not its effect through a branch)
            changed = ((seen[c] - base[c]) - 100.0).abs().flatten(2).amax(2) < 1e-2
            for k, pos in zip(*torch.nonzero(changed, as_tuple=True)):
                found.setdefault((p, int(k)), {})[c] = int(pos)
    for h in hooks:
        h.remove()
    return found


def _key(t: torch.Tensor) -> tuple:
    return tuple(round(v, 5) for v in sorted(t.flatten().tolist()))


def test_routing_sends_each_consumer_the_channels_it_was_trained_on():
    model = _model()
    net = slimnas.convert(model, SIZE).eval()
    stage = ["stage2.0.branch1", "stage2.0.branch2"] + [f"stage2.{j}.branch2" for j in (1, 2, 3)]
    consumers = [f"stage2.{j}.branch2.0" for j in (1, 2, 3)] + ["stage3.0.branch1.0", "stage3.0.branch2.0"]
    want = _arrivals(model, stage, consumers)
    assert len(want) == 5 * 24 and all(len(v) >= 1 for v in want.values())
    for pick in (lambda c: c[0], lambda c: c[1], lambda c: c[-2]):
        subnet = _only_routed_narrowed(net, pick)
        net.set_subnet(subnet)
        plain = slimnas.export_subnet(net, subnet).eval()
        got = _arrivals(plain, stage, consumers)
        w = subnet.widths[_routed(net)[0]]
        assert len(got) == 5 * w
        mods, orig = dict(plain.named_modules()), dict(model.named_modules())
        for (p, k), arrive in got.items():
            # which original channel is channel k of producer p: its BatchNorm's statistics are that channel's
            bn_new, bn_old = mods[f"{p}.{len(mods[p]) - 2}"], orig[f"{p}.{len(orig[p]) - 2}"]
            j = int(torch.nonzero(bn_old.running_mean == bn_new.running_mean[k])[0])
            assert set(arrive) == set(want[(p, j)]), (p, k, j)  # the same consumers
            for c, pos in arrive.items():
                old, new = orig[c].weight, mods[c].weight
                if orig[c].groups > 1:  # a depthwise filter: the channel's own
                    assert torch.equal(new[pos], old[want[(p, j)][c]])
                else:  # the column this input meets (its rows are the consumer's own group, reordered)
                    assert _key(new[:, pos]) == _key(old[:, want[(p, j)][c]])


def test_narrow_widths_the_routing_cannot_serve_are_not_candidates():
    net = slimnas.convert(_model(), SIZE)
    stage3 = _routed(net)[1]
    route = net.routes[net.graph.groups.index(net.graph.group(stage3))]
    assert route.feasible(48) and route.feasible(16) and not route.feasible(24)  # 8 units: 24 would need more
    assert set(net.space[stage3].choices) <= {w for w in range(1, 49) if route.feasible(w)}
    assert max(net.space[stage3].choices) == 48  # never broadened
    wide = slimnas.convert(_model(), SIZE, max_ratio=1.5)
    assert max(wide.space[stage3].choices) == 48 and any(
        wide.space[g].max_width > wide.space[g].width for g in wide.space.names())
    with pytest.raises(SlimnasError, match="channel shuffle"):
        net.set_subnet(Subnet(net.space.max().widths, {stage3: list(range(48))}))


class _ShuffleThenAdd(nn.Module):
    """A shuffle whose output meets a residual add: not a pattern the rules follow."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        n, ch, h, w = y.size()
        s = y.view(n, 2, ch // 2, h, w).transpose(1, 2).contiguous().view(n, ch, h, w)
        return self.fc((self.c(s) + s).mean((2, 3)))


def test_shuffled_channels_in_a_pattern_not_understood_are_frozen_and_named():
    model = calibrate(_ShuffleThenAdd(), (3, 16, 16)).eval()
    net = slimnas.convert(model, 16).eval()
    assert any("shuffled channels" in n and "add" in n for n in net.graph.notes), net.graph.notes
    assert not {"a.0", "b.0"} & set(net.space.names())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max().item() <= 1e-5


class _ShuffleTwice(nn.Module):
    """The same shuffled tensor concatenated with itself: a channel twice in one tensor."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        n, ch, h, w = y.size()
        s = y.view(n, 2, ch // 2, h, w).transpose(1, 2).contiguous().view(n, ch, h, w)
        return self.fc(self.c(torch.cat([s, s], 1)).mean((2, 3)))


def test_a_shuffled_channel_twice_in_one_tensor_is_frozen_and_named():
    model = calibrate(_ShuffleTwice(), (3, 16, 16)).eval()
    net = slimnas.convert(model, 16).eval()
    assert any("same channel twice" in n for n in net.graph.notes), net.graph.notes
    assert "c.0" in net.space.names() and not {"a.0", "b.0"} & set(net.space.names())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max().item() <= 1e-5
        subnet = net.space.min()
        net.set_subnet(subnet)
        assert (net(x) - slimnas.export_subnet(net, subnet).eval()(x)).abs().max().item() <= 1e-5
