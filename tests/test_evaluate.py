"""BN recalibration touches only the active subnet's channels; evaluation restores statistics; Kendall tau."""
from __future__ import annotations

import pytest
import torch

import slimnas
from slimnas.data import DataConfig, load_data
from slimnas.dynamic import DynamicMixin
from slimnas.evaluate import Evaluator, _active_positions, batch_norms, recalibrate_bn
from slimnas.rank import sample_subnets
from tests.conftest import calibrate
from tests.nets import TinyNet


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits", image_size=16))


def test_recalibration_changes_only_active_channels(digits):
    net = slimnas.convert(calibrate(TinyNet(10), (3, 16, 16)), 16)
    g = next(g for g in net.space.groups if len(g.choices) > 2 and g.choices[1] >= 2)
    # the stem at full width (with grouped convs on it is searchable): its BNs see every channel
    sub = net.space.uniform(0.5).replace({"stem.0": net.space["stem.0"].max_width})
    w = sub[g.name]
    sub = sub.replace(indices={g.name: tuple(range(w - 1)) + (g.max_width - 1,)})  # a non-prefix arrangement
    net.set_subnet(sub)
    before = {id(bn): (bn.running_mean.clone(), bn.running_var.clone()) for bn in batch_norms(net)}
    batches = [torch.stack([digits.calib[i][0] for i in range(j, j + 32)]) for j in (0, 32)]
    recalibrate_bn(net, batches)
    checked = 0
    for bn in batch_norms(net):
        mean0, var0 = before[id(bn)]
        active = torch.zeros(bn.num_features, dtype=torch.bool)
        active[_active_positions(bn)] = True
        assert torch.equal(bn.running_mean[~active], mean0[~active]), "an inactive channel's statistics changed"
        assert torch.equal(bn.running_var[~active], var0[~active])
        assert not torch.allclose(bn.running_mean[active], mean0[active])
        checked += int((~active).any())
    assert checked >= 3
    # the exact average over the batches, not a momentum blend
    bn = next(b for b in batch_norms(net) if isinstance(b, DynamicMixin) and b.active_out is None)
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) > 0


def test_evaluator_restores_statistics_and_caches_batches(digits):
    net = slimnas.convert(calibrate(TinyNet(10), (3, 16, 16)), 16)
    ev = Evaluator(digits.calib, digits.val, calib_images=64, val_images=100, batch_size=50)
    assert len(ev.calib) == 2 and sum(len(y) for _, y in ev.val) == 100
    state = {k: v.clone() for k, v in net.state_dict().items()}
    a = ev.evaluate(net, net.space.min())
    b = ev.evaluate(net, net.space.min())
    assert a == b and 0.0 <= a.top1 <= 1.0 and a.n == 100
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert net.active == net.space.max()


def test_sample_subnets_distinct_with_ends():
    net = slimnas.convert(TinyNet(10), 16)
    subs = sample_subnets(net.space, 8, seed=1)
    assert subs[0] == net.space.max() and subs[1] == net.space.min() and len(set(subs)) == 8
