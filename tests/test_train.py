"""Strategies on a tiny real network and real digits: min-min, shrinking, sandwich, schedule."""
from __future__ import annotations

import contextlib
import copy
import csv
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import slimnas
from slimnas import SlimnasError, Subnet
from slimnas.data import DataConfig, load_data
from slimnas.evaluate import _active_positions, batch_norms
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
    torch.manual_seed(0)  # the same weights on every run: the tests below compare arrangements of them
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


def bn_stats(net):
    return {n: b.clone() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_cafenet_trial_forwards_leave_bn_statistics_to_the_winner(digits):
    net = tiny_supernet()
    st = make_strategy("cafenet", net, widest=False, narrowest=False, n_random=1, k=4, distill=False, free_ratio=0.3)
    before = bn_stats(net)
    ref = copy.deepcopy(net)
    x, y = batch(digits)
    net.train()
    # seed 1: with grouped convs on, seed 5 drew a student at full width in all groups but one (no loser's own channels)
    st.step(x, y, ctx_for(net, seed=1))
    winner = st.last_winner
    ref.train()
    ref.set_subnet(winner)
    with torch.no_grad():
        ref(x)  # one training-mode forward of the winner: all the statistics may have seen
    after, expected = bn_stats(net), bn_stats(ref)
    for n in expected:
        assert torch.equal(after[n], expected[n]), f"{n}: BN statistics are not the winner's alone"
    # the channels only a losing arrangement used keep their statistics exactly
    def positions(sub):
        net.set_subnet(sub)
        return {name: set(torch.arange(m.num_features)[_active_positions(m)].tolist())
                for name, m in net.named_modules() if m in batch_norms(net)}

    won = positions(winner)
    checked = 0
    for loser, _ in st.last_trial:
        for name, pos in positions(loser).items():
            only = sorted(pos - won[name])
            if only:
                assert torch.equal(after[f"{name}.running_mean"][only], before[f"{name}.running_mean"][only]), name
                assert torch.equal(after[f"{name}.running_var"][only], before[f"{name}.running_var"][only]), name
                checked += len(only)
    assert checked > 0, "some loser must use channels the winner does not"
    assert any(not torch.equal(after[n], before[n]) for n in after), "the winner's forward must count"


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
    st = make_strategy("bsnas", net, shrink_every=3, floor=2, n_random=2, min_samples=2, confidence=0.0, window_rounds=1)
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


def test_steps_csv_has_one_column_per_loss(digits, tmp_path):
    net = tiny_supernet()
    st = make_strategy("sandwich", net, n_random=2)
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=32, eval_images=0, progress=False)
    Trainer(net, st, digits, cfg, tmp_path).fit()
    with open(tmp_path / "steps.csv") as f:
        header = next(csv.reader(f))
        f.seek(0)
        rows = list(csv.DictReader(f))
    assert len(header) == len(set(header)) and len(rows) == 3
    losses = [c for c in header if c.startswith("loss")]
    assert set(losses) == {"loss", "loss_widest", "loss_narrowest", "loss_random"}
    for a in losses:
        for b in losses:
            if a < b:
                assert any(r[a] != r[b] for r in rows), f"{a} and {b} hold the same numbers"
    for r in rows:  # loss is the mean over the 4 subnets trained (widest, narrowest, 2 random)
        parts = float(r["loss_widest"]) + float(r["loss_narrowest"]) + 2 * float(r["loss_random"])
        assert float(r["loss"]) == pytest.approx(parts / 4, rel=1e-6)
    st1 = make_strategy("sandwich", net, narrowest=False, n_random=0)
    assert set(st1.step(*batch(digits), ctx_for(net))) == {"loss"}, "one subnet trained: one loss column"


def synthetic_window(st, bad_group, bad_width, effect, n=240, noise=0.1, seed=0):
    """Records of random subnets whose loss is worse by ``effect`` where ``bad_group`` has ``bad_width``."""
    from slimnas.train.strategies.bsnas import Record

    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    out = []
    for i in range(n):
        sub = st.space.sample(rng)
        loss = 1.0 + (effect if sub[bad_group] == bad_width else 0.0) + float(nrng.normal(0, noise))
        out.append(Record(sub.widths, 1.0, loss, i + 1))
    return out


def test_bsnas_switches_off_only_on_evidence():
    net = tiny_supernet(max_ratio=1.5)
    group = max(net.space.groups, key=lambda g: len(g.choices))
    assert len(group.choices) >= 4
    bad = group.choices[-2]
    opts = dict(shrink_every=1000, floor=2, score="loss")

    st = make_strategy("bsnas", net, **opts)  # defaults: min_samples 5, margin 0, confidence 0.95
    st.window = synthetic_window(st, group.name, bad, effect=1.0)
    rows = st.shrink(1000)
    assert [(r["group"], r["width"]) for r in rows] == [(group.name, bad)], "only the clearly worse choice goes"
    r = rows[0]
    assert r["step"] == 1000 and r["samples"] >= 5 and r["best_samples"] >= 5
    assert r["score"] == pytest.approx(2.0, abs=0.1) and r["gap"] > 0 and r["p_value"] < r["alpha"] < 0.05
    assert bad not in st.space[group.name].choices and st.log == rows

    few = make_strategy("bsnas", net, **opts, min_samples=10_000)  # the same evidence, too few samples
    few.window = synthetic_window(few, group.name, bad, effect=1.0)
    assert few.shrink(1000) == [] and few.space.size() == net.space.size()

    close = make_strategy("bsnas", net, **opts, margin=1.5)  # worse, but not by the margin
    close.window = synthetic_window(close, group.name, bad, effect=1.0)
    assert close.shrink(1000) == []

    # no choice is worse: the old rule (confidence 0) removes one choice per group every round, the test rarely
    groups = sum(len(g.choices) > 2 for g in net.space.groups)
    removed = {0.0: 0, 0.95: 0}
    for seed in range(20):
        for conf in removed:
            st_null = make_strategy("bsnas", net, **opts, confidence=conf)
            st_null.window = synthetic_window(st_null, group.name, bad, effect=0.0, seed=seed)
            removed[conf] += len(st_null.shrink(1000))
    assert removed[0.0] == 20 * groups
    assert removed[0.95] <= 0.1 * 20 * groups, removed  # Bonferroni at 95%: about 3% measured

    kept = make_strategy("bsnas", net, **opts, window_rounds=2)  # evidence of the last two rounds is kept
    kept.window = synthetic_window(kept, group.name, bad, effect=1.0, n=2000)
    kept.shrink(2000)
    assert {r.step for r in kept.window} == set(range(1001, 2001))
    fresh = make_strategy("bsnas", net, **opts, window_rounds=1)  # one round: the next round starts afresh
    fresh.window = synthetic_window(fresh, group.name, bad, effect=1.0, n=2000)
    fresh.shrink(2000)
    assert fresh.window == []
    state = kept.state_dict()
    again = make_strategy("bsnas", net, **opts, window_rounds=2)
    again.load_state_dict(state)
    assert again.window == kept.window and again.log == kept.log and again.space.size() == kept.space.size()


def test_unknown_strategy_and_option():
    net = tiny_supernet()
    with pytest.raises(SlimnasError, match="unknown training strategy"):
        make_strategy("nope", net)
    with pytest.raises(SlimnasError, match="no option"):
        make_strategy("sandwich", net, kk=1)
    with pytest.raises(SlimnasError, match="convert"):
        make_strategy("sandwich", TinyNet(10))
