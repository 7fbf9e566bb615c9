"""Subnets as data, the search-space operators, and running a group on explicit channel indices."""
from __future__ import annotations

import random

import pytest
import torch
import torchvision

import slimnas
from slimnas.space import SpaceConfig, candidate_widths
from tests.conftest import calibrate


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return slimnas.convert(calibrate(torchvision.models.mobilenet_v2(num_classes=10), (3, 32, 32)), 32).eval()


def test_json_round_trip_and_stable_hash():
    s = slimnas.Subnet({"b": 16, "a": 8}, indices={"a": [0, 2, 4, 6, 8, 10, 12, 14]})
    back = slimnas.Subnet.from_json(s.to_json())
    assert back == s and back.hash == s.hash and len({s, back}) == 1
    # the hash depends on content only, not on insertion order, and is fixed across runs and machines
    assert slimnas.Subnet({"a": 8, "b": 16}).hash == slimnas.Subnet({"b": 16, "a": 8}).hash
    assert slimnas.Subnet({"a": 8, "b": 16}).hash == "9f87cda05cb443ad"  # sha1 of {"widths":{"a":8,"b":16}}
    assert slimnas.Subnet({"a": 8, "b": 24}).hash != slimnas.Subnet({"a": 8, "b": 16}).hash


def test_bad_subnets_are_refused(net):
    with pytest.raises(slimnas.SlimnasError, match="one index per channel"):
        slimnas.Subnet({"a": 3}, indices={"a": [0, 1]})
    with pytest.raises(slimnas.SlimnasError, match="unknown groups"):
        net.set_subnet(slimnas.Subnet({"no.such.group": 8}))
    with pytest.raises(slimnas.SlimnasError, match="not valid JSON"):
        slimnas.Subnet.from_json("{widths:")


def test_operators_stay_inside_the_space(net):
    space, rng = net.space, random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    assert space.sample(random.Random(5)) == space.sample(random.Random(5))
    for s in (a, b, space.mutate(a, 0.5, rng), space.crossover(a, b, rng), space.min(), space.max()):
        assert all(s[g.name] in g.choices for g in space.groups)
    child = space.crossover(a, b, rng)
    assert all(child[n] in (a[n], b[n]) for n in space.names())
    assert space.mutate(a, 0.0, rng) == a
    assert net.flops(space.min()) < net.flops(space.uniform(0.5)) < net.flops(space.max())


def test_candidate_widths_round_and_broaden():
    assert candidate_widths(96, SpaceConfig()) == (24, 40, 48, 64, 72, 88, 96)
    broad = candidate_widths(96, SpaceConfig(ratios=(0.5, 1.0), max_ratio=1.5))
    assert broad[0] == 48 and 96 in broad and max(broad) == 144
    with pytest.raises(slimnas.SlimnasError, match="out of range"):
        SpaceConfig(ratios=(0.0, 1.0))
    with pytest.raises(slimnas.SlimnasError, match="out of range"):
        SpaceConfig(ratios=(0.5, 1.2))


@torch.no_grad()
def test_explicit_channel_indices_run_and_export(net):
    """A group can use any channels (CafeNet's free channels), not only the first c."""
    x = torch.randn(2, 3, 32, 32)
    # the group feeding the classifier: a random-init network damps changes made far from the output
    g = net.space[net.graph.group("features.18.0").name]
    rng = random.Random(3)
    picked = sorted(rng.sample(range(g.width), 640))
    base = net.space.uniform(0.5)
    free = base.replace({g.name: 640}, indices={g.name: picked})
    net.set_subnet(free)
    y_free = net(x)
    plain = slimnas.export_subnet(net, free).eval()
    assert float((plain(x) - y_free).abs().max()) <= 1e-5
    net.set_subnet(base.replace({g.name: 640}))
    y_first = net(x)
    assert float((y_first - y_free).abs().max()) > 1e-4  # different channels really were used
    # indices equal to the first c channels are the same subnet function as the width alone
    net.set_subnet(base.replace({g.name: 640}, indices={g.name: list(range(640))}))
    assert float((net(x) - y_first).abs().max()) <= 1e-6
    net.set_subnet(net.space.max())


def test_analytic_flops_are_vectorised_and_fast_enough_to_call_often(net):
    subnets = [net.space.sample(random.Random(i)) for i in range(50)]
    batch = net.cost.flops(net.widths_matrix(subnets))
    one_by_one = [net.flops(s) for s in subnets]
    assert batch.tolist() == pytest.approx(one_by_one)


def test_bn_running_stats_of_indexed_channels_are_updated_in_place(net):
    g = next(g for g in net.space.groups if g.width == 144)
    bn = net.model.get_submodule(next(name for name, role in net.graph.group(g.name).members if role == "bn"))
    before = bn.running_mean.clone()
    picked = list(range(1, 144, 2))
    net.set_subnet(net.space.max().replace({g.name: 72}, indices={g.name: picked}))
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, 32, 32))
    net.eval()
    changed = (bn.running_mean != before).nonzero().flatten().tolist()
    assert changed == picked
    net.set_subnet(net.space.max())
