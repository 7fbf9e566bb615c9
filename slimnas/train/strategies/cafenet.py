"""``cafenet`` (CafeNet, ICLR 2021): locally free weight sharing trained with the min-min strategy.

A width c of a group is its base channels (the first c - r in importance order) plus r free channels taken
from the local zone [c - r, c + r) (clipped to the stored channels); a group feeding a grouped conv counts in
whole conv groups instead of channels (a conv group cannot be split). Each student subnet of a step is tried
in K arrangements (forward passes without gradients); only the one with the smallest loss (averaged over
processes) is trained. The trial forwards run in training mode (the loss must be the one training would
see) but leave the BatchNorm running statistics as they were: only the winner's training forward counts
toward them, as if the losers had never run. Winning arrangements are remembered per (group, width) with a running loss, so the
best one is what scoring tries first and what :meth:`finalize` hands to search and export.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional

import torch

from ...errors import SlimnasError
from ...evaluate import bn_state_restored
from ...subnet import Subnet
from .base import StepContext
from .registry import strategy
from .sandwich import Sandwich, SandwichOptions


@dataclass(frozen=True)
class CafeNetOptions(SandwichOptions):
    k: int = 3  # arrangements tried per student subnet (min-min picks the smallest loss)
    free_ratio: float = 0.1  # r = ceil(free_ratio * c) free channels per width c (0: fixed leftmost sharing)
    pool: int = 4  # winning arrangements remembered per (group, width)
    ema: float = 0.9  # smoothing of the remembered arrangements' losses

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise SlimnasError(f"k (arrangements per subnet) must be >= 1, got {self.k}")
        if not 0.0 <= self.free_ratio <= 0.5:
            raise SlimnasError(f"free_ratio must be in [0, 0.5], got {self.free_ratio}")


@strategy("cafenet")
class CafeNet(Sandwich):
    Options = CafeNetOptions

    def __init__(self, net, options=None, space=None):
        super().__init__(net, options, space)
        # (group, width) -> {arrangement (sorted channel tuple): [ema loss, wins]}
        self.memory: dict[tuple[str, int], dict[tuple[int, ...], list[float]]] = {}
        self.last_trial: list[tuple[Subnet, float]] = []  # the arrangements tried for the last student
        self.last_winner: Optional[Subnet] = None

    # -- arrangements ----------------------------------------------------------------------------------------
    def free_count(self, width: int, stored: int) -> int:
        """Free channels (blocks, see :meth:`blocks`) of a width of ``width`` out of ``stored``."""
        if width >= stored:
            return 0
        return min(width, stored - width, math.ceil(self.options.free_ratio * width))

    def blocks(self, group: str, width: int) -> tuple[int, int, int]:
        """``(q, width // q, stored // q)``: a group feeding a grouped conv (``q`` channels per conv group) moves in
        whole conv groups, so its free channels are whole blocks of ``q`` (q = 1 elsewhere). A width that is not a
        whole number of blocks (the checkpoint's own) has no free blocks: ``(q, 0, 0)``, nor has a group that
        passes a channel shuffle (:mod:`slimnas.trace.shuffle`) or whose conv groups each narrow."""
        g = self.net.graph.group(group)
        q = g.multiple
        stored = self.net.space[group].max_width
        if width % q or stored % q or g.routed or g.narrow:  # their channels follow from the width alone
            return q, 0, 0
        return q, width // q, stored // q

    def random_arrangement(self, group: str, width: int, rng: random.Random) -> Optional[tuple[int, ...]]:
        q, width, stored = self.blocks(group, width)
        r = self.free_count(width, stored)
        if r == 0:
            return None
        base = list(range(width - r))
        zone = list(range(width - r, min(width + r, stored)))
        return tuple(b * q + i for b in sorted(base + rng.sample(zone, r)) for i in range(q))

    def best_arrangement(self, group: str, width: int) -> Optional[tuple[int, ...]]:
        pool = self.memory.get((group, width))
        if not pool:
            return None
        return min(pool.items(), key=lambda kv: (kv[1][0], kv[0]))[0]

    @staticmethod
    def _with(subnet: Subnet, indices: dict[str, tuple[int, ...]]) -> Subnet:
        keep = {g: idx for g, idx in indices.items() if idx is not None and idx != tuple(range(len(idx)))}
        return Subnet(subnet.widths, keep, subnet.depth, subnet.kernels)

    def arrangements(self, subnet: Subnet, k: int, rng: random.Random) -> list[Subnet]:
        """``k`` arrangements of ``subnet``: the remembered best (leftmost where none yet), then random ones."""
        first = {g: self.best_arrangement(g, w) for g, w in subnet.widths.items()}
        out = [self._with(subnet, first)]
        for _ in range(k - 1):
            out.append(self._with(subnet, {g: self.random_arrangement(g, w, rng) for g, w in subnet.widths.items()}))
        return out

    def remember(self, subnet: Subnet, loss: float) -> None:
        opts = self.options
        for g, w in subnet.widths.items():
            if self.free_count(*self.blocks(g, w)[1:]) == 0:
                continue
            idx = subnet.indices.get(g, tuple(range(w)))
            pool = self.memory.setdefault((g, w), {})
            if idx in pool:
                pool[idx][0] = opts.ema * pool[idx][0] + (1 - opts.ema) * loss
                pool[idx][1] += 1
            else:
                pool[idx] = [loss, 1]
                if len(pool) > opts.pool:  # forget the worst remembered arrangement
                    worst = max(pool.items(), key=lambda kv: (kv[1][0], kv[0]))[0]
                    del pool[worst]

    # -- training --------------------------------------------------------------------------------------------
    def arrange(self, subnet: Subnet, x, y, target, ctx: StepContext) -> Subnet:
        options = self.arrangements(subnet, self.options.k, ctx.rng)
        if len(options) == 1:
            self.last_trial, self.last_winner = [(options[0], float("nan"))], options[0]
            return options[0]
        losses = []
        with torch.no_grad(), bn_state_restored(self.net):  # the losers must not move the BN statistics
            for sub in options:
                self.net.set_subnet(sub)
                with ctx.autocast():
                    losses.append(self.student_loss(ctx.forward(x), y, target, ctx).float())
        losses = ctx.reduce(torch.stack(losses))  # every process must pick the same arrangement
        best = int(torch.argmin(losses))
        self.last_trial = list(zip(options, [float(v) for v in losses]))
        self.last_winner = options[best]
        self.remember(options[best], float(losses[best]))
        return options[best]

    # -- search and export -----------------------------------------------------------------------------------
    def finalize(self, subnet: Subnet) -> Subnet:
        if subnet.indices:
            return subnet
        return self._with(subnet, {g: self.best_arrangement(g, w) for g, w in subnet.widths.items()})

    def candidates(self, subnet: Subnet, k: int, rng: random.Random) -> list[Subnet]:
        return self.arrangements(subnet, k, rng)

    def state_dict(self) -> dict:
        out = super().state_dict()
        out["memory"] = [[g, w, list(idx), v[0], v[1]] for (g, w), pool in sorted(self.memory.items())
                         for idx, v in sorted(pool.items())]
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.memory = {}
        for g, w, idx, loss, wins in state.get("memory", []):
            self.memory.setdefault((g, int(w)), {})[tuple(int(i) for i in idx)] = [float(loss), int(wins)]
