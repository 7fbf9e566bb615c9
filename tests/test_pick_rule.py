"""The final pick spends the budget: a narrower candidate wins only when its paired score is higher beyond the
error, on a real (briefly trained) supernet scored on real validation images."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import slimnas
from slimnas.data import DataConfig, load_data
from slimnas.pipeline.config import FitnessConfig, VerifyConfig
from slimnas.pipeline.fitness import SupernetFitness
from slimnas.pipeline.report import _pick_lines
from slimnas.pipeline.verify import _candidates, candidate_pool
from slimnas.search.pick import choose, tolerant_front
from slimnas.train import make_strategy
from tests.nets import TinyNet

MARGIN = VerifyConfig().margin_se


@pytest.fixture(scope="module")
def trained():
    """TinyNet trained 21 steps on the digits (about 70% validation top-1), as a supernet."""
    torch.manual_seed(0)
    data = load_data(DataConfig("digits", image_size=16, augment=False))
    model = TinyNet(10)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    loader = torch.utils.data.DataLoader(data.train, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net = slimnas.convert(model.eval(), 16)
    return net, make_strategy("sandwich", net), data


def _fitness_with_extra_units(trained, change):
    """The supernet with fc2's weights from fc1's units 48..63 (used by the widest subnet only) set to
    ``change(weights)``; the widest subnet and the one with fc1 at 48, both scored."""
    net, strategy, data = trained
    fc2 = net.model.fc2
    saved = fc2.weight.detach().clone()
    with torch.no_grad():
        fc2.weight[:, 48:] = change(saved[:, 48:])
    wide = net.space.max()
    narrow = wide.replace(widths={"fc1": 48})
    fit = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128))
    fit(wide), fit(narrow)
    return fit, wide, narrow, net, saved


def _pick(fit, net, subs):
    flops = [float(net.flops(s)) for s in subs]
    return choose([s.hash for s in subs], flops, [f / max(flops) for f in flops],
                  lambda i, j: fit.paired(subs[i], subs[j]), MARGIN)


def test_a_narrower_candidate_better_within_the_paired_error_loses_to_the_wider(trained):
    fit, wide, narrow, net, saved = _fitness_with_extra_units(trained, lambda w: -0.8 * w)
    try:
        d, se = fit.paired(narrow, wide)
        assert 0 < d < MARGIN * se, "the narrower one scores higher, but within the paired error"
        pick = _pick(fit, net, [narrow, wide])
    finally:
        with torch.no_grad():
            net.model.fc2.weight.copy_(saved)
    assert pick.index == 1 and not pick.narrower_by_evidence
    assert pick.reason.startswith("the widest candidate that meets the budget")
    assert f"nearest: `{narrow.hash}`" in pick.reason and f"{d * 100:+.1f} ± {se * 100:.1f} pt" in pick.reason


def test_a_narrower_candidate_clearly_better_wins_and_the_report_says_why(trained):
    g = torch.Generator().manual_seed(1)
    fit, wide, narrow, net, saved = _fitness_with_extra_units(trained, lambda w: 3 * torch.randn(w.shape, generator=g))
    try:
        d, se = fit.paired(narrow, wide)
        pick = _pick(fit, net, [wide, narrow])
    finally:
        with torch.no_grad():
            net.model.fc2.weight.copy_(saved)
    assert d > MARGIN * se > 0
    assert pick.index == 1 and pick.narrower_by_evidence
    assert f"narrower `{narrow.hash}`" in pick.reason and f"above the wider `{wide.hash}`" in pick.reason
    assert f"{d * 100:+.1f} ± {se * 100:.1f} pt" in pick.reason
    text = "\n".join(_pick_lines({"budget_share": 0.81, "pick_reason": pick.reason, "median_ms": 0.81, "budget_ms": 1.0}))
    assert "**81% of the latency budget**" in text and pick.reason in text


def test_scores_carry_their_standard_error_and_pairing_shrinks_it(trained, tmp_path):
    net, strategy, data = trained
    path = tmp_path / "fitness.jsonl"
    fit = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128), path)
    a, b = net.space.max(), net.space.uniform(0.75)
    p, n = fit(a), len(data.val)
    assert fit.se(a) == pytest.approx(np.sqrt(p * (1 - p) / (n - 1)))
    d, se = fit.paired(b, a)
    assert d == pytest.approx(fit(b) - fit(a))
    assert 0 < se < np.hypot(fit.se(a), fit.se(b)), "the same images: the paired error is the smaller"
    again = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128), path)
    assert np.array_equal(again.values(a), fit.values(a)) and again.paired(b, a) == (d, se)
    loss = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128, estimator="loss"), path)
    assert loss(a) == pytest.approx(-fit.score(a)["loss"]) and loss.se(a) > 0


def test_a_record_without_per_image_outcomes_is_scored_again(trained, tmp_path):
    net, strategy, data = trained
    path = tmp_path / "fitness.jsonl"
    sub = net.space.uniform(0.5)
    fit = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128), path)
    row = dict(fit.score(sub))
    old = {k: row[k] for k in ("hash", "accuracy", "loss", "n", "subnet")}  # as an earlier version wrote it
    path.write_text(json.dumps(old) + "\n")
    again = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128), path)
    assert again(sub) == row["accuracy"] and "correct" not in again.records[row["hash"]]
    assert np.array_equal(again.values(sub), fit.values(sub))


def test_the_tolerant_front_keeps_a_wide_candidate_a_lucky_small_one_hides():
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.8
    wide = base.copy()
    small = base.copy()
    small[np.flatnonzero(~base)[:3]] = True  # 3 images luckier of 400: within noise
    worse = base.copy()
    worse[np.flatnonzero(base)[:60]] = False  # far below
    values = np.stack([wide, small, worse]).astype(float)
    keep = tolerant_front(values, np.array([1.0, 0.5, 0.9]), MARGIN)
    assert list(keep) == [True, True, False], "the plain Pareto front would drop the wide one"


def test_verification_times_the_widest_candidates_and_the_best_scoring_one(trained):
    net, strategy, data = trained
    fit = SupernetFitness(net, strategy, data, FitnessConfig(calib_images=128))
    subs = [net.space.uniform(r) for r in (1.0, 0.75, 0.5, 0.25)] + [net.space.max().replace(widths={"fc1": 48})]
    history = pd.DataFrame({"hash": [s.hash for s in subs], "latency_ms": [1.0, 0.8, 0.6, 0.4, 0.95],
                            "flops": [float(net.flops(s)) for s in subs], "feasible": [False, True, True, True, True],
                            "subnet": [s.to_json() for s in subs]})
    pool = candidate_pool(history, fit, None, MARGIN)
    assert subs[0].hash not in set(pool["hash"]), "an infeasible one is never a candidate"
    assert list(pool["latency_ms"]) == sorted(pool["latency_ms"], reverse=True)
    picks = _candidates(pool, set(), 2)
    best = pool.sort_values("score", ascending=False)["hash"].iloc[0]
    assert picks["hash"].iloc[0] == subs[4].hash and best in set(picks["hash"])
    assert (_candidates(pool, set(), 3, low=0.7)["latency_ms"] > 0.7).all(), "after a pick that left budget unused"
