"""``LatencyPredictor``: a table's per-unit entries summed over a subnet's layers, calibrated end to end.

raw_k(subnet) = Σ over units of kind k of (entry at the unit's (in, out) widths − the empty-call baseline)
predict(subnet) = (Σ_k a_k · raw_k + b) · speed, where the slopes a_k and the fixed part b are fitted on a few
end-to-end measurements (see :mod:`.calibration`), and ``speed`` is the reference probe now over the probe at
calibration time. An entry timed in several passes is worth its best one. With ``drift_corrected``
calibrations each measured entry is first rescaled by the table's reference probe over the probe timed
closest before it, so entries timed while the machine ran slower or faster are put on one speed. Everything
is vectorised over a width matrix: one numpy gather per unit.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ..errors import SlimnasError
from ..subnet import Subnet
from . import calibration
from .calibration import KINDS, Calibration
from .fingerprint import DEVICE_KEYS, MODEL_KEYS, check, space_hash
from .table import LatencyTable
from .units import units_of


def fit_calibration(raw: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """Least squares of ``measured ≈ a·raw + b`` in relative error (weights 1/measured): one slope."""
    slopes, b, _ = calibration.fit(np.asarray(raw, float)[:, None], measured)
    return float(slopes[0]), b


def loo_rmspe(raw: np.ndarray, measured: np.ndarray) -> float:
    """Leave-one-out RMS percentage error of the one-slope calibration."""
    return calibration.loo_rmspe(np.asarray(raw, float)[:, None], measured)


class LatencyPredictor:
    """Predicts end-to-end latency (ms) of subnets of ``supernet`` from ``table``.

    ``supernet`` must be the network the table was built for (model, input shape and search space are
    checked; the model's name only when ``model`` is given, since the space digest already pins its structure);
    pass ``device`` (a backend's ``describe()`` plus the machine's keys) to check the table was measured on this
    kind of machine and runtime.
    """

    def __init__(self, table: Union[LatencyTable, str], supernet, device: Optional[dict] = None,
                 model: Optional[str] = None):
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        fp = self.table.fingerprint
        check({"model": model if model is not None else fp.get("model"), "input_shape": list(supernet.input_shape), "space_hash": space_hash(supernet)},
              fp, MODEL_KEYS, "network")
        if device is not None:
            check(device, fp, [k for k in DEVICE_KEYS if k in device], "machine/runtime")
        self.supernet = supernet
        self.units = units_of(supernet)
        self.baseline_ms = self.table.baseline_ms()
        cal = self.table.calibration() or {}
        self._build_lookup(bool(cal.get("drift_corrected", False)))
        self._set(Calibration.from_dict(cal, default_b=self._fixed_ms() if "b" not in cal else 0.0))
        self.reference_probe_ms = float(cal.get("probe_ms", self.table.probe_ms()))
        self.speed = 1.0

    def _build_lookup(self, drift_corrected: bool) -> None:
        """One (in widths, out widths, net-entry grid) per unit, entries optionally put on one machine speed."""
        self.drift_corrected = drift_corrected
        entries = self.table.units()
        reference = self.table.probe_ms() if drift_corrected else 1.0
        by_sig = {sig: df for sig, df in entries.groupby("signature")}
        self._lookup = []
        for u in self.units:
            df = by_sig.get(u.sig.key)
            if df is None:
                raise SlimnasError(f"the table has no entries for layer {u.layer} ({u.sig.key}); profile again")
            cin, cout = df["cin"].astype(int).to_numpy(), df["cout"].astype(int).to_numpy()
            ins, outs = np.unique(cin), np.unique(cout)
            values = df["median_ms"].astype(float).to_numpy() - self.baseline_ms
            if drift_corrected:
                values = values * _drift_factors(df, reference)
            grid = np.full((len(ins), len(outs)), np.inf)
            np.minimum.at(grid, (np.searchsorted(ins, cin), np.searchsorted(outs, cout)), values)  # best pass
            grid[np.isinf(grid)] = np.nan
            self._lookup.append((u, KINDS.index(u.sig.kind), ins, outs, grid))

    def _set(self, cal: Calibration) -> None:
        self.calibration = cal
        self.slopes = np.array([cal.slope(k) for k in KINDS])
        self.a, self.b, self.error_pct = cal.a, cal.b, cal.loo_rmspe_pct

    # -- the model -------------------------------------------------------------------------------------------
    def widths(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        if isinstance(subnets, np.ndarray):
            return np.atleast_2d(subnets)
        return self.supernet.widths_matrix(list(subnets))

    def raw_by_kind(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Sums of the units' net entries (ms) per unit kind (columns in :data:`KINDS` order), per subnet."""
        w = self.widths(subnets)
        total = np.zeros((len(w), len(KINDS)))
        for u, kind, ins, outs, grid in self._lookup:
            cin, cout = u.widths(w)
            i, j = np.searchsorted(ins, cin), np.searchsorted(outs, cout)
            i, j = np.minimum(i, len(ins) - 1), np.minimum(j, len(outs) - 1)
            bad = (ins[i] != cin) | (outs[j] != cout)
            values = grid[i, j]
            if bad.any() or np.isnan(values).any():
                k = int(np.argmax(bad | np.isnan(values)))
                raise SlimnasError(f"layer {u.layer}: widths ({int(cin[k])}, {int(cout[k])}) are not in the table; "
                                   "profile the space this subnet comes from")
            total[:, kind] += values
        return total

    def raw(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Sum of the units' net entries (ms), per subnet: no fixed part, no calibration."""
        return self.raw_by_kind(subnets).sum(1)

    def predict(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Predicted end-to-end latency in ms for each subnet (or each row of a width matrix)."""
        return (self.raw_by_kind(subnets) @ self.slopes + self.b) * self.speed

    # -- calibration and drift -------------------------------------------------------------------------------
    def _fixed_ms(self) -> float:
        """The fixed part measured as whole-network time minus the units' sum (0 if not measured)."""
        from .profiler import calibration_rows

        subnets, measured, _ = calibration_rows(self.table, self.supernet)
        return float(np.median(np.asarray(measured) - self.raw(subnets))) if subnets else 0.0

    def calibrate(self, subnets: Sequence[Subnet], measured_ms: Sequence[float], probe_ms: float,
                  drift_corrected: bool = True, ridges: Optional[Sequence[float]] = None) -> dict:
        """Fit per-kind slopes and the fixed part on end-to-end latencies measured while the reference probe
        ran at ``probe_ms``; returns what ``calibration.json`` stores."""
        if drift_corrected != self.drift_corrected:
            self._build_lookup(drift_corrected)
        raw_k = self.raw_by_kind(subnets)
        measured = np.asarray(measured_ms, float)
        self._set(calibration.calibrate(raw_k, measured, KINDS, ridges))
        self.reference_probe_ms = float(probe_ms)
        self.speed = 1.0
        return {**self.calibration.to_dict(), "drift_corrected": drift_corrected, "probe_ms": self.reference_probe_ms,
                "n": len(measured), "subnets": [s.hash for s in subnets], "measured_ms": measured.tolist(),
                "raw_ms": raw_k.sum(1).tolist(), "raw_ms_by_kind": {k: raw_k[:, i].tolist() for i, k in enumerate(KINDS)}}

    def rescale(self, probe_now_ms: float) -> float:
        """Follow the machine's speed: predictions scale by probe now / probe at calibration."""
        self.speed = float(probe_now_ms) / self.reference_probe_ms
        return self.speed


def _drift_factors(df, reference_ms: float) -> np.ndarray:
    """Reference probe over the probe timed before each row; rows without one (interpolated) get the median
    factor of their signature's measured rows."""
    import pandas as pd

    f = reference_ms / pd.to_numeric(df["probe_ms"], errors="coerce").to_numpy(float)
    ok = (df["source"] == "measured").to_numpy() & np.isfinite(f) & (f > 0)
    return np.where(ok, f, float(np.median(f[ok])) if ok.any() else 1.0)
