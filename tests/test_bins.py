"""FLOPs-sensitive bins are about equally FLOPs-spaced; latency bins snap to the ends of latency plateaus."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torchvision

import slimnas
from slimnas.train import flops_bins, flops_cost, latency_bins, table_latency
from slimnas.train.bins import default_step


@pytest.fixture(scope="module")
def net():
    ratios = tuple(i / 16 for i in range(4, 17))
    return slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), 32, ratios=ratios, divisor=4)


def test_flops_bins_are_equal_flops_steps(net):
    cost = flops_cost(net)
    step = default_step(net.space, cost, 4)
    binned = flops_bins(net, 4)
    counts, step_sizes = [], []
    for g in binned.groups:
        full = net.space[g.name].choices
        costs = {w: cost(g.name, w) for w in full}
        grain = max(costs[b] - costs[a] for a, b in zip(full, full[1:]))  # the coarsest single candidate step
        deltas = [costs[b] - costs[a] for a, b in zip(g.choices, g.choices[1:])]
        assert g.choices[0] == full[0] and g.choices[-1] == full[-1]
        for a, b in zip(g.choices[:-2], g.choices[1:-1]):
            d = costs[b] - costs[a]
            adjacent = full.index(b) == full.index(a) + 1  # a single candidate step larger than the bin step
            assert step - grain - 1e-6 <= d and (d <= step * (1 + 1e-9) or adjacent)
        if deltas:
            assert deltas[-1] <= 1.5 * step + grain
        counts.append(len(g.choices))
        step_sizes += deltas[:-1]
    assert len(set(counts)) > 2, "heavy and light groups should get different numbers of bins"
    assert 0.6 * step <= np.median(step_sizes) <= step
    heavy = max(binned.groups, key=lambda g: cost(g.name, g.choices[-1]) - cost(g.name, g.choices[0]))
    assert len(heavy.choices) == max(counts)


def test_latency_bins_snap_to_plateau_ends(net):
    flops = flops_cost(net)

    def staircase_ms(group, width):  # kernels that speed-step every 16 channels, cost from the FLOPs model
        return flops(group, int(math.ceil(width / 16) * 16)) * 1e-6

    binned = latency_bins(net, staircase_ms, 4)
    snapped = 0
    for g in binned.groups:
        full = net.space[g.name].choices
        for w in g.choices[:-1]:
            nxt = full[full.index(w) + 1]
            assert staircase_ms(g.name, nxt) > staircase_ms(g.name, w), f"{g.name}: {w} is not a plateau end"
            snapped += w > g.choices[0]
    assert snapped > 5


def test_table_latency_interpolates():
    f = table_latency({("a", 8): 1.0, ("a", 16): 2.0, ("b", 8): 5.0})
    assert f("a", 12) == pytest.approx(1.5) and f("b", 8) == 5.0
    with pytest.raises(slimnas.SlimnasError):
        f("c", 8)
