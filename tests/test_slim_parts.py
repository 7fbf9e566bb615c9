"""Parts of the pipeline on their own: the config schema, distillation, the fitness cache, verification's choice."""
from __future__ import annotations

import contextlib
import random

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import slimnas
from slimnas import SlimnasError
from slimnas.data import DataConfig, load_data
from slimnas.pipeline import FitnessConfig, SlimConfig, demo_config, dump_config, load_config
from slimnas.pipeline.config import with_overrides
from slimnas.pipeline.fitness import SupernetFitness
from slimnas.pipeline.config import absolute_paths
from slimnas.pipeline.schema import parse_assignment
from slimnas.pipeline.verify import _candidates, latency_limit, meets_latency, ratio_to_original
from slimnas.search import parse_constraints
from slimnas.train import StepContext, make_strategy
from slimnas.train.strategies.distill import Distill, DistillOptions, distill_loss
from tests.conftest import calibrate
from tests.nets import TinyNet


def test_config_round_trips_through_yaml(tmp_path):
    config = demo_config("runs/x")
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == absolute_paths(config, tmp_path), "a relative path in a file is relative to the file"
    assert load_config(path).out == str(tmp_path / "runs" / "x")
    assert load_config(path, [{"search": {"population": 7}}]).search.population == 7


def test_overrides_are_checked_like_the_file():
    c = with_overrides(SlimConfig(), [parse_assignment("search.population=12"), parse_assignment("export.tensorrt=false"),
                                      parse_assignment("constraints=[latency<=2ms, params<=1M]")])
    assert c.search.population == 12 and c.export.tensorrt is False and c.constraints == ("latency<=2ms", "params<=1M")
    with pytest.raises(SlimnasError, match="search.population must be an integer, got 'many'"):
        with_overrides(SlimConfig(), [parse_assignment("search.population=many")])
    with pytest.raises(SlimnasError, match="unknown key 'search.speed'"):
        with_overrides(SlimConfig(), [parse_assignment("search.speed=3")])
    with pytest.raises(SlimnasError, match="SECTION.KEY=VALUE"):
        parse_assignment("population")


def test_seed_reaches_every_section():
    c = SlimConfig(seed=7, base=slimnas.pipeline.config.TrainConfig()).seeded()
    assert c.data.seed == c.base.seed == c.supernet.train.seed == c.search.seed == c.finetune.train.seed == 7
    assert c.data.image_size == c.model.input_size


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits", image_size=16, train_subset=256, val_subset=64))


def ctx(model):
    return StepContext(model, lambda loss: loss.backward(), contextlib.nullcontext, lambda t: t, random.Random(0), 0.0, 0)


