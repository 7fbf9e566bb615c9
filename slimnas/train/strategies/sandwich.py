"""``sandwich`` (US-Nets): the widest, the narrowest and N random subnets every step, in-place distillation.

The widest subnet learns from the labels; its detached softmax is the target of every other subnet. Logged per
step: ``loss`` (the mean training loss over the subnets trained, i.e. the step's objective divided by their
number) and, by kind, ``loss_widest`` (CE), ``loss_narrowest`` and ``loss_random`` (distillation or CE). Widths
mean "the first c channels in importance order" (fixed leftmost sharing); CafeNet and BS-NAS build on this.

A frozen teacher (``teacher``: the original model before conversion, given to the :class:`~slimnas.train.Trainer`,
which runs it once per batch) adds ``teacher_alpha`` · T² · KL(teacher ‖ subnet) at temperature T to every
subnet's loss; the rest of the weight stays on the subnet's own target:

========== ======================================== ==========================================================
teacher    widest                                   other subnets
========== ======================================== ==========================================================
none       CE(labels)                               soft CE(widest) (``distill``), else CE(labels)
original   (1-a)·CE(labels) + a·KD(teacher)         (1-a)·CE(labels) + a·KD(teacher)
both       (1-a)·CE(labels) + a·KD(teacher)         (1-a)·soft CE(widest) + a·KD(teacher)
========== ======================================== ==========================================================

``loss_teacher`` (logged) is the mean KD term over the subnets trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import SlimnasError
from ...subnet import Subnet
from .base import StepContext, Strategy, distill_loss, soft_ce
from .registry import strategy


@dataclass(frozen=True)
class SandwichOptions:
    n_random: int = 2  # random subnets per step besides the widest and the narrowest
    widest: bool = True  # train the widest subnet on the labels each step (the teacher)
    narrowest: bool = True  # train the narrowest subnet each step
    distill: bool = True  # other subnets learn the widest one's soft output (else the labels); in-place distillation
    teacher: str = "none"  # none | original (the frozen original teaches every subnet, no in-place) | both (see above)
    teacher_alpha: float = 0.5  # weight a of the teacher term (1 - a stays on the labels or the widest's output)
    temperature: float = 4.0  # T of the teacher term (both distributions softened; the term is scaled by T²)

    def __post_init__(self) -> None:
        if self.n_random < 0:
            raise SlimnasError(f"n_random must be >= 0, got {self.n_random}")
        if not (self.widest or self.narrowest or self.n_random):
            raise SlimnasError("the step trains no subnet: enable widest, narrowest or n_random > 0")
        if self.teacher not in TEACHERS:
            raise SlimnasError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        if self.teacher == "both" and not (self.widest and self.distill):
            raise SlimnasError("teacher=both adds in-place distillation from the widest: keep widest and distill on, "
                               "or use teacher=original")
        if not (0.0 <= self.teacher_alpha <= 1.0):
            raise SlimnasError(f"teacher_alpha must be in [0, 1], got {self.teacher_alpha}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise SlimnasError(f"temperature must be positive, got {self.temperature}")


TEACHERS = ("none", "original", "both")


@strategy("sandwich")
class Sandwich(Strategy):
    Options = SandwichOptions

    def __init__(self, net, options=None, space=None):
        super().__init__(net, options, space)
        self.records: list[tuple[Subnet, float]] = []  # (subnet, CE loss) of this step's sampled subnets

    def wants_teacher(self) -> bool:
        return self.options.teacher != "none"

    def _teacher(self, ctx: StepContext):
        if not self.wants_teacher():
            return None
        if ctx.teacher is None:
            raise SlimnasError(f"strategy {self.name!r} has teacher={self.options.teacher} but no teacher model was "
                               "given: pass the original model (Trainer(..., teacher=original))")
        return ctx.teacher

    def _with_teacher(self, loss: torch.Tensor, logits, ctx: StepContext) -> torch.Tensor:
        """``loss`` mixed with the teacher term, or ``loss`` unchanged without a teacher."""
        teacher = self._teacher(ctx)
        if teacher is None:
            return loss
        a = self.options.teacher_alpha
        return (1 - a) * loss + a * distill_loss(logits, teacher, self.options.temperature)

    def widest_loss(self, logits, y, ctx: StepContext) -> torch.Tensor:
        return self._with_teacher(ctx.ce(logits, y), logits, ctx)

    def arrange(self, subnet: Subnet, x, y, target, ctx: StepContext) -> Subnet:
        """The arrangement of ``subnet`` to train (CafeNet overrides this); leftmost channels here."""
        return subnet

    def student_loss(self, logits, y, target, ctx: StepContext) -> torch.Tensor:
        """A non-widest subnet's loss: against ``target`` (the widest's soft output) or the labels, plus the teacher."""
        own = soft_ce(logits, target) if target is not None else ctx.ce(logits, y)
        return self._with_teacher(own, logits, ctx)

    def step(self, x, y, ctx: StepContext) -> dict[str, float]:
        opts = self.options
        metrics: dict[str, float] = {}
        target = None
        self.records = []
        trained: list[float] = []  # the training loss of every subnet trained this step
        teacher = self._teacher(ctx)
        kds: list[float] = []  # the teacher term of every subnet trained this step
        if opts.widest:
            self.net.set_subnet(self.space.max())
            with ctx.autocast():
                logits = ctx.forward(x)
                loss = self.widest_loss(logits, y, ctx)
            ctx.backward(loss)
            metrics["loss_widest"] = float(loss.detach())
            trained.append(metrics["loss_widest"])
            if teacher is not None:
                kds.append(float(distill_loss(logits.detach(), teacher, opts.temperature)))
            if opts.distill and opts.teacher != "original":
                target = logits.detach().float().softmax(-1)
        students = ([("narrowest", self.space.min())] if opts.narrowest else []) + \
                   [("random", self.space.sample(ctx.rng)) for _ in range(opts.n_random)]
        random_losses = []
        for kind, sub in students:
            sub = self.arrange(sub, x, y, target, ctx)
            self.net.set_subnet(sub)
            with ctx.autocast():
                logits = ctx.forward(x)
                loss = self.student_loss(logits, y, target, ctx)
            ctx.backward(loss)
            ce = float(ctx.ce(logits.detach(), y)) if target is not None or teacher is not None else float(loss.detach())
            if teacher is not None:
                kds.append(float(distill_loss(logits.detach(), teacher, opts.temperature)))
            self.records.append((sub, ce))
            trained.append(float(loss.detach()))
            if kind == "narrowest":
                metrics["loss_narrowest"] = float(loss.detach())
            else:
                random_losses.append(float(loss.detach()))
        if random_losses:
            metrics["loss_random"] = sum(random_losses) / len(random_losses)
        if len(trained) == 1:  # one subnet: its loss is the step's loss, not a second column
            metrics = {}
        metrics["loss"] = sum(trained) / len(trained)
        if kds:
            metrics["loss_teacher"] = sum(kds) / len(kds)
        return metrics
