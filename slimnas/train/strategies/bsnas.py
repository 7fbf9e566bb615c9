"""``bsnas`` (BS-NAS): a broadened space (spring blocks, ``max_ratio`` > 1 at convert time) that shrinks.

Training is the sandwich rule over the current space. Every ``shrink_every`` steps each group's remaining
width choices are scored from the cross-entropy losses of the sampled subnets that used them since the last
shrink; the worst-scoring choice of each group is switched off, down to ``floor`` choices per group. With
``score="residual"`` (the default) a subnet's loss is first compared with what its FLOPs predict (a
least-squares fit of loss on log FLOPs over the window), so a choice is judged against subnets of similar
cost and narrow widths are not removed merely for being narrow. Every switch-off is logged with its step,
score and sample count (``shrink.csv`` in the run folder).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ...errors import SlimnasError
from .base import StepContext, strategy
from .sandwich import Sandwich, SandwichOptions


@dataclass(frozen=True)
class BSNASOptions(SandwichOptions):
    shrink_every: int = 50  # steps between shrinking rounds
    shrink_start: int = 0  # no shrinking before this step
    floor: int = 2  # never fewer width choices per group than this
    min_samples: int = 2  # a choice needs this many sampled subnets in the window to be scored
    keep_narrowest: bool = True  # never switch off a group's narrowest choice (the narrowest subnet stays)
    score: str = "residual"  # residual (loss minus the FLOPs trend) | loss

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shrink_every < 1:
            raise SlimnasError(f"shrink_every must be >= 1, got {self.shrink_every}")
        if self.floor < 1:
            raise SlimnasError(f"floor must be >= 1, got {self.floor}")
        if self.score not in ("residual", "loss"):
            raise SlimnasError(f"score must be residual or loss, got {self.score!r}")


@strategy("bsnas")
class BSNAS(Sandwich):
    Options = BSNASOptions

    def __init__(self, net, options=None, space=None):
        super().__init__(net, options, space)
        self.window: list[tuple[dict[str, int], float, float]] = []  # (widths, flops, CE loss) since last shrink
        self.log: list[dict] = []

    def step(self, x, y, ctx: StepContext) -> dict[str, float]:
        metrics = super().step(x, y, ctx)
        for sub, loss in self.records:
            self.window.append((sub.widths, self.net.flops(sub), loss))
        return metrics

    def scores(self) -> dict[str, dict[int, tuple[float, int]]]:
        """Per group and width: (score, samples) over the current window; higher score = worse."""
        if not self.window:
            return {}
        loss = np.array([w[2] for w in self.window])
        if self.options.score == "residual" and len(self.window) >= 3:
            logf = np.log(np.array([w[1] for w in self.window]))
            a = np.stack([np.ones_like(logf), logf], 1)
            coef, *_ = np.linalg.lstsq(a, loss, rcond=None)
            value = loss - a @ coef
        else:
            value = loss
        acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for (widths, _, _), v in zip(self.window, value):
            for g, w in widths.items():
                acc[g][w].append(float(v))
        return {g: {w: (float(np.mean(vs)), len(vs)) for w, vs in per.items()} for g, per in acc.items()}

    def shrink(self, step: int) -> list[dict]:
        """Switch off the worst-scoring choice of each group that has more than ``floor`` left."""
        opts = self.options
        scores = self.scores()
        keep, rows = {}, []
        for g in self.space.groups:
            choices = list(g.choices)
            if len(choices) <= opts.floor:
                continue
            eligible = [w for w in choices if not (opts.keep_narrowest and w == choices[0])
                        and scores.get(g.name, {}).get(w, (0, 0))[1] >= opts.min_samples]
            if not eligible:
                continue
            worst = max(eligible, key=lambda w: (scores[g.name][w][0], w))
            score, n = scores[g.name][worst]
            choices.remove(worst)
            keep[g.name] = choices
            rows.append({"step": step, "group": g.name, "width": worst, "ratio": round(worst / g.width, 4),
                         "score": score, "samples": n, "remaining": " ".join(map(str, choices))})
        if keep:
            self.space = self.space.restricted(keep)
        self.log.extend(rows)
        self.window = []
        return rows

    def after_step(self, ctx: StepContext) -> None:
        done = ctx.step + 1
        if done >= self.options.shrink_start and done % self.options.shrink_every == 0:
            self.shrink(done)

    def state_dict(self) -> dict:
        out = super().state_dict()
        out["window"] = [[sorted(w.items()), f, l] for w, f, l in self.window]
        out["log"] = [dict(r) for r in self.log]
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.window = [({g: int(v) for g, v in w}, float(f), float(l)) for w, f, l in state.get("window", [])]
        self.log = [dict(r) for r in state.get("log", [])]

    def logs(self) -> dict[str, list[dict]]:
        return {"shrink": self.log}
