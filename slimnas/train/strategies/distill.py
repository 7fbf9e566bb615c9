"""``distill``: train one network against the labels and a frozen teacher's softened outputs (Hinton et al.).

loss = (1 - alpha) · CE(student, labels) + alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

Used by ``slimnas slim`` to fine-tune the chosen subnet with the original model as the teacher. The teacher
is a module, not an option: pass it to the constructor (``Distill(model, options, teacher=original)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ...errors import SlimnasError
from .base import StepContext, distill_loss
from .registry import strategy
from .plain import Plain


@dataclass(frozen=True)
class DistillOptions:
    alpha: float = 0.5  # weight of the distillation term
    temperature: float = 4.0  # softening of both distributions

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise SlimnasError(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise SlimnasError(f"temperature must be positive, got {self.temperature}")


@strategy("distill")
class Distill(Plain):
    Options = DistillOptions

    def __init__(self, net: nn.Module, options=None, space=None, teacher: Optional[nn.Module] = None):
        super().__init__(net, options, space)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    def step(self, x, y, ctx: StepContext) -> dict[str, float]:
        if self.teacher is None:
            raise SlimnasError("the distill strategy needs a teacher model: Distill(model, options, teacher=original)")
        if next(self.teacher.parameters()).device != x.device:
            self.teacher.to(x.device)
        with torch.no_grad(), ctx.autocast():
            target = self.teacher(x)
        with ctx.autocast():
            out = ctx.forward(x)
        ce = ctx.ce(out, y)
        kd = distill_loss(out, target, self.options.temperature)
        a = self.options.alpha
        loss = (1 - a) * ce + a * kd
        ctx.backward(loss)
        return {"loss": float(loss.detach()), "ce": float(ce.detach()), "kd": float(kd.detach())}
