"""The headline benchmark's parts: search by measurement, and each peer adapter on a small MobileNetV2."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from headline_lib.bisect import bisect_by_measurement  # noqa: E402
from headline_lib.finetune import flops_params  # noqa: E402
from headline_lib.measure import Meter, architecture_key, onnx_for  # noqa: E402
from headline_lib.methods import METHODS, Context  # noqa: E402
from headline_lib.profiles import get_profile  # noqa: E402

from slimnas.data import DataConfig, load_data  # noqa: E402
from slimnas.errors import BudgetUnreachable, SlimnasError  # noqa: E402
from slimnas.latency.e2e import E2EConfig  # noqa: E402
from tests.conftest import calibrate  # noqa: E402

SHAPE = (3, 32, 32)


def staircase(knob: float) -> float:
    """A latency-like ratio with a cliff: grows with the knob, jumps up by 0.1 above 0.6."""
    return 0.2 + 0.7 * knob + (0.1 if knob > 0.6 else 0.0)


def grid(knob: float) -> float:
    return round(knob * 64) / 64  # candidates come in steps of 1/64, like channel counts


def test_bisect_finds_the_largest_knob_that_meets_the_target():
    calls = []

    def measure(cands):
        calls.append(list(cands))
        return [staircase(c) for c in cands]

    target = 0.75
    found = bisect_by_measurement(grid, str, measure, 0.1, 1.0, target, points=3, steps=3)
    assert staircase(found.candidate) <= target and found.ratio == staircase(found.candidate)
    assert staircase(found.candidate + 2 / 64) > target  # within the search's resolution of the true boundary
    assert len(calls) == 3 and len(calls[0]) == 5  # both ends and 3 points first, then 3 points per step
    assert all(len(set(c)) == len(c) for c in calls)  # an architecture is never measured twice in a run
    measured = [c for run in calls for c in run]
    assert len(measured) == len(set(measured))


def test_bisect_skips_a_point_above_the_cliff_and_confirms_largest_first():
    # The confirmation run sees every point 0.02 slower: the largest passing knob may fail it, the next one wins.
    found = bisect_by_measurement(grid, str, lambda cs: [staircase(c) for c in cs], 0.1, 1.0, 0.6, points=3, steps=3,
                                  confirm=lambda cs: [staircase(c) + 0.02 for c in cs])
    assert found.ratio <= 0.6 and found.ratio == pytest.approx(staircase(found.candidate) + 0.02)
    confirmed = [p for p in found.probes if p.confirm]
    assert confirmed and confirmed[0].knob >= found.knob
    assert all(not p.feasible for p in confirmed if p.knob > found.knob)


def test_bisect_refuses_an_unreachable_budget():
    with pytest.raises(BudgetUnreachable, match="even the smallest setting"):
        bisect_by_measurement(grid, str, lambda cs: [staircase(c) for c in cs], 0.1, 1.0, 0.2)


def small_base() -> nn.Module:
    torch.manual_seed(0)
    return calibrate(torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.25), SHAPE)


def context(tmp_path: Path) -> Context:
    config = DataConfig("digits", image_size=SHAPE[1], train_subset=64, val_subset=32, test_subset=32)
    data = load_data(config)
    profile = get_profile("smoke", calib_images=32, val_subset=32)
    return Context(small_base(), tmp_path / "base.pth", "mobilenet_v2", SHAPE, data, config, profile, torch.device("cpu"),
                   log=lambda m: None)


def test_bisect_on_real_measurements(tmp_path):
    """The uniform method searched by real end-to-end timing: the answer meets its own measured target."""
    ctx = context(tmp_path)
    method = METHODS["uniform"](ctx, tmp_path / "uniform")
    method.prepare()
    meter = Meter(onnx_for(ctx.base, tmp_path, SHAPE, name="base"))

    def measure(models):  # 8 rounds of 20: with 4 of 10 a busy moment once put the quarter-width model at 1.15x the base
        return [m.ratio for m in meter.measure([onnx_for(m, tmp_path, SHAPE) for m in models], E2EConfig(8, 20))[1]]

    found = bisect_by_measurement(method.build, architecture_key, measure, 0.25, 1.0, 0.9, points=1, steps=1)
    assert found.ratio <= 0.9 and found.knob in (0.25, 0.625, 1.0)
    assert len({p.key for p in found.probes}) == 3  # the ends and the middle: three architectures, one run


def test_meter_over_several_processes(tmp_path):
    """With processes=3 the ratio is the median of the three processes' own ratios, and the repeat error is the larger
    of the spread across them and the even-vs-odd disagreement of that median (not of each process alone)."""
    import numpy as np

    ctx = context(tmp_path)
    method = METHODS["uniform"](ctx, tmp_path / "uniform")
    method.prepare()
    meter = Meter(onnx_for(ctx.base, tmp_path, SHAPE, name="base"))
    small = method.build(0.5)
    base, (m,), raw = meter.measure([onnx_for(small, tmp_path, SHAPE)], E2EConfig(3, 5, processes=3))
    assert len(raw["processes"]) == 3
    each = [r["models"][1]["best_round_ms"] / r["models"][0]["best_round_ms"] for r in raw["processes"]]
    assert m.ratio == pytest.approx(float(np.median(each)))
    between = 1.2533 * float(np.std(np.log(each), ddof=1)) / np.sqrt(3) * 100

    def half(h):  # the median over processes of each one's quietest even (h=0) or odd (h=1) round, model over base
        return float(np.median([min(r["models"][1]["round_medians_ms"][h::2]) / min(r["models"][0]["round_medians_ms"][h::2])
                                for r in raw["processes"]]))

    even_odd = abs(half(0) - half(1)) / m.ratio * 100
    assert m.repeat_pct == pytest.approx(max(between, even_odd)) and base.ratio == pytest.approx(1.0)


def check_plain(model: nn.Module, base: nn.Module) -> None:
    """A plain model of the base's class, narrower, with only torch layers, that runs."""
    assert type(model) is type(base)
    assert {type(m) for m in model.modules()} <= {type(m) for m in base.modules()}
    assert model(torch.randn((2,) + SHAPE)).shape == (2, 10)
    assert flops_params(model, SHAPE)[0] < flops_params(base, SHAPE)[0]


