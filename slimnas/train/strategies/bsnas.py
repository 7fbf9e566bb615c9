"""``bsnas`` (BS-NAS): a broadened space (spring blocks, ``max_ratio`` > 1 at convert time) that shrinks.

Training is the sandwich rule over the current space. Every ``shrink_every`` steps each group's remaining
width choices are scored from the cross-entropy losses (averaged over processes) of the sampled subnets that
used them in the last ``window_rounds`` rounds. With ``score="residual"`` (the default) a subnet's loss is
first compared with what its FLOPs predict (a least-squares fit of loss on log FLOPs over the window), so a
choice is judged against subnets of similar cost and narrow widths are not removed merely for being narrow.

A choice is switched off only on evidence: it and the group's best choice both have at least
``min_samples`` samples, and its mean score is worse than the best's by more than ``margin`` (score units:
nats of cross-entropy) and significantly so at ``confidence``: Welch's one-sided t test of the two means,
Bonferroni-corrected for the k(k-1) ordered pairs of the group's k scored choices and for the number of knobs the
round tests (each may switch one off). The correction matters: the worst and the best of k equally good choices
differ by 1.5 to 2 standard errors of a difference on noise alone, so "switch off the worst" without it removes
choices at random (``confidence=0`` does exactly that, the rule before this one); corrected per group only, a
round over MobileNetV2's 30 knobs (depth space) where only one stage's depth mattered switched off a choice by
chance in 5 of 12 synthetic windows (400 records), none with the correction over the round. At most one choice per
group goes per round, never below ``floor`` choices. Every switch-off is logged with its step, score, sample count
and the best choice it lost to (``shrink.csv`` in the run folder). A width (or kernel) inside a block a sampled
subnet dropped is no evidence: that subnet's loss is not counted for it.

In a space with elastic depth or kernels, each stage's depths (blocks kept) and each elastic conv's kernel sizes are
choices too, scored and switched off by the same rule, BS-NAS's shrinking of operations: a row of ``shrink.csv`` then
names the knob as ``depth <stage>`` or ``kernel <conv>`` and the depth or kernel size as its ``width``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from ...errors import SlimnasError
from ...space import DEPTH_KNOB, KERNEL_KNOB
from .base import StepContext
from .registry import strategy
from .sandwich import Sandwich, SandwichOptions


@dataclass(frozen=True)
class BSNASOptions(SandwichOptions):
    shrink_every: int = 50  # steps between shrinking rounds
    shrink_start: int = 0  # no shrinking before this step
    floor: int = 2  # never fewer width choices per group than this
    min_samples: int = 5  # a choice (and the best it is compared with) needs this many samples in the window
    margin: float = 0.0  # ... and must score worse than the group's best by more than this (nats)
    confidence: float = 0.95  # ... and significantly so (Welch t, Bonferroni over the round's knobs and pairs); 0: always
    window_rounds: int = 2  # choices are scored over the records of the last this many rounds
    keep_narrowest: bool = True  # never switch off a group's narrowest choice (the narrowest subnet stays)
    score: str = "residual"  # residual (loss minus the FLOPs trend) | loss

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shrink_every < 1:
            raise SlimnasError(f"shrink_every must be >= 1, got {self.shrink_every}")
        if self.floor < 1:
            raise SlimnasError(f"floor must be >= 1, got {self.floor}")
        if self.min_samples < 2:
            raise SlimnasError(f"min_samples must be >= 2 (a score needs a spread), got {self.min_samples}")
        if self.margin < 0:
            raise SlimnasError(f"margin must be >= 0, got {self.margin}")
        if not 0.0 <= self.confidence < 1.0:
            raise SlimnasError(f"confidence must be in [0, 1), got {self.confidence}")
        if self.window_rounds < 1:
            raise SlimnasError(f"window_rounds must be >= 1, got {self.window_rounds}")
        if self.score not in ("residual", "loss"):
            raise SlimnasError(f"score must be residual or loss, got {self.score!r}")


class Score(NamedTuple):
    mean: float  # mean score of the samples (higher = worse)
    n: int  # samples
    var: float  # sample variance of the scores (ddof 1; nan below 2 samples)


def welch_test(worse: Score, best: Score) -> tuple[float, float]:
    """Welch's one-sided t test that ``worse``'s mean exceeds ``best``'s.

    Returns the standard error of the difference and the p-value (scipy's ``ttest_ind_from_stats`` with
    unequal variances; scipy comes with scikit-learn, a dependency)."""
    from scipy.stats import ttest_ind_from_stats

    se = float(np.sqrt(worse.var / worse.n + best.var / best.n))
    if se == 0.0:  # no spread at all: the difference is certain (scipy would return nan)
        return se, 0.0 if worse.mean > best.mean else 1.0
    res = ttest_ind_from_stats(worse.mean, np.sqrt(worse.var), worse.n, best.mean, np.sqrt(best.var), best.n,
                               equal_var=False, alternative="greater")
    return se, float(res.pvalue)


class Record(NamedTuple):
    widths: dict[str, int]
    flops: float
    loss: float  # cross-entropy, averaged over processes
    step: int  # the step (1-based) that sampled it
    operations: dict[str, int] = {}  # the other knobs: "depth <stage>" (blocks kept), "kernel <conv>" (kernel size)


@strategy("bsnas")
class BSNAS(Sandwich):
    Options = BSNASOptions

    def __init__(self, net, options=None, space=None):
        super().__init__(net, options, space)
        self.window: list[Record] = []  # sampled subnets of the last ``window_rounds`` rounds
        self.log: list[dict] = []

    def step(self, x, y, ctx: StepContext) -> dict[str, float]:
        metrics = super().step(x, y, ctx)
        if self.records:  # every process must score, and so shrink, alike
            losses = ctx.reduce(torch.tensor([loss for _, loss in self.records], dtype=torch.float64))
            for (sub, _), loss in zip(self.records, losses.tolist()):
                ops = {k: self.space.value(sub, k) for k, _ in self.space.knobs() if k.startswith((DEPTH_KNOB, KERNEL_KNOB))}
                self.window.append(Record(sub.widths, self.net.flops(sub), float(loss), ctx.step + 1, ops))
        return metrics

    def scores(self) -> dict[str, dict[int, Score]]:
        """Per group and width: the mean score, sample count and variance over the window's records that use it."""
        if not self.window:
            return {}
        loss = np.array([r.loss for r in self.window])
        if self.options.score == "residual" and len(self.window) >= 3:
            logf = np.log(np.array([r.flops for r in self.window]))
            a = np.stack([np.ones_like(logf), logf], 1)
            coef, *_ = np.linalg.lstsq(a, loss, rcond=None)
            value = loss - a @ coef
        else:
            value = loss
        acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r, v in zip(self.window, value):
            # a width (or kernel) inside a block the subnet dropped played no part in its loss: no evidence on it
            unused = self.space.unused_at({k[len(DEPTH_KNOB):]: d for k, d in r.operations.items()
                                           if k.startswith(DEPTH_KNOB)})
            for g, w in r.widths.items():
                if g not in unused:
                    acc[g][w].append(float(v))
            for k, d in r.operations.items():
                if k not in unused:
                    acc[k][d].append(float(v))
        return {g: {w: Score(float(np.mean(vs)), len(vs), float(np.var(vs, ddof=1)) if len(vs) > 1 else float("nan"))
                    for w, vs in per.items()} for g, per in acc.items()}

    def decide(self, choices: list[int], scores: dict[int, Score], family: int = 1) -> Optional[dict]:
        """The choice to switch off among ``choices`` (with the evidence), or None where the evidence is short.
        ``family``: how many knobs this round tests (the Bonferroni correction covers them all)."""
        opts = self.options
        if len(choices) <= opts.floor:
            return None
        scored = [w for w in choices if w in scores and scores[w].n >= opts.min_samples]
        if len(scored) < 2:
            return None
        best = min(scored, key=lambda w: (scores[w].mean, -w))
        candidates = [w for w in scored if w != best and not (opts.keep_narrowest and w == choices[0])]
        if not candidates:
            return None
        worst = max(candidates, key=lambda w: (scores[w].mean, w))
        sw, sb = scores[worst], scores[best]
        gap = sw.mean - sb.mean
        se, p = welch_test(sw, sb)
        pairs = len(scored) * (len(scored) - 1)  # Bonferroni: any ordered pair could have come out worst/best
        alpha = (1 - opts.confidence) / (pairs * max(family, 1)) if opts.confidence > 0 else 1.0
        if not gap > opts.margin or not p < alpha:
            return None
        return {"width": worst, "score": sw.mean, "samples": sw.n, "best_width": best, "best_score": sb.mean,
                "best_samples": sb.n, "gap": gap, "se": se, "p_value": p, "alpha": alpha}

    def shrink(self, step: int) -> list[dict]:
        """Switch off, per group, the worst choice if it is clearly worse than the best (see the module doc)."""
        scores = self.scores()
        family = sum(len(c) > self.options.floor for _, c in self.space.knobs())  # the knobs this round tests
        keep, rows = {}, []
        for g in self.space.groups:
            choices = list(g.choices)
            found = self.decide(choices, scores.get(g.name, {}), family)
            if found is None:
                continue
            choices.remove(found["width"])
            keep[g.name] = choices
            rows.append({"step": step, "group": g.name, "width": found["width"],
                         "ratio": round(found["width"] / g.width, 4), **found, "remaining": " ".join(map(str, choices))})
        ops: dict[str, dict[str, list[int]]] = {"depth": {}, "kernels": {}}
        for knob, knob_choices in self.space.knobs():
            if not knob.startswith((DEPTH_KNOB, KERNEL_KNOB)):
                continue
            choices = list(knob_choices)
            found = self.decide(choices, scores.get(knob, {}), family)
            if found is None:
                continue
            choices.remove(found["width"])
            depth = knob.startswith(DEPTH_KNOB)
            name = knob[len(DEPTH_KNOB if depth else KERNEL_KNOB):]
            ops["depth" if depth else "kernels"][name] = choices
            scale = len(self.space.stage(name).blocks) if depth else self.space.kernel(name).kernel
            rows.append({"step": step, "group": knob, "width": found["width"], "ratio": round(found["width"] / scale, 4),
                         **found, "remaining": " ".join(map(str, choices))})
        if keep or ops["depth"] or ops["kernels"]:
            self.space = self.space.restricted(keep, ops["depth"], ops["kernels"])
        self.log.extend(rows)
        self._forget(step)
        return rows

    def _forget(self, step: int) -> None:
        """Keep the records the next round scores: those of the last ``window_rounds`` rounds, counting it."""
        oldest = step - (self.options.window_rounds - 1) * self.options.shrink_every
        self.window = [r for r in self.window if r.step > oldest]

    def after_step(self, ctx: StepContext) -> None:
        done = ctx.step + 1
        if done % self.options.shrink_every == 0:
            if done >= self.options.shrink_start:
                self.shrink(done)
            else:
                self._forget(done)

    def state_dict(self) -> dict:
        out = super().state_dict()
        out["window"] = [[sorted(r.widths.items()), r.flops, r.loss, r.step, sorted(r.operations.items())] for r in self.window]
        out["log"] = [dict(r) for r in self.log]
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.window = [Record({g: int(v) for g, v in r[0]}, float(r[1]), float(r[2]), int(r[3]) if len(r) > 3 else 0,
                              {s: int(d) for s, d in r[4]} if len(r) > 4 else {})
                       for r in state.get("window", [])]
        self.log = [dict(r) for r in state.get("log", [])]

    def logs(self) -> dict[str, list[dict]]:
        return {"shrink": self.log}
