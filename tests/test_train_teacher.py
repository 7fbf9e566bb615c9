"""A frozen teacher (the original model) for the width strategies: its term in the loss, its weights untouched,
kept out of the optimiser and the checkpoints, and an exact resume."""
from __future__ import annotations

import contextlib
import copy
import csv
import random

import pytest
import torch

import slimnas
from slimnas import SlimnasError
from slimnas.data import DataConfig, load_data
from slimnas.train import StepContext, TrainConfig, Trainer, make_strategy
from slimnas.train.strategies.base import distill_loss, soft_ce
from tests.conftest import calibrate
from tests.nets import TinyNet


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits", image_size=16))


def original():
    torch.manual_seed(0)
    model = calibrate(TinyNet(10), (3, 16, 16))
    model.drop.p = 0.0  # dropout would make two forwards of one subnet differ
    return model.eval()


def batch(data, n=32):
    x = torch.stack([data.calib[i][0] for i in range(n)])
    y = torch.tensor([data.calib[i][1] for i in range(n)])
    return x, y


def ctx_for(net, teacher_logits, seed=0):
    return StepContext(net, lambda loss: loss.backward(), contextlib.nullcontext, lambda t: t, random.Random(seed), 0.0, 0,
                       teacher=teacher_logits)


def perturbed(model, seed=1):
    """A different network than the teacher (else the supernet's widest equals it and KL is 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("name", ["sandwich", "cafenet", "bsnas"])
def test_alpha_one_widest_loss_is_the_kl_to_the_teacher(digits, name):
    teacher = original()
    net = slimnas.convert(perturbed(copy.deepcopy(teacher)), 16)
    st = make_strategy(name, net, teacher="original", teacher_alpha=1.0, temperature=2.0, n_random=1)
    x, y = batch(digits)
    with torch.no_grad():
        t_out = teacher(x)
        net.train()
        net.set_subnet(net.space.max())
        w_out = net(x)
    m = st.step(x, torch.zeros_like(y), ctx_for(net, t_out))  # the labels must not matter at alpha 1
    want = float(distill_loss(w_out, t_out, 2.0))
    assert want > 1e-3
    assert m["loss_widest"] == pytest.approx(want, rel=1e-4)
    assert m["loss_teacher"] > 0


def test_both_mixes_in_place_and_teacher_for_the_students(digits):
    teacher = original()
    net = slimnas.convert(perturbed(copy.deepcopy(teacher)), 16)
    st = make_strategy("sandwich", net, teacher="both", teacher_alpha=0.25, temperature=3.0, n_random=0)
    x, y = batch(digits)
    net.train()
    with torch.no_grad():
        t_out = teacher(x)
        net.set_subnet(net.space.max())
        target = net(x).float().softmax(-1)
        net.set_subnet(net.space.min())
        n_out = net(x)
    m = st.step(x, y, ctx_for(net, t_out))
    want = 0.75 * float(soft_ce(n_out, target)) + 0.25 * float(distill_loss(n_out, t_out, 3.0))
    assert m["loss_narrowest"] == pytest.approx(want, rel=1e-4)


def test_teacher_options_are_checked_at_make_strategy(digits):
    net = slimnas.convert(original(), 16)
    for opts, words in [({"teacher": "orig"}, "teacher must be one of none, original, both"),
                        ({"teacher_alpha": 1.5}, "teacher_alpha must be in [0, 1]"),
                        ({"temperature": 0.0}, "temperature must be positive"),
                        ({"teacher": "both", "distill": False}, "teacher=both")]:
        with pytest.raises(SlimnasError, match=words.replace("[", r"\[").replace("]", r"\]")) as e:
            make_strategy("cafenet", net, **opts)
        assert "\n" not in str(e.value)


def test_a_teacher_strategy_without_a_teacher_is_refused(digits):
    net = slimnas.convert(original(), 16)
    st = make_strategy("sandwich", net, teacher="original")
    with pytest.raises(SlimnasError, match="none was given") as e:
        Trainer(net, st, digits, TrainConfig(batch_size=32, eval_images=0, progress=False), device="cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(SlimnasError, match="shares weights"):
        Trainer(net, st, digits, TrainConfig(batch_size=32, eval_images=0, progress=False), device="cpu", teacher=net)


class _Killed(Exception):
    pass


class _KilledAfterFirstEpoch(Trainer):
    """Stops the run right after its first checkpoint, as a kill -9 after that write would."""

    def save_checkpoint(self) -> None:
        super().save_checkpoint()
        if self.epoch == 1:
            raise _Killed


def _run(digits, run_dir, cls=Trainer, resume=False):
    teacher = original()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(0)
    net = slimnas.convert(perturbed(copy.deepcopy(teacher)), 16)
    st = make_strategy("sandwich", net, teacher="both", teacher_alpha=0.5, n_random=1)
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=32, lr=0.05, eval_images=0, progress=False)
    trainer = cls(net, st, digits, cfg, run_dir=run_dir, device="cpu", teacher=teacher)
    try:
        trainer.fit(resume=resume)
    except _Killed:
        pass
    return trainer, teacher, before


def _losses(run_dir):
    with open(run_dir / "steps.csv") as f:
        return [(int(r["step"]), float(r["loss"]), float(r["loss_teacher"])) for r in csv.DictReader(f)]


def test_training_with_a_teacher_leaves_it_untouched_and_resumes_exactly(digits, tmp_path):
    trainer, teacher, before = _run(digits, tmp_path / "ref")
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the teacher's weights and BN statistics must not move"
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in teacher.parameters()}
    ck = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    assert set(ck["model"]) == set(trainer.model.state_dict()), "the checkpoint holds the supernet only"
    assert ck["teacher_digest"] == trainer.teacher_digest
    ref = _losses(tmp_path / "ref")
    assert [r[0] for r in ref] == list(range(1, 7)) and all(r[2] > 0 for r in ref)

    killed = tmp_path / "killed"
    first, _, _ = _run(digits, killed, _KilledAfterFirstEpoch)
    assert first.step == 3
    _run(digits, killed, resume=True)
    got = _losses(killed)
    assert [r[0] for r in got] == [r[0] for r in ref]
    for (s, la, ka), (_, lb, kb) in zip(got, ref):
        assert la == pytest.approx(lb, abs=1e-5) and ka == pytest.approx(kb, abs=1e-5), s


def test_resume_with_another_teacher_is_refused(digits, tmp_path):
    _run(digits, tmp_path / "run", _KilledAfterFirstEpoch)
    teacher = perturbed(original(), seed=7)
    net = slimnas.convert(perturbed(original()), 16)
    st = make_strategy("sandwich", net, teacher="both", n_random=1)
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=32, lr=0.05, eval_images=0, progress=False)
    trainer = Trainer(net, st, digits, cfg, run_dir=tmp_path / "run", device="cpu", teacher=teacher)
    with pytest.raises(SlimnasError, match="another teacher") as e:
        trainer.fit(resume=True)
    assert "\n" not in str(e.value)


# -- slim's supernet stage and `slimnas train` --------------------------------------------------------------------
def test_slim_supernet_stage_learns_from_the_original_when_there_are_weights(capsys, tmp_path):
    from slimnas.cli import main
    from slimnas.pipeline.config import SlimConfig, SupernetConfig, config_from_dict
    from slimnas.pipeline.training import supernet_spec
    from tests.slim_helpers import write_config

    default = SupernetConfig().teacher
    assert default in ("original", "both"), "the default is a frozen teacher (see benchmarks/results/supernet_curve)"
    cfg = SlimConfig()
    assert supernet_spec(cfg, "w.pth", 10).strategy_options["teacher"] == default
    assert supernet_spec(cfg, None, 10).strategy_options["teacher"] == "none", "no weights: no teacher worth learning from"
    off = config_from_dict({"supernet": {"teacher": "none", "options": {"teacher_alpha": 0.7}}})
    assert supernet_spec(off, "w.pth", 10).strategy_options == {"teacher": "none", "teacher_alpha": 0.7}
    with pytest.raises(SlimnasError, match="supernet: teacher must be one of none, original, both") as e:
        config_from_dict({"supernet": {"teacher": "teach"}})
    assert "\n" not in str(e.value)
    given = config_from_dict({"supernet": {"options": {"teacher": "original"}}})  # e.g. a reused run's options
    assert supernet_spec(given, "w.pth", 10).strategy_options["teacher"] == "original"
    assert main(["slim", "--config", str(write_config(tmp_path)), "--print-config"]) == 0
    import yaml

    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["supernet"]["teacher"] == default


def test_train_run_with_a_teacher_option_builds_the_original_as_teacher(tmp_path):
    from slimnas.train.run import RunSpec, train

    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(original().state_dict(), weights)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=32, eval_images=0, progress=False)
    spec = RunSpec(model="tests.nets:tiny_net", weights=str(weights), input_size=16, data=DataConfig("digits"),
                   strategy="sandwich", strategy_options={"teacher": "both", "n_random": 1}, train=cfg)
    trainer = train(spec, tmp_path / "run")
    assert trainer.teacher is not None and not trainer.teacher.training
    with open(tmp_path / "run" / "steps.csv") as f:
        assert all(float(r["loss_teacher"]) > 0 for r in csv.DictReader(f))
    bare = RunSpec(model="tests.nets:tiny_net", input_size=16, data=DataConfig("digits"), strategy="sandwich",
                   strategy_options={"teacher": "original"}, train=cfg)
    with pytest.raises(SlimnasError, match="no weights") as e:
        train(bare, tmp_path / "bare")
    assert "\n" not in str(e.value)
