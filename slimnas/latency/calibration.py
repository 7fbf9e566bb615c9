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

Two analytic terms can join the entries: ``+ Σ_t c_t · x_t`` over ``weights`` (millions of parameters of the
whole subnet) and ``flops`` (its MFLOPs). A table times each layer alone, many times over, so its weights stay in
the nearest cache; inside a whole network, whose weights together outgrow that cache, every layer's weights come
from a farther cache level or memory once per inference, a cost no entry holds (``weights``). Where the entries
were timed on a busy machine their compute part is noisy, and FLOPs carry it more steadily (``flops``). Each form
(ridge strength × which terms) is scored by leave-one-out error on the table's own calibration points and the
lowest is kept, the simpler on a tie, so a machine whose entries add up keeps the entries-only form; a term's
slope is never negative.

A third, ``blocks``, counts the skippable residual blocks a subnet keeps (elastic depth): each kept block runs a
residual add and, on a small input, the per-kernel overhead of its three or so kernels, which no unit entry (timed
with the runtime's session overhead subtracted) holds; a dropped block saves that too.

Measured (``benchmarks/results/latency_terms``): on a 2-core Xeon VM (MobileNetV2 at 32 px, onnxruntime), the
table's leave-one-out error on its 30 calibration subnets is 14.2% with the entries alone and 4.4% with both
terms; on 35 subnets of six shape families timed apart, the error of the predicted ratio to the original falls
from 35% to 5%. On the shipped tables' committed held-out validations (200 subnets each, AMD EPYC), the held-out
error falls or stays: 4.03% to 3.14% (MobileNetV2 32 px), 8.36% to 6.44% (its INT8 table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

KINDS = ("conv", "dwconv", "linear")  # unit kinds with a slope of their own
RIDGES = (1e-3, 1e-2, 1e-1, math.inf)  # candidate ridge strengths (inf: one common slope)
MIN_POINTS_PER_PARAM = 3  # fewer points than this per fitted parameter: one slope only


TERMS = ("weights", "flops", "blocks")  # analytic terms a form may add: millions of parameters, MFLOPs, kept blocks
# The term sets tried, simplest first. ``blocks`` (the skippable blocks a subnet keeps, elastic depth) varies only in
# a space with depth, so a width-only table never fits it: its forms are the four they always were.
FORMS = ((), ("weights",), ("flops",), ("blocks",), ("weights", "flops"), ("weights", "blocks"), ("flops", "blocks"),
         ("weights", "flops", "blocks"))


def fit(raw_k: np.ndarray, measured: np.ndarray, ridge: float = math.inf,
        extra: Optional[np.ndarray] = None) -> tuple[np.ndarray, float, float]:
    """Slopes per column of ``raw_k`` [n, K], intercept b and the common slope, in relative error.

    ``ridge=inf`` forces one slope for all columns; a column that is zero for every point keeps the common one.
    ``extra`` [n, E]: analytic terms fitted alongside (their slopes: :func:`fit_form`).
    """
    slopes, _, b, a = fit_form(raw_k, measured, ridge, extra)
    return slopes, b, a


def fit_form(raw_k: np.ndarray, measured: np.ndarray, ridge: float = math.inf,
             extra: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-kind slopes, the slopes of the ``extra`` columns (unpenalised), intercept b and the common slope."""
    raw_k, measured = np.atleast_2d(np.asarray(raw_k, float)), np.asarray(measured, float)
    n, k = raw_k.shape
    total = raw_k.sum(1)
    extra = np.zeros((n, 0)) if extra is None else np.asarray(extra, float).reshape(n, -1)
    e = extra.shape[1]
    if n == 1:
        a = float(measured[0] / total[0])
        return np.full(k, a), np.zeros(e), 0.0, a
    ones = np.ones(n)
    if math.isinf(ridge):
        A = np.hstack([total[:, None], extra, ones[:, None]]) / measured[:, None]
        coef, *_ = np.linalg.lstsq(A, ones, rcond=None)
        a = float(coef[0])
        return np.full(k, a), coef[1:1 + e], float(coef[-1]), a
    # unknowns: common slope a, deviations d_1..d_K, the extra terms' slopes, intercept b; slope_k = a + d_k
    A = np.hstack([total[:, None], raw_k, extra, ones[:, None]]) / measured[:, None]
    penalty = np.hstack([np.zeros((k, 1)), np.eye(k) * math.sqrt(ridge * n), np.zeros((k, e + 1))])
    coef, *_ = np.linalg.lstsq(np.vstack([A, penalty]), np.concatenate([ones, np.zeros(k)]), rcond=None)
    a, d = float(coef[0]), coef[1:1 + k]
    return a + d, coef[1 + k:1 + k + e], float(coef[-1]), a


def loo_rmspe(raw_k: np.ndarray, measured: np.ndarray, ridge: float = math.inf,
              extra: Optional[np.ndarray] = None) -> float:
    """Leave-one-out RMS percentage error of :func:`fit_form` (nan with fewer than 3 points)."""
    raw_k, measured = np.atleast_2d(np.asarray(raw_k, float)), np.asarray(measured, float)
    n = len(measured)
    if n < 3:
        return float("nan")
    extra = np.zeros((n, 0)) if extra is None else np.asarray(extra, float).reshape(n, -1)
    errs = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        slopes, c, b, _ = fit_form(raw_k[keep], measured[keep], ridge, extra[keep])
        errs[i] = (raw_k[i] @ slopes + extra[i] @ c + b - measured[i]) / measured[i]
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
    terms: Mapping[str, float] = field(default_factory=dict)  # analytic terms' slopes: ms per unit (see TERMS)

    def slope(self, kind: str) -> float:
        return float(self.slopes.get(kind, self.a))

    def term(self, name: str) -> float:
        """An analytic term's slope (0 when the form does not have it, as in files from before the terms)."""
        return float(self.terms.get(name, 0.0))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "slopes": dict(self.slopes), "ridge": _json_float(self.ridge),
                "loo_rmspe_pct": self.loo_rmspe_pct, "loo_rmspe_pct_by_ridge": dict(self.loo_by_ridge),
                "terms": dict(self.terms)}

    @classmethod
    def from_dict(cls, data: Mapping, default_b: float = 0.0) -> "Calibration":
        """Read ``calibration.json`` (old files have only ``a`` and ``b``: one slope for every kind)."""
        a = float(data.get("a", 1.0))
        ridge = data.get("ridge", "inf")
        return cls(slopes={k: float(v) for k, v in (data.get("slopes") or {}).items()}, b=float(data.get("b", default_b)),
                   a=a, ridge=float(ridge), loo_rmspe_pct=float(data.get("loo_rmspe_pct", float("nan"))),
                   loo_by_ridge=dict(data.get("loo_rmspe_pct_by_ridge") or {}),
                   terms={k: float(v) for k, v in (data.get("terms") or {}).items()})


def _json_float(x: float):
    return "inf" if math.isinf(x) else x


def form_key(ridge: float, terms: Sequence[str]) -> str:
    """A form's key in ``loo_rmspe_pct_by_ridge``: the ridge, then ``+TERM`` per analytic term."""
    return str(_json_float(ridge)) + "".join(f"+{t}" for t in terms)


def calibrate(raw_k: np.ndarray, measured: Sequence[float], kinds: Sequence[str] = KINDS,
              ridges: Optional[Sequence[float]] = None, terms: Optional[Mapping[str, Sequence[float]]] = None) -> Calibration:
    """Fit on end-to-end points: the form (ridge strength, and which of the analytic ``terms`` given, each one
    value per point) with the lowest leave-one-out error, then all points.

    With fewer than ``MIN_POINTS_PER_PARAM`` points per parameter of the per-kind model, one slope only; a form
    with analytic terms needs as many points per parameter. A form whose fit gives a kind a slope <= 0 or a term a
    negative one is skipped; on a tie the simpler form wins.
    """
    raw_k, measured = np.atleast_2d(np.asarray(raw_k, float)), np.asarray(measured, float)
    n = raw_k.shape[0]
    used = int(np.sum(np.any(raw_k != 0, axis=0)))
    ridges = list(RIDGES if ridges is None else ridges)
    if n < MIN_POINTS_PER_PARAM * (used + 1) or used < 2:
        ridges = [math.inf]
    given = {t: np.asarray(v, float).reshape(n) for t, v in (terms or {}).items()}
    usable = {t for t, v in given.items() if np.ptp(v) > 0}
    forms = [(r, f) for f in FORMS if set(f) <= usable for r in ridges
             if not f or n >= MIN_POINTS_PER_PARAM * ((1 if math.isinf(r) else used) + len(f) + 1)]
    extra = {f: np.stack([given[t] for t in f], 1) if f else None for _, f in forms}
    loo = {(r, f): loo_rmspe(raw_k, measured, r, extra[f]) for r, f in forms}
    fits = {(r, f): fit_form(raw_k, measured, r, extra[f]) for r, f in forms}
    ok = {rf: e for rf, e in loo.items() if np.isfinite(e) and (fits[rf][1] >= 0).all()  # the entries-only single
          and ((math.isinf(rf[0]) and not rf[1]) or (fits[rf][0] > 0).all())}  # slope is the fallback, kept always
    form = min(ok, key=lambda rf: (ok[rf], len(rf[1]), -rf[0])) if ok else (math.inf, ())
    slopes, c, b, a = fits.get(form) or fit_form(raw_k, measured, form[0])
    return Calibration(slopes=dict(zip(kinds, map(float, slopes))), b=b, a=a, ridge=form[0],
                       loo_rmspe_pct=loo.get(form, float("nan")),
                       loo_by_ridge={form_key(r, f): e for (r, f), e in loo.items()},
                       terms={t: float(v) for t, v in zip(form[1], c)})