def test_distill_loss_and_step(digits):
    torch.manual_seed(0)
    student, teacher = calibrate(TinyNet(10), (3, 16, 16)), calibrate(TinyNet(10), (3, 16, 16))
    student.drop.p = teacher.drop.p = 0.0
    x = torch.stack([digits.calib[i][0] for i in range(16)])
    y = torch.tensor([digits.calib[i][1] for i in range(16)])
    t_before = [p.clone() for p in teacher.parameters()]
    st = Distill(student, DistillOptions(alpha=0.7, temperature=3.0), teacher=teacher)
    student.train()
    metrics = st.step(x, y, ctx(student))
    with torch.no_grad():
        s_out, t_out = student(x), teacher.eval()(x)
    want = 0.3 * F.cross_entropy(s_out, y) + 0.7 * distill_loss(s_out, t_out, 3.0)
    assert metrics["loss"] == pytest.approx(float(want), rel=1e-4)
    assert distill_loss(t_out, t_out, 3.0).abs() < 1e-6, "a student equal to its teacher has no distillation loss"
    assert all(torch.equal(a, b) for a, b in zip(t_before, teacher.parameters())) and all(
        p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    with pytest.raises(SlimnasError, match="needs a teacher"):
        make_strategy("distill", student).step(x, y, ctx(student))
    with pytest.raises(SlimnasError, match="alpha"):
        make_strategy("distill", student, alpha=2.0)


def test_fitness_scores_each_subnet_once_and_keeps_its_arrangement(digits, tmp_path):
    torch.manual_seed(0)
    net = slimnas.convert(calibrate(TinyNet(10), (3, 16, 16)), 16, ratios=(0.5, 0.75, 1.0))
    strategy = make_strategy("cafenet", net, k=3, free_ratio=0.3)
    path = tmp_path / "fitness.jsonl"
    fit = SupernetFitness(net, strategy, digits, FitnessConfig(calib_images=32, val_images=32), path)
    sub = net.space.uniform(0.5)
    acc = fit(sub)
    arranged = fit.arranged(sub)
    assert arranged.widths == sub.widths and arranged.indices, "CafeNet's winning arrangement is kept"
    assert len(path.read_text().splitlines()) == 1
    with open(path, "a") as f:
        f.write('{"hash": "cut-by-a-ki')  # a line a kill cut short
    again = SupernetFitness(net, strategy, digits, FitnessConfig(calib_images=32, val_images=32), path)
    calls = []
    again._evaluator = type("NoEval", (), {"best_of": lambda *a: calls.append(a)})()
    assert again(sub) == acc and again.arranged(sub) == arranged and not calls
    assert path.read_text().endswith("cut-by-a-ki")  # readers never write; the next append repairs it


def test_verification_takes_the_widest_and_the_best_scoring_and_narrows_after_a_miss():
    pool = pd.DataFrame({"hash": list("abcdef"), "score": [0.7, 0.85, 0.9, 0.8, 0.6, 0.5],
                         "latency_ms": [1.0, 0.95, 0.9, 0.8, 0.7, 0.6]})  # widest first, as candidate_pool gives
    assert list(_candidates(pool, set(), 2)["hash"]) == ["a", "c"], "the widest, and the best-scoring"
    assert list(_candidates(pool, {"a", "c"}, 3)["hash"]) == ["b", "d", "e"]
    assert list(_candidates(pool, set(), 3, low=0.85)["hash"]) == ["a", "b", "c"], "only those above the last pick"
    cs = parse_constraints(["latency<=0.5x", "params<=1M"])
    assert latency_limit(cs, 4.0) == pytest.approx(2.0)
    assert latency_limit(parse_constraints(["latency<=1.5ms"]), 4.0) == pytest.approx(1.5)
    assert latency_limit(parse_constraints(["flops<=1M"]), 4.0) is None


def test_an_empty_round_after_a_pick_that_left_the_budget_unused_searches_again_to_fill_it():
    from slimnas.pipeline.config import VerifyConfig
    from slimnas.pipeline.verify import should_fill_search

    cfg, limits = VerifyConfig(), {"latency_ms": 0.21}
    assert cfg.fill_search == 1 and should_fill_search(0.19, limits, 0, True, cfg)
    assert not should_fill_search(None, limits, 0, True, cfg), "no pick left budget unused: nothing to fill"
    assert not should_fill_search(0.19, {}, 0, True, cfg), "no measured budget to search under"
    assert not should_fill_search(0.19, limits, 1, True, cfg), "at most fill_search of them"
    assert not should_fill_search(0.19, limits, 0, False, cfg), "verify called without a search to run"
    assert should_fill_search(0.19, limits, 1, True, VerifyConfig(fill_search=2))
    with pytest.raises(SlimnasError, match="verify.fill_search must be >= 0"):
        VerifyConfig(fill_search=-1)


def test_relative_budgets_hold_for_the_ratio_to_the_original_absolute_ones_for_the_latency():
    ratio = ratio_to_original({"median_ms": 1.0}, {"median_ms": 2.0})
    assert ratio == pytest.approx(0.5)
    assert meets_latency(parse_constraints(["latency<=0.5x"]), 1.2, ratio)
    assert not meets_latency(parse_constraints(["latency<=0.45x"]), 1.2, ratio)
    assert meets_latency(parse_constraints(["latency<=1.2ms", "params<=1M"]), 1.2, ratio)
    assert not meets_latency(parse_constraints(["latency<=1.1ms"]), 1.2, ratio)


def test_demo_takes_a_seed_and_scores_on_a_larger_validation_split(capsys):
    from slimnas.cli import main
    from slimnas.data import load_data

    c = demo_config("runs/x", seed=2).seeded()
    assert c.seed == c.data.seed == c.supernet.train.seed == c.search.seed == 2
    assert len(load_data(c.data).val) >= 400, "a score's standard error about 1 point at 95% top-1"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--seed" in capsys.readouterr().out


def test_verify_state_settings_are_checked():
    from slimnas.pipeline.config import VerifyConfig
    from slimnas.pipeline.verify import StateWait

    assert StateWait.start(VerifyConfig()) is None  # the default: no gate
    wait = StateWait.start(VerifyConfig(state_ms=0.44, state_tol=0.01, state_wait_s=60, state_poll_s=0.01))
    assert not wait.again(0.443, 1) and wait.off(0.4488) == pytest.approx(0.02)
    assert wait.again(0.50, 1), "13.6% slower with time left: wait, then time the round again"
    assert not wait.again(0.40, 1), "a quieter machine than the budget's: nothing to wait for"
    assert not StateWait.start(VerifyConfig(state_ms=0.44, state_wait_s=0)).again(0.50, 1), "no time left"
    for bad, match in [({"state_ms": 0}, "verify.state_ms must be a latency in ms > 0"),
                       ({"state_poll_s": 0}, "verify.state_poll_s > 0"), ({"state_tol": -0.1}, "verify.state_tol")]:
        with pytest.raises(SlimnasError, match=match):
            VerifyConfig(**bad)


def test_a_pick_that_leaves_the_budget_unused_is_by_evidence_when_every_wider_one_was_beaten():
    """_dominated_between: scored subnets between the pick and the measured budget that the tolerant front set
    aside (a cheaper one scored higher beyond the margin) are evidence; one still in the pool is not."""
    import pandas as pd

    from slimnas.pipeline.verify import _dominated_between
    from slimnas.search.pick import NARROWER, WIDER_DOMINATED, narrower_by_evidence

    history = pd.DataFrame({"hash": list("abcd"), "feasible": [True, True, True, False],
                            "latency_ms": [0.20, 0.222, 0.223, 0.2232]})
    pool = history.iloc[:1]  # only the pick survived the tolerant front
    assert _dominated_between(history, pool, 0.2215, {"latency_ms": 0.2239}) == 2  # b, c (d is infeasible)
    assert _dominated_between(history, history.iloc[:2], 0.2215, {"latency_ms": 0.2239}) == 0  # b is in the pool
    assert _dominated_between(history, pool, None, {"latency_ms": 0.2239}) == 0  # no pick left budget unused
    assert narrower_by_evidence(f"the widest ... (the 2 scored candidate(s) ... {WIDER_DOMINATED} 2 paired SE)")
    assert narrower_by_evidence(f"{NARROWER}`x` (90% of the budget) scored ...")
    assert not narrower_by_evidence("the widest candidate that meets the budget (measured; 93% of the budget)")
