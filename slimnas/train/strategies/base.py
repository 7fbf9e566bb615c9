"""The strategy contract: one file plus one ``@strategy`` decorator (:mod:`.registry`) per training method.

A strategy decides, for each step, which subnets run forward and backward and with which targets; the
:class:`~slimnas.train.Trainer` owns the optimiser, schedule, precision, checkpoints and processes. Options
are a frozen dataclass per strategy, validated by :func:`make_strategy` (the edge) from keyword arguments.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import SlimnasError
from ...space import SearchSpace
from ...subnet import Subnet

@dataclass
class StepContext:
    """What a strategy may use during one step (built by the trainer)."""

    forward: Callable[[torch.Tensor], torch.Tensor]  # the (possibly DDP-wrapped) model's forward
    backward: Callable[[torch.Tensor], None]  # loss.backward(), under the trainer's precision policy
    autocast: Callable[[], contextlib.AbstractContextManager]  # mixed-precision context for forwards
    reduce: Callable[[torch.Tensor], torch.Tensor]  # mean over processes (identity when alone)
    rng: random.Random  # subnet sampling; identical on every process
    label_smoothing: float = 0.0
    step: int = 0  # global step (0-based) being taken
    teacher: Optional[torch.Tensor] = None  # the frozen teacher's logits for this batch (float32, no grad); None: none


    def ce(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)


def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (in-place distillation)."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(teacher ‖ student) on temperature-softened logits (batch mean; Hinton et al.'s scaling keeps the
    gradient's size independent of T)."""
    t = temperature
    return F.kl_div(F.log_softmax(student.float() / t, -1), F.log_softmax(teacher.float() / t, -1),
                    reduction="batchmean", log_target=True) * (t * t)


@dataclass(frozen=True)
class NoOptions:
    pass


class Strategy:
    """Base class. ``net`` is the model being trained (a :class:`~slimnas.Supernet` for width strategies)."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    needs_supernet: ClassVar[bool] = True

    def __init__(self, net: nn.Module, options: Any = None, space: Optional[SearchSpace] = None):
        self.net = net
        self.options = options if options is not None else self.Options()
        if self.needs_supernet and not hasattr(net, "set_subnet"):
            raise SlimnasError(f"strategy {self.name!r} trains a supernet: convert the model with slimnas.convert first")
        self.space: Optional[SearchSpace] = space if space is not None else getattr(net, "space", None)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def wants_teacher(self) -> bool:
        """Whether the trainer should run its frozen teacher on every batch (its logits arrive as ``ctx.teacher``)."""
        return False

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        """Forward and backward the step's subnets (gradients accumulate); return metrics to log."""
        raise NotImplementedError

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimiser step (shrinking happens here)."""

    def report_subnets(self) -> dict[str, Subnet]:
        """Subnets whose validation accuracy is reported at each epoch end."""
        if self.space is None:
            return {}
        return {"widest": self.space.max(), "narrowest": self.space.min()}

    def finalize(self, subnet: Subnet) -> Subnet:
        """The subnet as search should record it and export keep it (CafeNet adds its channel choices)."""
        return subnet

    def candidates(self, subnet: Subnet, k: int, rng: random.Random) -> list[Subnet]:
        """Arrangements to try when scoring ``subnet`` (the best score wins); just ``subnet`` by default."""
        return [self.finalize(subnet)]

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain data (lists, numbers, strings) saved in every checkpoint."""
        out: dict = {}
        if self.space is not None:
            out["space"] = {g.name: list(g.choices) for g in self.space.groups}
            if self.space.stages:
                out["depth"] = {st.name: list(st.choices) for st in self.space.stages}
            if self.space.kernels:
                out["kernels"] = {k.name: list(k.choices) for k in self.space.kernels}
        return out

    def load_state_dict(self, state: dict) -> None:
        if "space" in state and self.space is not None:
            self.space = self.space.restricted(state["space"], state.get("depth"), state.get("kernels"))

    def logs(self) -> dict[str, list[dict]]:
        """Tables (name → rows) the trainer writes to ``<run>/<name>.csv``."""
        return {}
