"""Strategies on a tiny real network and real digits: min-min, shrinking, sandwich, schedule."""
from __future__ import annotations

import contextlib
import copy
import csv
import random

import pytest
import torch
import torch.nn.functional as F

import slimnas
from slimnas import SlimnasError, Subnet
from slimnas.data import DataConfig, load_data
from slimnas.train import StepContext, Trainer, TrainConfig, lr_at, make_strategy
from tests.conftest import calibrate
from tests.nets import TinyNet


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits", image_size=16))


def batch(data, n=32):
    x = torch.stack([data.calib[i][0] for i in range(n)])
    y = torch.tensor([data.calib[i][1] for i in range(n)])
    return x, y


def ctx_for(net, seed=0):
    return StepContext(net, lambda loss: loss.backward(), contextlib.nullcontext, lambda t: t, random.Random(seed), 0.0, 0)


def tiny_supernet(**space):
    model = calibrate(TinyNet(10), (3, 16, 16))
    model.drop.p = 0.0  # dropout would make two forwards of one subnet differ
    return slimnas.convert(model, 16, **space)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(lr=0.1, warmup_fraction=0.1, min_lr_ratio=0.0)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.1) and lrs[55] == pytest.approx(0.05, rel=0.05)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.001


def test_cafenet_min_min_updates_only_the_smallest_loss_arrangement(digits):
    net = tiny_supernet()
    st = make_strategy("cafenet", net, widest=False, narrowest=False, n_random=1, k=4, distill=False, free_ratio=0.3)
    ref = copy.deepcopy(net)
    x, y = batch(digits)
    net.train()
    st.step(x, y, ctx_for(net, seed=5))
    trial = st.last_trial
    assert len(trial) == 4 and len({s for s, _ in trial}) == 4, "the arrangements tried must differ"
    assert any(s.indices for s, _ in trial), "free channels must move some arrangement off the leftmost channels"
    losses = [l for _, l in trial]
    winner = st.last_winner
    assert winner == trial[losses.index(min(losses))][0]

    def grads_of(sub):
        model = copy.deepcopy(ref)
        model.train()
        model.set_subnet(sub)
        F.cross_entropy(model(x), y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    trained = {n: p.grad for n, p in net.named_parameters()}
    expected = grads_of(winner)
    for n, g in expected.items():
        assert torch.allclose(trained[n], g, atol=1e-6), f"{n}: gradient is not the winner's"
    loser = next(s for s, l in trial if s != winner)
    other = grads_of(loser)
    assert any(not torch.allclose(trained[n], other[n], atol=1e-6) for n in other)
    # the winning arrangement is remembered: search and export get it back
    final = st.finalize(Subnet(winner.widths))
    assert final.indices == winner.indices
    exported = slimnas.export_subnet(net, final)
    net.set_subnet(final)
    net.eval()
    exported.eval()
    assert torch.allclose(exported(x), net(x), atol=1e-5)
    # state survives a checkpoint round trip
    st2 = make_strategy("cafenet", net, k=4, free_ratio=0.3)
    st2.load_state_dict(st.state_dict())
    assert st2.finalize(Subnet(winner.widths)) == final


def test_sandwich_step_trains_widest_narrowest_and_random(digits):
    net = tiny_supernet()
    st = make_strategy("sandwich", net, n_random=2)
    x, y = batch(digits)
    metrics = st.step(x, y, ctx_for(net))
    assert {"loss_widest", "loss_narrowest", "loss_random"} <= set(metrics)
    assert len(st.records) == 3 and st.records[0][0] == net.space.min()
    # channels beyond the narrowest width got gradients (from the widest and random subnets)
    w = net.model.fc1.weight.grad
    assert w.abs().sum() > 0 and w[net.space.min()["fc1"]:].abs().sum() > 0


def test_bsnas_shrinks_and_logs(digits, tmp_path):
    net = tiny_supernet(max_ratio=1.5)
    assert net.space.max() != net.space.original(), "the space must be broadened"
    start = {g.name: g.choices for g in net.space.groups}
    st = make_strategy("bsnas", net, shrink_every=3, floor=2, n_random=2)
    cfg = TrainConfig(epochs=2, steps_per_epoch=6, batch_size=32, eval_images=0, progress=False)
    Trainer(net, st, digits, cfg, tmp_path).fit()
    rows = list(csv.DictReader(open(tmp_path / "shrink.csv")))
    assert rows and {r["step"] for r in rows} <= {"3", "6", "9", "12"}
    for r in rows:
        assert int(r["width"]) in start[r["group"]] and int(r["width"]) not in st.space[r["group"]].choices
        assert float(r["score"]) == float(r["score"]) and int(r["samples"]) >= 2
    for g in st.space.groups:
        assert len(g.choices) >= min(2, len(start[g.name])) and g.choices[0] == start[g.name][0]
    assert st.space.size() < net.space.size()


def test_unknown_strategy_and_option():
    net = tiny_supernet()
    with pytest.raises(SlimnasError, match="unknown training strategy"):
        make_strategy("nope", net)
    with pytest.raises(SlimnasError, match="no option"):
        make_strategy("sandwich", net, kk=1)
    with pytest.raises(SlimnasError, match="convert"):
        make_strategy("sandwich", TinyNet(10))
