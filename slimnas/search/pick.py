"""The final pick among candidates that meet the budget: spend the budget unless the scores say otherwise.

Supernet scores are estimates with an error bar, and capacity is the prior that holds: a wider subnet of the
same supernet is, all else equal, at least as accurate after fine-tuning. So the pick starts from the widest
candidate that meets the budget and moves to a narrower one only when that one scores higher by more than
``margin_se`` standard errors of the paired difference (both scored on the same validation images). Every
narrower candidate is compared with the current pick in order of decreasing cost, so a chain of narrower,
each clearly better, ends at the best of them. The pick says why, in one sentence the report shows.

:func:`tolerant_front` is the Pareto front with the same tolerance: a candidate is set aside only when a
cheaper one scores higher beyond the paired error, so near-budget candidates whose scores are within noise
of a smaller one's are kept for measurement instead of being hidden by a lucky estimate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import SlimnasError


NARROWER = "narrower "  # how a pick's reason starts when a narrower candidate won on its score (Pick.narrower_by_evidence)


# how verification's pick reason goes on when every scored candidate between the pick and the budget was set aside
# because a cheaper one beat it beyond the margin (so the budget is left unused by evidence, not for want of a try)
WIDER_DOMINATED = "each scored below a cheaper one by more than"


def narrower_by_evidence(reason: str) -> bool:
    """Whether a saved pick reason (verify.csv's ``pick_reason``) says the share of the budget left unused is by
    evidence: a narrower candidate won on its score, or every wider one scored was beaten by a cheaper one."""
    return str(reason).startswith(NARROWER) or WIDER_DOMINATED in str(reason)


@dataclass(frozen=True)
class Pick:
    index: int  # into the candidates given
    reason: str  # one sentence for the report
    narrower_by_evidence: bool  # True when a narrower candidate won on its score


def score_units(estimator: str) -> tuple[float, str]:
    """How a score difference is written: top-1 in points, the loss estimator in nats."""
    return (100.0, "pt") if estimator == "top1" else (1.0, "nats of cross-entropy")


def _fmt(d: float, se: float, estimator: str) -> str:
    k, unit = score_units(estimator)
    digits = 1 if estimator == "top1" else 3
    return f"{d * k:+.{digits}f} ± {se * k:.{digits}f} {unit}"


def choose(names: Sequence[str], costs: Sequence[float], shares: Sequence[Optional[float]],
           paired: Callable[[int, int], tuple[float, float]], margin_se: float, estimator: str = "top1",
           cost_label: str = "measured") -> Pick:
    """Pick among candidates that all meet the budget (see the module's description).

    ``costs`` order the candidates (higher: wider); ``shares`` are their shares of the budget (None: unknown);
    ``paired(i, j)`` is score(i) - score(j) and its paired standard error.
    """
    if not names:
        raise SlimnasError("no candidate meets the budget: nothing to pick")
    order = sorted(range(len(names)), key=lambda i: (-costs[i], names[i]))
    chosen, moves = order[0], []
    closest = None  # the narrower candidate nearest to winning: (z, i, d, se)
    for i in order[1:]:
        d, se = paired(i, chosen)
        if d > 0 and d > margin_se * se:
            moves.append((i, chosen, d, se))
            chosen = i
        else:
            z = d / se if se > 0 else (np.inf if d > 0 else -np.inf)
            if closest is None or z > closest[0]:
                closest = (z, i, d, se)

    def share(i: int) -> str:
        return f"{shares[i] * 100:.0f}% of the budget" if shares[i] is not None else "share of the budget unknown"

    if moves:
        i, wider, d, se = moves[-1]
        reason = (f"{NARROWER}`{names[i]}` ({share(i)}) scored {_fmt(d, se, estimator)} above the wider `{names[wider]}` "
                  f"({share(wider)}), paired on the same validation images: more than {margin_se:g} SE, so chosen")
        if len(moves) > 1:
            reason += f" (after {len(moves) - 1} earlier such step(s) from the widest, `{names[order[0]]}`)"
        return Pick(i, reason, True)
    reason = (f"the widest candidate that meets the budget ({cost_label}; {share(chosen)}); no narrower one scored "
              f"higher by more than {margin_se:g} paired SE")
    if closest is not None:
        _, i, d, se = closest
        reason += f" (nearest: `{names[i]}`, {share(i)}, {_fmt(d, se, estimator)})"
    else:
        reason += " (it was the only one)"
    return Pick(chosen, reason, False)


def paired_se_matrix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-image value rows ``values[n, N]``: ``diff[j, i]`` = mean_j - mean_i and its paired SE."""
    v = np.asarray(values, dtype=np.float64)
    n, m = v.shape
    mean = v.mean(axis=1)
    c = v - mean[:, None]
    cov = c @ c.T / max(m - 1, 1)
    var = np.diag(cov)
    var_diff = np.maximum(var[:, None] + var[None, :] - 2 * cov, 0.0)
    return mean[:, None] - mean[None, :], np.sqrt(var_diff / m)


def tolerant_front(values: np.ndarray, costs: np.ndarray, margin_se: float) -> np.ndarray:
    """Rows no other row beats by costing no more and scoring higher by more than ``margin_se`` paired SE."""
    costs = np.asarray(costs, dtype=np.float64)
    if len(costs) == 0:
        return np.zeros(0, dtype=bool)
    diff, se = paired_se_matrix(values)
    beats = (costs[:, None] <= costs[None, :]) & (diff > 0) & (diff > margin_se * se)
    np.fill_diagonal(beats, False)
    return ~beats.any(axis=0)
