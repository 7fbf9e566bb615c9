"""``sandwich`` (US-Nets): the widest, the narrowest and N random subnets every step, in-place distillation.

The widest subnet learns from the labels; its detached softmax is the target of every other subnet. Logged per
step: ``loss`` (the mean training loss over the subnets trained, i.e. the step's objective divided by their
number) and, by kind, ``loss_widest`` (CE), ``loss_narrowest`` and ``loss_random`` (distillation or CE). Widths
mean "the first c channels in importance order" (fixed leftmost sharing); CafeNet and BS-NAS build on this.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import SlimnasError
from ...subnet import Subnet
from .base import StepContext, Strategy, soft_ce
from .registry import strategy


@dataclass(frozen=True)
class SandwichOptions:
    n_random: int = 2  # random subnets per step besides the widest and the narrowest
    widest: bool = True  # train the widest subnet on the labels each step (the teacher)
    narrowest: bool = True  # train the narrowest subnet each step
    distill: bool = True  # other subnets learn the widest one's soft output (else the labels)

    def __post_init__(self) -> None:
        if self.n_random < 0:
            raise SlimnasError(f"n_random must be >= 0, got {self.n_random}")
        if not (self.widest or self.narrowest or self.n_random):
            raise SlimnasError("the step trains no subnet: enable widest, narrowest or n_random > 0")


@strategy("sandwich")
class Sandwich(Strategy):
    Options = SandwichOptions

    def __init__(self, net, options=None, space=None):
        super().__init__(net, options, space)
        self.records: list[tuple[Subnet, float]] = []  # (subnet, CE loss) of this step's sampled subnets

    def arrange(self, subnet: Subnet, x, y, target, ctx: StepContext) -> Subnet:
        """The arrangement of ``subnet`` to train (CafeNet overrides this); leftmost channels here."""
        return subnet

    def student_loss(self, logits, y, target, ctx: StepContext) -> torch.Tensor:
        if target is not None:
            return soft_ce(logits, target)
        return ctx.ce(logits, y)

    def step(self, x, y, ctx: StepContext) -> dict[str, float]:
        opts = self.options
        metrics: dict[str, float] = {}
        target = None
        self.records = []
        trained: list[float] = []  # the training loss of every subnet trained this step
        if opts.widest:
            self.net.set_subnet(self.space.max())
            with ctx.autocast():
                logits = ctx.forward(x)
                loss = ctx.ce(logits, y)
            ctx.backward(loss)
            metrics["loss_widest"] = float(loss.detach())
            trained.append(metrics["loss_widest"])
            if opts.distill:
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
            ce = float(ctx.ce(logits.detach(), y)) if target is not None else float(loss.detach())
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
        return metrics
