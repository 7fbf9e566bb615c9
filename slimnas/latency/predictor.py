"""``LatencyPredictor``: a table's per-unit entries summed over a subnet's layers, calibrated end to end.

raw(subnet) = Σ over units of (entry at the unit's (in, out) widths − the empty-call baseline)
predict(subnet) = (a · raw + b) · speed, where (a, b) are fitted on a few end-to-end measurements (b is the
fixed part: residual adds, pooling, the session call; a absorbs what isolated kernels miss, such as layout
reorders at their boundaries), and ``speed`` is the reference probe now over the probe at calibration time.
Everything is vectorised over a width matrix: one numpy gather per unit.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ..errors import SlimnasError
from ..subnet import Subnet
from .fingerprint import DEVICE_KEYS, MODEL_KEYS, check, space_hash
from .table import LatencyTable
from .units import units_of


def fit_calibration(raw: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """Least squares of ``measured ≈ a·raw + b`` in relative error (weights 1/measured)."""
    raw, measured = np.asarray(raw, float), np.asarray(measured, float)
    if len(raw) == 1:
        return float(measured[0] / raw[0]), 0.0
    A = np.stack([raw, np.ones_like(raw)], 1) / measured[:, None]
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(raw), rcond=None)
    return float(a), float(b)


def loo_rmspe(raw: np.ndarray, measured: np.ndarray) -> float:
    """Leave-one-out RMS percentage error of the calibration: the predictor's error estimate."""
    raw, measured = np.asarray(raw, float), np.asarray(measured, float)
    if len(raw) < 3:
        return float("nan")
    errs = []
    for i in range(len(raw)):
        keep = np.arange(len(raw)) != i
        a, b = fit_calibration(raw[keep], measured[keep])
        errs.append((a * raw[i] + b - measured[i]) / measured[i])
    return float(np.sqrt(np.mean(np.square(errs))) * 100)


class LatencyPredictor:
    """Predicts end-to-end latency (ms) of subnets of ``supernet`` from ``table``.

    ``supernet`` must be the network the table was built for (model, input shape and search space are
    checked); pass ``device`` (a backend's ``describe()`` plus the machine's keys) to check the table was
    measured on this kind of machine and runtime.
    """

    def __init__(self, table: Union[LatencyTable, str], supernet, device: Optional[dict] = None):
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        fp = self.table.fingerprint
        check({"model": fp.get("model"), "input_shape": list(supernet.input_shape), "space_hash": space_hash(supernet)},
              fp, MODEL_KEYS, "network")
        if device is not None:
            check(device, fp, [k for k in DEVICE_KEYS if k in device], "machine/runtime")
        self.supernet = supernet
        self.units = units_of(supernet)
        self.baseline_ms = self.table.baseline_ms()
        entries = self.table.units()
        self._lookup = []
        by_sig = {sig: df for sig, df in entries.groupby("signature")}
        for u in self.units:
            df = by_sig.get(u.sig.key)
            if df is None:
                raise SlimnasError(f"the table has no entries for layer {u.layer} ({u.sig.key}); profile again")
            ins = np.array(sorted(df["cin"].astype(int).unique()))
            outs = np.array(sorted(df["cout"].astype(int).unique()))
            grid = np.full((len(ins), len(outs)), np.nan)
            grid[np.searchsorted(ins, df["cin"].astype(int)), np.searchsorted(outs, df["cout"].astype(int))] = \
                df["median_ms"].astype(float).to_numpy() - self.baseline_ms
            self._lookup.append((u, ins, outs, grid))
        cal = self.table.calibration() or {}
        self.a = float(cal.get("a", 1.0))
        self.b = float(cal.get("b", self._fixed_ms()))
        self.error_pct = float(cal.get("loo_rmspe_pct", float("nan")))
        self.reference_probe_ms = float(cal.get("probe_ms", self.table.probe_ms()))
        self.speed = 1.0

    # -- the model -------------------------------------------------------------------------------------------
    def widths(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        if isinstance(subnets, np.ndarray):
            return np.atleast_2d(subnets)
        return self.supernet.widths_matrix(list(subnets))

    def raw(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Sum of the units' net entries (ms), per subnet: no fixed part, no calibration."""
        w = self.widths(subnets)
        total = np.zeros(len(w))
        for u, ins, outs, grid in self._lookup:
            cin, cout = u.widths(w)
            i, j = np.searchsorted(ins, cin), np.searchsorted(outs, cout)
            i, j = np.minimum(i, len(ins) - 1), np.minimum(j, len(outs) - 1)
            bad = (ins[i] != cin) | (outs[j] != cout)
            values = grid[i, j]
            if bad.any() or np.isnan(values).any():
                k = int(np.argmax(bad | np.isnan(values)))
                raise SlimnasError(f"layer {u.layer}: widths ({int(cin[k])}, {int(cout[k])}) are not in the table; "
                                   "profile the space this subnet comes from")
            total += values
        return total

    def predict(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Predicted end-to-end latency in ms for each subnet (or each row of a width matrix)."""
        return (self.a * self.raw(subnets) + self.b) * self.speed

    # -- calibration and drift -------------------------------------------------------------------------------
    def _fixed_ms(self) -> float:
        """The fixed part measured as whole-network time minus the units' sum (0 if not measured)."""
        models = self.table.of_kind("model")
        if not len(models):
            return 0.0
        by_hash = {s.hash: s for s in self._calibration_subnets(models)}
        rows = [(by_hash[h], float(m)) for h, m in zip(models["signature"], models["median_ms"]) if h in by_hash]
        if not rows:
            return 0.0
        raw = self.raw([s for s, _ in rows])
        return float(np.median(np.array([m for _, m in rows]) - raw))

    def _calibration_subnets(self, models) -> list[Subnet]:
        from .profiler import calibration_subnets

        return calibration_subnets(self.supernet, max(len(models), 1))

    def calibrate(self, subnets: Sequence[Subnet], measured_ms: Sequence[float], probe_ms: float) -> dict:
        """Fit (a, b) on end-to-end medians measured while the reference probe ran at ``probe_ms``."""
        raw = self.raw(subnets)
        measured = np.asarray(measured_ms, float)
        self.a, self.b = fit_calibration(raw, measured)
        self.error_pct = loo_rmspe(raw, measured)
        self.reference_probe_ms = float(probe_ms)
        self.speed = 1.0
        return {"a": self.a, "b": self.b, "loo_rmspe_pct": self.error_pct, "probe_ms": self.reference_probe_ms,
                "n": len(measured), "subnets": [s.hash for s in subnets], "measured_ms": measured.tolist(),
                "raw_ms": raw.tolist()}

    def rescale(self, probe_now_ms: float) -> float:
        """Follow the machine's speed: predictions scale by probe now / probe at calibration."""
        self.speed = float(probe_now_ms) / self.reference_probe_ms
        return self.speed
