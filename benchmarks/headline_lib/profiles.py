"""The three sizes of the headline benchmark: ``smoke`` (plumbing), ``quick`` (2-core CPU), ``full`` (GPU)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from slimnas.errors import SlimnasError
from slimnas.latency.e2e import E2EConfig
from slimnas.train import TrainConfig


@dataclass(frozen=True)
class SectionConfig:
    """How a knob is searched by measurement (see :func:`~.bisect.bisect_by_measurement`)."""

    points: int = 3  # knob values measured per step, in one fresh timing process (1 = plain bisection)
    steps: int = 3  # steps; the interval shrinks by (points + 1) each step
    margin: float = 0.03  # aim this far below the budget so the final re-measurement still meets it
    # three fresh processes per timing (E2EConfig.processes): one process's ratios were off by up to 20% on a shared
    # 2-core VM while its rounds agreed (benchmarks/results/timing_processes/); as many rounds in all as before
    step_timing: E2EConfig = field(default_factory=lambda: E2EConfig(rounds=8, samples_per_round=20, processes=3))
    confirm_timing: E2EConfig = field(default_factory=lambda: E2EConfig(rounds=14, samples_per_round=25, processes=3))


@dataclass(frozen=True)
class SlimnasArmConfig:
    """Budget of the slimnas arms (supernet training, search, verification), the same for the three strategies."""

    supernet_epochs: int = 1
    supernet_steps_per_epoch: Optional[int] = None  # None: the whole training split each epoch
    supernet_lr: float = 0.002
    latency_bins: int = 4  # latency-sensitive bins: candidate widths per group
    population: int = 50  # evolutionary search
    generations: int = 20
    search_minutes: float = 5.0  # wall-time cap of one search (one budget)
    calib_images: int = 512  # BN re-estimation per scored subnet during search
    verify_rounds: int = 20  # the pipeline's end-to-end verification of its best candidates
    verify_samples: int = 400
    # The supernet's frozen teacher, as slim's supernet.teacher: none (in-place distillation from the widest only),
    # original (the base checkpoint teaches every sampled subnet) or both. "original" is slim's default, chosen from
    # benchmarks/results/supernet_curve (at 400 steps it scored the median subnet +1.3 pt over in-place, inside noise).
    supernet_teacher: str = "original"
    # slim's verify.fill: a pick below this share of the search target (the budget less the section margin, 3%)
    # starts another verification round closer to it; 0.98 of 0.97 is the 95% of the budget issue 13 asks for
    verify_fill: float = 0.98
    verify_rounds_max: int = 4  # slim's verify.rounds
    # slim's verify.margin_se: a narrower candidate wins over a wider one only by more than this many paired standard
    # errors (0: the best score that fits the budget, the pick before issue 13's rule)
    verify_margin_se: float = 2.0
    # slim's verify.fill_search: when the pick leaves the budget unused and no scored candidate lies between it and
    # the budget, search again to fill it. 0 here keeps the committed headline rows reproducible (they ran without it);
    # the variant ARM:verify_fill_search=1 measures it (benchmarks/results/headline/ladder-xeon/)
    verify_fill_search: int = 0
    # slim's verify.state_ms: 1 gives it the base's latency when the headline's budgets were set, so each verification
    # round waits (up to verify_state_wait_s in all) for the machine state the budgets were set in, within
    # verify_state_tol, as the closing run does (headline_lib.measure.StateGate); 0 keeps the committed rows' settings
    verify_state: int = 0
    verify_state_tol: float = 0.01
    verify_state_wait_s: float = 600.0
    # slim's search.sensitivity_levels: widths probed per group for the sensitivity seeds of the evolutionary search's
    # initial population (0: random start, the search before the seeds; 3, slim's default: +4.0 pt at 0.5x in
    # benchmarks/results/headline/terms)
    search_sensitivity_levels: int = 3
    # 1: elastic depth beside width (SpaceConfig.depth: each stage of skippable residual blocks keeps its first k
    # blocks; issue 16); its own supernet and latency table
    depth: int = 0
    # the depthwise convs' kernel choices, "-"-separated ("3-5-7"; SpaceConfig.kernel_sizes, issue 16): the checkpoint's
    # kernel is broadened with a zero border; "" keeps every kernel as it is. Its own supernet and latency table
    kernel_sizes: str = ""

    def kernels(self) -> tuple[int, ...]:
        """:attr:`kernel_sizes` as a tuple of ints (empty: fixed kernels)."""
        return tuple(int(k) for k in self.kernel_sizes.split("-") if k.strip())


# the SlimnasArmConfig fields that decide how the supernet trains (a variant changing only others reuses the supernet)
SUPERNET_FIELDS = ("supernet_epochs", "supernet_steps_per_epoch", "supernet_lr", "latency_bins", "supernet_teacher", "depth",
                   "kernel_sizes")


@dataclass(frozen=True)
class Profile:
    name: str
    purpose: str  # one line for the report
    train_subset: Optional[int]  # training images (per-class balanced); None: all 45,000 of the train split
    val_subset: Optional[int]  # validation images (carved from train/) that score candidates during search
    test_subset: Optional[int]  # CIFAR-10 test images for the reported top-1; None: all 10,000
    finetune: TrainConfig  # the SAME fine-tune for every method and budget
    calib_images: int = 2048  # training images that re-estimate BatchNorm statistics before each test score
    budgets: tuple[float, ...] = (0.5, 0.7)  # fractions of the base model's measured latency
    section: SectionConfig = field(default_factory=SectionConfig)
    final_timing: E2EConfig = field(default_factory=lambda: E2EConfig(rounds=12, samples_per_round=30, processes=5))  # the closing run
    base_epochs: int = 25  # --train-base: epochs of tools/train_base.py
    base_steps_per_epoch: Optional[int] = None
    slimnas: SlimnasArmConfig = field(default_factory=SlimnasArmConfig)
    distill: bool = False  # the fine-tune distils from the base model (for every method alike; DistillOptions())

    def finetune_recipe(self) -> dict:
        """What decides the fine-tuned models given the searched ones (searches do not depend on it)."""
        return {"finetune": self.finetune.to_dict(), "distill": self.distill}

    def finetune_label(self) -> str:
        """Short, readable and unique name of the fine-tune recipe: ``ft4x300-kd-1a2b3c``."""
        f = self.finetune
        digest = hashlib.sha1(json.dumps(self.finetune_recipe(), sort_keys=True, default=str).encode()).hexdigest()[:6]
        return f"ft{f.epochs}x{f.steps_per_epoch or 'all'}{'-kd' if self.distill else ''}-{digest}"

    def search_settings(self) -> dict:
        """The profile minus the fine-tune recipe: what the cached searches and supernets depend on.

        The slimnas arms' supernet training borrows the fine-tune's optimiser settings except its length, learning
        rate and warm-up (:meth:`SlimnasArm.train_config`), so those stay in.
        """
        d = asdict(self)
        for k in ("purpose", "distill", "final_timing"):  # the closing run times finished models: no search depends on it
            d.pop(k)
        for k in FINETUNE_ONLY:
            d["finetune"].pop(k)
        return d


FINETUNE_ONLY = ("epochs", "steps_per_epoch", "lr", "warmup_fraction")  # fine-tune fields the supernet does not use


def _finetune(**kw) -> TrainConfig:
    base = dict(optimizer="sgd", lr=0.01, warmup_fraction=0.05, label_smoothing=0.1, weight_decay=4e-5,
                eval_images=0, progress=False, seed=0)
    return TrainConfig(**{**base, **kw})


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "plumbing check only: 5 fine-tune steps and 500 test images, so accuracies mean nothing",
                     train_subset=1000, val_subset=200, test_subset=500,
                     finetune=_finetune(epochs=1, steps_per_epoch=5, batch_size=32), calib_images=256,
                     section=SectionConfig(points=2, steps=2, step_timing=E2EConfig(10, 20), confirm_timing=E2EConfig(20, 20)),
                     final_timing=E2EConfig(30, 20), base_epochs=1, base_steps_per_epoch=5,
                     slimnas=SlimnasArmConfig(supernet_steps_per_epoch=5, population=8, generations=2, search_minutes=0.5,
                                              calib_images=64, verify_rounds=10, verify_samples=100)),
    "quick": Profile("quick", "sized for a 2-core CPU (under 2.5 hours): 1,200-step distilled fine-tunes, full test set",
                     train_subset=None, val_subset=1000, test_subset=None,
                     finetune=_finetune(epochs=4, steps_per_epoch=300, batch_size=64), distill=True,
                     slimnas=SlimnasArmConfig(supernet_epochs=3, supernet_steps_per_epoch=150, supernet_lr=0.005,
                                              search_minutes=4.0)),
    "full": Profile("full", "GPU machine: full training set, 10-epoch distilled fine-tunes", train_subset=None, val_subset=5000,
                    test_subset=None, finetune=_finetune(epochs=10, batch_size=256, lr=0.02, num_workers=8), distill=True,
                    section=SectionConfig(step_timing=E2EConfig(10, 30, processes=3)),
                    slimnas=SlimnasArmConfig(supernet_epochs=30, supernet_lr=0.05, search_minutes=10.0)),
}


def get_profile(name: str, finetune: Optional[str] = None, distill: Optional[bool] = None, budgets: Optional[str] = None,
                **overrides) -> Profile:
    """The named profile; ``finetune="EPOCHSxSTEPS"`` and ``distill`` replace its fine-tune length and distillation,
    ``budgets="0.5,0.7"`` its budgets."""
    p = replace(PROFILES[name], **overrides)
    if budgets:
        p = replace(p, budgets=parse_budgets(budgets))
    if finetune is not None:
        epochs, steps = parse_finetune(finetune)
        p = replace(p, finetune=replace(p.finetune, epochs=epochs, steps_per_epoch=steps))
    if distill is not None:
        p = replace(p, distill=distill)
    return p


def parse_finetune(text: str) -> tuple[int, Optional[int]]:
    """``"4x300"`` -> (4, 300); ``"2xall"`` -> (2, None) (whole epochs)."""
    epochs, sep, steps = text.lower().partition("x")
    try:
        e, s = int(epochs), None if steps == "all" else int(steps)
    except ValueError:
        e, s = 0, 0
    if not sep or e < 1 or (s is not None and s < 1):
        raise SlimnasError(f"--finetune {text!r}: write EPOCHSxSTEPS with positive integers, e.g. 4x300 (or 2xall for whole epochs)")
    return e, s


def parse_arm(text: str) -> dict:
    """``"supernet_teacher=none:verify_fill=0.95"`` -> ``{"supernet_teacher": "none", "verify_fill": 0.95}``: fields of
    :class:`SlimnasArmConfig`, each parsed as the field's type."""
    from dataclasses import fields

    types = {f.name: f.type for f in fields(SlimnasArmConfig)}
    changes = {}
    for item in (t.strip() for t in text.split(":") if t.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise SlimnasError(f"arm setting {item!r}: write KEY=VALUE with KEY one of {', '.join(types)}")
        kind = str(types[key])
        try:
            if "Optional" in kind and value.strip().lower() in ("none", "null") and "str" not in kind:
                changes[key] = None
            elif "int" in kind:
                changes[key] = int(value)
            elif "float" in kind:
                changes[key] = float(value)
            else:
                changes[key] = value.strip()
        except ValueError:
            raise SlimnasError(f"arm setting {item!r}: {key} needs a number, got {value!r}") from None
    if "kernel_sizes" in changes:  # SpaceConfig checks the sizes, as it does for slim's config
        from slimnas.space import SpaceConfig

        try:
            ks = SlimnasArmConfig(kernel_sizes=changes["kernel_sizes"]).kernels()
            SpaceConfig(kernel_sizes=ks)
        except (ValueError, SlimnasError):
            ks = ()
        if not ks:
            raise SlimnasError(f"arm setting kernel_sizes={changes['kernel_sizes']!r}: write odd sizes joined by '-', "
                               "e.g. kernel_sizes=3-5-7")
    if "supernet_teacher" in changes:
        from slimnas.train.strategies.sandwich import TEACHERS

        if changes["supernet_teacher"] not in TEACHERS:
            raise SlimnasError(f"arm setting supernet_teacher={changes['supernet_teacher']!r}: choose from {', '.join(TEACHERS)}")
    return changes


def parse_budgets(text: str) -> tuple[float, ...]:
    """``"0.5,0.7"`` -> (0.5, 0.7): distinct fractions of the base's latency in (0, 1)."""
    try:
        out = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        out = ()
    if not out or not all(0.0 < b < 1.0 for b in out) or len(set(out)) != len(out):
        raise SlimnasError(f"--budgets {text!r}: give distinct fractions between 0 and 1 separated by commas, e.g. 0.5,0.7")
    return out
