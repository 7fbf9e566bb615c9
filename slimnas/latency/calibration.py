"""Calibration: how a table's per-unit sums map to end-to-end latency, fitted on a few whole networks.

measured ≈ Σ_k a_k · raw_k + b, where raw_k is the sum of a subnet's unit entries of kind k (``conv``,
``dwconv``, ``linear``), a_k absorbs what isolated kernels of that kind miss inside a network (layout reorders
at their boundaries, cache state), and b is the fixed part (residual adds, pooling, the session call). The fit
is least squares in relative error. Per-kind slopes are pulled toward one common slope by a ridge penalty
``ridge · n · Σ_k (a_k - a)²`` whose strength is chosen by leave-one-out error among :data:`RIDGES`, skipping
any whose fit gives a kind a slope <= 0 (no kernel is free inside a network); ``inf`` is the single-slope
fit, used alone when there are few points. The leave-one-out RMS percentage error at the chosen strength is
the predictor's error estimate (slightly optimistic: the strength was chosen on the same points).

Measured on MobileNetV2 (30 calibration subnets, 200 held-out ones; benchmarks/results/README.md) per-kind
slopes change held-out RMSPE by 0.2 points or less: depthwise entries are nearly collinear with the 1x1
convs around them, so their own slope is poorly determined; ridges below 1e-3 gave depthwise a negative slope.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

KINDS = ("conv", "dwconv", "linear")  # unit kinds with a slope of their own
RIDGES = (1e-3, 1e-2, 1e-1, math.inf)  # candidate ridge strengths (inf: one common slope)
MIN_POINTS_PER_PARAM = 3  # fewer points than this per fitted parameter: one slope only


def fit(raw_k: np.ndarray, measured: np.ndarray, ridge: float = math.inf) -> tuple[np.ndarray, float, float]:
    """Slopes per column of ``raw_k`` [n, K], intercept b and the common slope, in relative error.

    ``ridge=inf`` forces one slope for all columns; a column that is zero for every point keeps the common one.
    """
    raw_k, measured = np.atleast_2d(np.asarray(raw_k, float)), np.asarray(measured, float)
    n, k = raw_k.shape
    total = raw_k.sum(1)
    if n == 1:
        a = float(measured[0] / total[0])
        return np.full(k, a), 0.0, a
    ones = np.ones(n)
    if math.isinf(ridge):
        A = np.stack([total, ones], 1) / measured[:, None]
        (a, b), *_ = np.linalg.lstsq(A, ones, rcond=None)
        return np.full(k, float(a)), float(b), float(a)
    # unknowns: common slope a, deviations d_1..d_K, intercept b; slope_k = a + d_k
    A = np.hstack([total[:, None], raw_k, ones[:, None]]) / measured[:, None]
    penalty = np.hstack([np.zeros((k, 1)), np.eye(k) * math.sqrt(ridge * n), np.zeros((k, 1))])
    coef, *_ = np.linalg.lstsq(np.vstack([A, penalty]), np.concatenate([ones, np.zeros(k)]), rcond=None)
    a, d, b = float(coef[0]), coef[1:-1], float(coef[-1])
    return a + d, b, a


def loo_rmspe(raw_k: np.ndarray, measured: np.ndarray, ridge: float = math.inf) -> float:
    """Leave-one-out RMS percentage error of :func:`fit` (nan with fewer than 3 points)."""
    raw_k, measured = np.atleast_2d(np.asarray(raw_k, float)), np.asarray(measured, float)
    n = len(measured)
    if n < 3:
        return float("nan")
    errs = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        slopes, b, _ = fit(raw_k[keep], measured[keep], ridge)
        errs[i] = (raw_k[i] @ slopes + b - measured[i]) / measured[i]
    return float(np.sqrt(np.mean(errs ** 2)) * 100)


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration, as stored in a table's ``calibration.json``."""

    slopes: Mapping[str, float]  # per unit kind
    b: float  # ms
    a: float = 1.0  # the common slope (the only one in tables calibrated before per-kind slopes)
    ridge: float = math.inf
    loo_rmspe_pct: float = float("nan")
    loo_by_ridge: Mapping[str, float] = field(default_factory=dict)  # leave-one-out RMSPE of each candidate

    def slope(self, kind: str) -> float:
        return float(self.slopes.get(kind, self.a))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "slopes": dict(self.slopes), "ridge": _json_float(self.ridge),
                "loo_rmspe_pct": self.loo_rmspe_pct, "loo_rmspe_pct_by_ridge": dict(self.loo_by_ridge)}

    @classmethod
    def from_dict(cls, data: Mapping, default_b: float = 0.0) -> "Calibration":
        """Read ``calibration.json`` (old files have only ``a`` and ``b``: one slope for every kind)."""
        a = float(data.get("a", 1.0))
        ridge = data.get("ridge", "inf")
        return cls(slopes={k: float(v) for k, v in (data.get("slopes") or {}).items()}, b=float(data.get("b", default_b)),
                   a=a, ridge=float(ridge), loo_rmspe_pct=float(data.get("loo_rmspe_pct", float("nan"))),
                   loo_by_ridge=dict(data.get("loo_rmspe_pct_by_ridge") or {}))


def _json_float(x: float):
    return "inf" if math.isinf(x) else x


def calibrate(raw_k: np.ndarray, measured: Sequence[float], kinds: Sequence[str] = KINDS,
              ridges: Optional[Sequence[float]] = None) -> Calibration:
    """Fit on end-to-end points: the ridge strength with the lowest leave-one-out error, then all points.

    With fewer than ``MIN_POINTS_PER_PARAM`` points per parameter of the per-kind model, one slope only.
    """
    raw_k, measured = np.atleast_2d(np.asarray(raw_k, float)), np.asarray(measured, float)
    n, k = raw_k.shape
    used = int(np.sum(np.any(raw_k != 0, axis=0)))
    ridges = list(RIDGES if ridges is None else ridges)
    if n < MIN_POINTS_PER_PARAM * (used + 1) or used < 2:
        ridges = [math.inf]
    loo = {r: loo_rmspe(raw_k, measured, r) for r in ridges}
    fits = {r: fit(raw_k, measured, r) for r in ridges}
    ok = {r: e for r, e in loo.items() if np.isfinite(e) and (math.isinf(r) or (fits[r][0] > 0).all())}
    ridge = min(ok, key=lambda r: (ok[r], -r)) if ok else math.inf
    slopes, b, a = fits.get(ridge) or fit(raw_k, measured, ridge)
    return Calibration(slopes=dict(zip(kinds, map(float, slopes))), b=b, a=a, ridge=ridge,
                       loo_rmspe_pct=loo.get(ridge, float("nan")),
                       loo_by_ridge={str(_json_float(r)): e for r, e in loo.items()})