def test_uniform_adapter(tmp_path):
    ctx = context(tmp_path)
    m = METHODS["uniform"](ctx, tmp_path)
    m.prepare()
    half = m.build(0.5)
    check_plain(half, ctx.base)
    x = torch.randn((2,) + SHAPE)
    with torch.no_grad():  # full width keeps the base's function (importance order is a permutation)
        assert torch.allclose(m.build(1.0)(x), ctx.base(x), atol=1e-4)
    assert architecture_key(m.build(1.0)) == architecture_key(ctx.base) != architecture_key(half)


def test_torch_pruning_adapter(tmp_path):
    pytest.importorskip("torch_pruning")
    ctx = context(tmp_path)
    m = METHODS["torch-pruning"](ctx, tmp_path)
    m.prepare()
    model = m.build(0.5)
    check_plain(model, ctx.base)
    convs = [c for c in model.modules() if isinstance(c, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)  # round_to=8
    assert model.classifier[-1].out_features == 10


def test_fastnas_adapter(tmp_path):
    pytest.importorskip("modelopt.torch.prune")
    ctx = context(tmp_path)
    m = METHODS["fastnas"](ctx, tmp_path)
    info = m.prepare()
    assert (tmp_path / "sensitivity.pth").is_file() and info["val_images"] == 32
    model = m.build(0.4)
    check_plain(model, ctx.base)
    assert flops_params(model, SHAPE)[0] <= 0.45 * flops_params(ctx.base, SHAPE)[0]


def headline_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("headline", Path(__file__).resolve().parents[1] / "benchmarks" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("args, message", [
    (["--methods", "uniform,bogus"], "unknown method 'bogus'"),
    (["--methods", "uniform", "--weights", "missing.pth"], "base checkpoint missing.pth not found"),
    (["--methods", ","], "no methods given"),
    # the arguments are checked before the files they name: a clone without ../shared has no default checkpoint
    (["--methods", "uniform,bogus", "--weights", "missing.pth"], "unknown method 'bogus'"),
    (["--methods", ",", "--weights", "missing.pth"], "no methods given"),
    # arm variants (ablations): an unknown field, a bad number, a peer as the arm, no field, a bad teacher
    (["--methods", "slimnas-bsnas:foo=1"], "arm setting 'foo=1': write KEY=VALUE with KEY one of"),
    (["--methods", "slimnas-bsnas:verify_fill=abc"], "verify_fill needs a number"),
    (["--methods", "uniform:verify_fill=0.9"], "with ARM one of slimnas-sandwich"),
    (["--methods", "slimnas-bsnas:"], "name at least one KEY=VALUE"),
    (["--methods", "slimnas-bsnas:supernet_teacher=teacher"], "choose from none, original, both"),
    (["--methods", "slimnas-bsnas:kernel_sizes=3-4"], "kernel_sizes='3-4': write odd sizes joined by '-'"),
    (["--methods", "slimnas-bsnas:kernel_sizes=3,5"], "unknown method '5'"),  # a comma separates methods
    (["--methods", "uniform", "--budgets", "0.5,1.5"], "--budgets '0.5,1.5': give distinct fractions"),
    # per-method budgets and INT8
    (["--methods", "uniform@0.3", "--budgets", "0.5"], "0.3 is not among --budgets (0.5); add it there"),
    (["--methods", "uniform@x"], "write METHOD@FRACTION[/FRACTION]"),
    (["--methods", "uniform+int8+int8"], "+int8 once, at the end of the name"),
    (["--methods", "uniform", "--int8", "--int8-calibration", "0"], "--int8-calibration 0: give at least 1"),
    (["--methods", "uniform", "--closing-processes", "0"], "--closing-processes 0: give a positive number"),
    (["--methods", "uniform", "--state-tol", "-1"], "--state-tol -1 / --state-wait None: give numbers >= 0"),
    (["--methods", "uniform", "--state-wait", "-5"], "--state-wait -5.0: give numbers >= 0"),
])
def test_bad_input_is_one_line_error_and_leaves_no_folder(tmp_path, capsys, args, message):
    work, out = tmp_path / "work", tmp_path / "out"
    assert headline_main()(["--smoke", *args, "--work", str(work), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("headline: error: ") and message in err[-1]
    assert not work.exists() and not out.exists()


class Clock:
    """Time that passes only when the code under test sleeps or a probe runs (``cost`` seconds each)."""

    def __init__(self, cost: float = 15.0):
        self.t, self.cost, self.slept = 0.0, cost, []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s

    def probes(self, values):
        it = iter(values)

        def probe():
            self.t += self.cost
            return next(it)
        return probe


def test_state_gate_waits_for_the_budgets_state_and_gives_up_at_its_deadline():
    from headline_lib.measure import StateGate, await_state

    gate = StateGate(tol_pct=1.0, wait_s=600, poll_s=120)
    assert gate.within(0.4462, 0.4422) and not gate.within(0.4479, 0.4422)  # +0.9% in, +1.3% out
    assert gate.within(0.4305, 0.4422), "a quieter machine (-2.6%) is as good: only slower states raise the ratios"
    clock, log = Clock(), []
    polls = await_state(clock.probes([0.525, 0.47, 0.445]), 0.4422, gate, clock() + gate.wait_s, log.append, clock,
                        clock.sleep)
    assert [round(p["off_pct"], 1) for p in polls] == [18.7, 6.3, 0.6] and clock.slept == [120, 120]
    assert "probing again in 120 s" in log[0] and len(log) == 2  # nothing logged once it is back
    # never back: it stops before a sleep would pass the deadline, and says so
    clock, log = Clock(), []
    polls = await_state(clock.probes([0.52] * 10), 0.4422, gate, clock() + gate.wait_s, log.append, clock, clock.sleep)
    assert len(polls) == 5 and clock() <= gate.wait_s + clock.cost and "no time left to wait" in log[-1]
    # no time to wait (the default, and --smoke) or no gate: nothing is probed
    for g in (StateGate(tol_pct=1.0, wait_s=0), StateGate(tol_pct=0, wait_s=600)):
        clock = Clock()
        assert await_state(clock.probes([]), 0.4422, g, clock() + g.wait_s, print, clock, clock.sleep) == []
    assert StateGate(tol_pct=0).within(9.0, 0.4422)
    with pytest.raises(ValueError, match="poll_s > 0"):
        StateGate(poll_s=0)


def test_a_closing_run_off_the_budgets_state_is_timed_again_and_its_state_recorded():
    from headline_lib.measure import StateGate, in_state

    gate = StateGate(tol_pct=1.0, wait_s=3600, poll_s=120, closing_runs=2)
    clock = Clock()
    runs = iter([0.50, 0.4440])  # the first closing run's own base drifted off; the second is back

    def closing():
        clock.t += 300
        base = next(runs)
        return base, f"run at {base}"

    result, state = in_state(closing, clock.probes([0.445, 0.4425]), 0.4422, gate, print, clock, clock.sleep)
    assert result == "run at 0.444" and state["within"] and state["closing_runs_base_ms"] == [0.50, 0.4440]
    assert len(state["probes"]) == 2 and state["off_pct"] == pytest.approx(0.407, abs=1e-3)
    # still off after closing_runs: the last run is kept and its shares are marked not decided
    clock, log = Clock(), []
    runs = iter([0.50, 0.49])
    result, state = in_state(closing, clock.probes([0.44, 0.44]), 0.4422, gate, log.append, clock, clock.sleep)
    assert result == "run at 0.49" and not state["within"] and "not decided" in log[-1]


def test_results_md_says_whether_the_closing_run_decides_budget_shares():
    from headline_lib.report import state_line

    def results(base_ms, state=None):
        return {"budgets": {"base": {"latency_ms": 0.4422}},
                "final_timing": {"base": {"latency_ms": base_ms}, **({"state": state} if state else {})}}

    assert "no state gate recorded" in state_line(results(0.4479))  # a run from before the gate
    assert "not more than the gate's 1% slower, so budget shares are decided" in state_line(
        results(0.4393, {"tol_pct": 1.0, "within": True, "probes": [], "closing_runs_base_ms": [0.4393]}))
    off = state_line(results(0.525, {"tol_pct": 1.0, "within": False, "probes": [{}] * 3,
                                     "closing_runs_base_ms": [0.52, 0.525]}))
    assert "+18.7% from its 0.4422 ms" in off and "SLOWER" in off and "not decided" in off and "3 probe(s)" in off


def test_ratio_statistics():
    from headline_lib.measure import ratio_stats

    model, base = [2.0, 3.0, 2.2, 2.9], [4.0, 5.0, 4.4, 5.8]
    r, p10, p90, repeat = ratio_stats(model, base, "best_round")
    assert r == pytest.approx(0.5) and repeat == pytest.approx(16.0)  # quietest: 2.0/4.0 (even rounds), 2.9/5.0 (odd)
    r, p10, p90, repeat = ratio_stats(model, base, "median")
    assert r == pytest.approx(0.5) and p10 <= r < p90 and repeat == pytest.approx(10.0)  # even 0.5, odd 0.55


@pytest.mark.parametrize("flag, value, hint", [(flag, v, hint) for flag, values, hint in [
    ("--finetune", ["4y300", "0x100", "4x0", "x", "4x-1"], "EPOCHSxSTEPS"),
    ("--seeds", ["", "a,b", "0,0", "-1", "1,,x"], "0,1,2"),
] for v in values])
def test_bad_finetune_length_or_seeds_is_one_line_error(tmp_path, capsys, flag, value, hint):
    work, out = tmp_path / "work", tmp_path / "out"
    assert headline_main()(["--smoke", "--methods", "uniform", flag, value, "--work", str(work), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"headline: error: {flag}") and hint in err[-1]
    assert not work.exists() and not out.exists()


def test_finetune_recipe_is_separate_from_search_settings():
    quick = get_profile("quick")
    short = get_profile("quick", finetune="4x100", distill=False)
    assert (short.finetune.epochs, short.finetune.steps_per_epoch, short.distill) == (4, 100, False)
    assert get_profile("quick", finetune="2xall").finetune.steps_per_epoch is None
    # another fine-tune recipe: another label (its own folders), the same searches and supernets
    assert quick.finetune_label() != short.finetune_label() and short.finetune_label().startswith("ft4x100-")
    assert quick.finetune_label().startswith("ft4x300-kd-")
    assert quick.search_settings() == short.search_settings()
    # a change that the supernet training sees is a change of search settings
    from dataclasses import replace

    wider_batch = replace(quick, finetune=replace(quick.finetune, batch_size=128))
    assert wider_batch.search_settings() != quick.search_settings()


def test_more_closing_processes_reuse_the_work_folders_searches(tmp_path):
    """The closing run times finished models: another process count is not another search (the work folder is
    accepted, an older settings.json that still records the closing run included), while the fine-tune's batch is."""
    import json
    from dataclasses import replace

    from headline_lib.runner import Run, RunOptions

    quick = get_profile("quick")
    more = replace(quick, final_timing=replace(quick.final_timing, processes=20))
    assert more.search_settings() == quick.search_settings()

    def check(profile):
        Run(RunOptions(profile=profile, out=tmp_path / "out", work=tmp_path, methods=("uniform",),
                       weights=tmp_path / "base.pth")).check_settings()

    old = {"profile": {**json.loads(json.dumps(quick.search_settings(), default=str)),
                       "final_timing": {"rounds": 12, "samples_per_round": 30, "processes": 5}},
           "weights": str(tmp_path / "base.pth"), "train_base": False}
    (tmp_path / "settings.json").write_text(json.dumps(old))
    check(more)
    check(quick)
    with pytest.raises(SlimnasError, match="holds a run with other settings"):
        check(replace(quick, finetune=replace(quick.finetune, batch_size=128)))


def test_a_seed_reaches_the_slimnas_arms_supernet_and_search(tmp_path):
    """The seed is more than a folder name: the supernet's training config and slim's search both get it."""
    from dataclasses import replace

    from headline_lib.methods import Budget

    ctx = replace(context(tmp_path), seed=3, work=tmp_path)
    arm = METHODS["slimnas-bsnas"](ctx, tmp_path / "slimnas-bsnas" / "seed3")
    arm.table = tmp_path / "table"
    assert METHODS["slimnas-bsnas"].seeded and not METHODS["uniform"].seeded and not METHODS["fastnas"].seeded
    assert arm.train_config().seed == 3 and arm.slim_config(Budget(0.5, 0.485, 1.0)).seed == 3
    assert arm.strategy_options()["teacher"] == "original"  # the frozen base teaches the supernet, as slim does
    assert replace(ctx, seed=4) != ctx


def test_an_arm_variant_changes_its_settings_and_shares_the_supernet_it_does_not_change(tmp_path):
    """An ablation's variants run beside the arm: their overrides reach the supernet's training and slim's pick, a
    variant that changes only the search reuses the arm's supernet (same seed), one that changes training has its own."""
    from dataclasses import replace

    from headline_lib.methods import Budget, get_method, is_arm

    ctx = replace(context(tmp_path), seed=1, work=tmp_path)
    budget = Budget(0.5, 0.485, 1.0)

    def arm(name):
        a = get_method(name)(ctx, tmp_path / name / "seed1")
        a.table = tmp_path / "table"
        return a

    plain = arm("slimnas-bsnas")
    pick = arm("slimnas-bsnas:verify_margin_se=0:verify_fill=0.9")
    teacher = arm("slimnas-bsnas:supernet_teacher=none:verify_margin_se=0")
    assert get_method("slimnas-bsnas") is METHODS["slimnas-bsnas"] and is_arm(pick.name) and not is_arm("fastnas")
    v = pick.slim_config(budget).verify
    assert (v.margin_se, v.fill) == (0.0, 0.9) and plain.slim_config(budget).verify.margin_se == 2.0
    assert pick.supernet_dir == plain.supernet_dir == tmp_path / "slimnas-bsnas" / "seed1" / "supernet"
    assert teacher.supernet_dir == tmp_path / "slimnas-bsnas" / "seed1" / "supernet[supernet_teacher=none]"
    assert teacher.strategy_options()["teacher"] == "none" and plain.strategy_options()["teacher"] == "original"
    assert teacher.slim_config(budget).supernet.run == str(teacher.supernet_dir)
    # the BS-NAS shrink schedule follows a variant's own supernet length
    short = arm("slimnas-bsnas:supernet_epochs=1:supernet_steps_per_epoch=6")
    assert short.train_config().epochs == 1 and short.strategy_options()["shrink_every"] == 1
    # elastic depth and kernels (issue 16): the space slim searches, and a supernet of their own
    joint = arm("slimnas-bsnas:depth=1:kernel_sizes=3-5-7")
    assert (joint.space().depth, joint.space().kernel_sizes) == (True, (3, 5, 7))
    assert (plain.space().depth, plain.space().kernel_sizes) == (False, ())
    assert joint.supernet_dir.name == "supernet[depth=1:kernel_sizes=3-5-7]"
    assert ctx.profile.slimnas.supernet_teacher == "original"  # the profile itself is untouched


def result_row(method, fraction, seed, top1, ratio):
    return {"method": method, "budget": f"{fraction:g}x", "fraction": fraction, "seed": seed, "test_top1": top1,
            "latency_ratio": ratio, "meets_budget": ratio <= fraction}


def test_summary_is_mean_and_sd_over_seeds_of_the_models_that_met_their_budget():
    from headline_lib.report import goal_lines, paired, paired_lines, row_name, summary

    rows = [result_row("fastnas", 0.5, s, t, 0.45) for s, t in enumerate((0.70, 0.72, 0.74))]
    rows += [result_row("slimnas-bsnas", 0.5, s, t, r) for s, (t, r) in enumerate(((0.75, 0.49), (0.77, 0.46), (0.99, 0.51)))]
    g = {x["method"]: x for x in summary(rows)}
    assert g["fastnas"]["top1_mean"] == pytest.approx(72.0) and g["fastnas"]["top1_sd"] == pytest.approx(2.0)
    # seed 2 of the arm missed its budget (0.51x): it counts in the ratio columns, never in the accuracy
    assert (g["slimnas-bsnas"]["met"], g["slimnas-bsnas"]["n"]) == (2, 3) and g["slimnas-bsnas"]["top1_mean"] == pytest.approx(76.0)
    assert g["slimnas-bsnas"]["ratio_max"] == pytest.approx(0.51)
    assert len({row_name(r) for r in rows}) == len(rows)  # one name per seed in the closing timing run
    lines = goal_lines(rows, base_top1=0.77)
    half = next(line for line in lines if line.startswith("- 0.5x"))
    assert "MET" in half and "difference +4.00 pt" in half  # 76 - 72 >= 1.5, and 76 >= 77 - 1.5
    assert "MISSED" in goal_lines([r for r in rows if r["method"] != "fastnas"], 0.77)[0]  # no FastNAS: not met
    spend = lines[-1]
    assert spend.startswith("- Every slimnas model at >= 95% of its budget, unless evidence says otherwise: 2 of 3")
    assert "slimnas-bsnas@0.5x#1" in spend
    # the same seeds paired: +5, +5 over the two seeds where both met the budget (seed 2 of the arm missed it)
    assert paired(rows, "slimnas-bsnas", "fastnas", 0.5) == pytest.approx({0: 5.0, 1: 5.0})
    assert "paired by seed +5.00 (s.e. 0.00; seeds 0, 1: +5.00, +5.00)" in half
    table = paired_lines(rows)
    assert table[0] == "## Paired differences to fastnas (same seed)" and "| slimnas-bsnas | 0.5x | +5.00" in table[-2]
    assert paired_lines([r for r in rows if r["method"] != "fastnas"]) == []
    # a share below 95%: short beyond its timing error only when two repeat errors do not reach 95%
    for r, rep in zip(rows[3:5], (1.0, 3.0)):
        r["repeat_pct"] = rep
    rows[3]["latency_ratio"] = rows[4]["latency_ratio"] = 0.45  # 90% of the budget: +2% stays short, +6% does not
    spend = goal_lines(rows, base_top1=0.77)[-1]
    assert "below: slimnas-bsnas@0.5x#0 90.0% (± 1.0%), slimnas-bsnas@0.5x#1 90.0% (± 3.0%); of these 1 below" in spend
    # a narrower pick that won on its score is under the share by evidence: listed apart, not counted short
    rows[3]["narrower_by_evidence"] = True
    spend = goal_lines(rows, base_top1=0.77)[-1]
    assert ": 2 of 3 (1 of them below it by evidence: slimnas-bsnas@0.5x#0 90.0%" in spend
    assert "below: slimnas-bsnas@0.5x#1 90.0% (± 3.0%); of these 0 below" in spend


def test_an_arms_row_carries_its_slim_runs_pick(tmp_path):
    """slim_pick reads the pick the slim run reported (search.json's info); a reason that starts with a narrower
    candidate's win is evidence (the sentence slimnas.search.pick writes)."""
    import json

    from headline_lib.methods.slimnas_arms import slim_pick
    from slimnas.search.pick import choose

    assert slim_pick(tmp_path) == {}  # no search.json: nothing to say
    score = [0.80, 0.70]  # the narrower "a" scores 10 points above the wider "b", SE 1 point
    pick = choose(["a", "b"], [0.20, 0.21], [0.90, 0.95], lambda i, j: (score[i] - score[j], 0.01), 2.0)
    assert pick.narrower_by_evidence and pick.index == 0
    (tmp_path / "search.json").write_text(json.dumps({"info": {"chosen": {"hash": "a", "pick_reason": pick.reason}}}))
    assert slim_pick(tmp_path) == {"pick_reason": pick.reason, "narrower_by_evidence": True}
    widest = choose(["a", "b"], [0.20, 0.21], [0.90, 0.95], lambda i, j: (0.0, 0.01), 2.0)
    (tmp_path / "search.json").write_text(json.dumps({"info": {"chosen": {"pick_reason": widest.reason}}}))
    assert slim_pick(tmp_path)["narrower_by_evidence"] is False


def test_an_int8_method_shares_its_fp32_twins_work_and_searches_int8_latency(tmp_path):
    """``METHOD+int8``: the FP32 method's sensitivity map or supernet, an INT8 latency target, and one suffix only."""
    from dataclasses import replace

    from headline_lib.methods import Budget, get_method, is_arm

    ctx = replace(context(tmp_path), work=tmp_path)
    fast = get_method("fastnas+int8")(ctx, tmp_path / "fastnas+int8")
    assert (fast.dtype, fast.name, fast.shared_folder) == ("int8", "fastnas+int8", tmp_path / "fastnas")
    assert METHODS["fastnas"](ctx, tmp_path / "fastnas").shared_folder == tmp_path / "fastnas"
    budget = Budget(0.3, 0.291, 1.0)
    for name in ("slimnas-bsnas", "slimnas-bsnas:verify_fill=0.9"):
        fp32 = get_method(name)(ctx, tmp_path / name / "seed0")
        int8 = get_method(name + "+int8")(ctx, tmp_path / (name + "+int8") / "seed0")
        for a in (fp32, int8):
            a.table = tmp_path / "table"
        assert int8.supernet_dir == fp32.supernet_dir == tmp_path / "slimnas-bsnas" / "seed0" / "supernet"
        assert is_arm(int8.name) and int8.slim_config(budget).latency.dtype == "int8"
        assert fp32.slim_config(budget).latency.dtype == "fp32"
        assert int8.slim_config(budget).verify.fill == fp32.slim_config(budget).verify.fill
    with pytest.raises(SlimnasError, match=r"\+int8 once"):
        get_method("fastnas+int8+int8")


def test_the_meter_times_an_int8_graph_beside_the_fp32_base(tmp_path):
    """``dtypes=["int8"]``: the worker quantizes the FP32 file and times it in the same rounds as the FP32 base."""
    ctx = context(tmp_path)
    method = METHODS["uniform"](ctx, tmp_path / "uniform")
    method.prepare()
    meter = Meter(onnx_for(ctx.base, tmp_path, SHAPE, name="base"))
    small = onnx_for(method.build(0.5), tmp_path, SHAPE)
    base, (fp32, int8), raw = meter.measure([small, small], E2EConfig(3, 5), dtypes=["fp32", "int8"])
    assert [m["dtype"] for m in raw["models"]] == ["fp32", "fp32", "int8"]
    assert base.ratio == pytest.approx(1.0) and fp32.ratio > 0 and int8.ratio > 0 and int8.ratio != fp32.ratio


def test_deployed_scores_run_the_fp32_and_int8_graphs_in_onnxruntime(tmp_path):
    """The deployed graphs of a model: the FP32 one scores what the torch model scores (BN re-estimated alike), the
    INT8 one is a real QDQ graph, calibrated on training images and scored on every test image."""
    from headline_lib.finetune import deployed_scores, test_evaluator

    from slimnas.quantize import int8_ops

    ctx = context(tmp_path)
    evaluator = test_evaluator(ctx.data, 32, torch.device("cpu"))
    d = deployed_scores(ctx.base, tmp_path / "dep", evaluator, ctx.data, 16, torch.device("cpu"))
    assert d["onnx_test_images"] == 32 and d["int8_calibration_images"] == 16
    assert d["onnx_fp32_test_top1"] == pytest.approx(evaluator.evaluate_model(ctx.base).top1, abs=1 / 32 + 1e-9)
    ops = int8_ops(d["int8_onnx"])
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    assert 0.0 <= d["int8_test_top1"] <= 1.0


def test_int8_rows_are_judged_against_their_own_goals():
    """Issue 15's goals judge the INT8-aware arms only; the FP32 goals never count an INT8 or chained row."""
    from headline_lib.report import INT8_GOALS, goal_lines, int8_aware

    rows = [result_row("fastnas+int8", 0.3, 0, 0.70, 0.29), result_row("slimnas-bsnas+int8", 0.3, 0, 0.725, 0.295),
            result_row("slimnas-bsnas+int8", 0.5, 0, 0.765, 0.49), result_row("slimnas-bsnas→int8", 0.5, 0, 0.99, 0.40),
            result_row("slimnas-bsnas", 0.5, 0, 0.74, 0.49), result_row("fastnas", 0.5, 0, 0.73, 0.47)]
    lines = {line[2:6]: line for line in goal_lines(rows, 0.77, INT8_GOALS, int8_aware)}
    assert "MET" in lines["0.5x"] and "slimnas-bsnas+int8 76.50" in lines["0.5x"]
    assert "MET" in lines["0.3x"] and "difference +2.50 pt" in lines["0.3x"]
    assert "not judged" in lines["0.4x"]  # no INT8 row at 0.4x
    fp32 = goal_lines(rows, 0.77)
    assert "best arm slimnas-bsnas 74.00" in fp32[0] and "MISSED" in fp32[0]  # the chained 99% row is not an arm


@torch.no_grad()
def test_plain_copy_keeps_dropped_blocks_and_changed_kernels():
    """What every method hands to fine-tuning: the original class with the subnet's widths, its dropped blocks as
    nn.Identity and its kernel sizes (a 5x5 depthwise conv the search chose used to fail to load)."""
    import random

    import slimnas
    from headline_lib.methods.base import plain_copy
    from slimnas.export import export_subnet

    base = calibrate(torchvision.models.mobilenet_v2(num_classes=10), SHAPE)
    net = slimnas.convert(base, 32, depth=True, kernel_sizes=(3, 5)).eval()
    rng = random.Random(0)
    subnet = next(s for s in (net.space.sample(rng) for _ in range(500))
                  if net.space.dropped(s) and any(v == 5 for v in s.kernels.values()))
    exported = export_subnet(net, subnet)
    copy = plain_copy(base, exported)
    assert type(copy) is type(base) and any(type(m) is nn.Identity for m in copy.modules())
    assert any(m.kernel_size == (5, 5) for m in copy.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(2, *SHAPE)
    assert float((copy(x) - exported(x)).abs().max()) <= 1e-5
