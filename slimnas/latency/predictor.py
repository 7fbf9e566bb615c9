"""``LatencyPredictor``: a table's per-unit entries summed over a subnet's layers, calibrated end to end.

raw_k(subnet) = Σ over units of kind k of (entry at the unit's (in, out) widths − the empty-call baseline)
predict(subnet) = (Σ_k a_k · raw_k + Σ_t c_t · x_t + b) · speed, where x_t are the analytic terms the calibration
chose (``weights``: millions of parameters, which a whole network streams from a farther cache or memory and no
entry timed alone holds; ``flops``: MFLOPs; none where the entries add up), and the slopes a_k, c_t and the fixed part b are fitted on
a few end-to-end measurements (see :mod:`.calibration`), and ``speed`` is the reference probe now over the probe at
calibration time (a fixed part of a predictor: following the machine's speed makes a new predictor). An entry
timed in several passes is worth its best one. With ``drift_corrected`` calibrations each measured entry is
first rescaled by the table's reference probe over the probe timed closest before it, so entries timed while
the machine ran slower or faster are put on one speed. Everything is vectorised over a width matrix: one numpy
gather per unit.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ..errors import SlimnasError
from ..subnet import Subnet
from . import calibration
from .calibration import KINDS, TERMS, Calibration
from .calibration_set import calibration_rows
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

    A predictor is a value: its calibration and its ``speed`` are fixed when it is made, so anything that keeps
    its predictions (the search's :class:`~slimnas.search.costs.CostTable`) stays right. :meth:`rescale`,
    :meth:`at_speed` and :meth:`calibrated` return new predictors (sharing the table's lookups); assigning an
    attribute raises.
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
        self.drift_corrected = bool(cal.get("drift_corrected", False))
        self._lookup = self._build_lookup(self.drift_corrected)
        self.speed = 1.0
        self._set(Calibration.from_dict(cal, default_b=self._fixed_ms() if "b" not in cal else 0.0))
        self.reference_probe_ms = float(cal.get("probe_ms", self.table.probe_ms()))
        self._frozen = True

    # -- a value: no attribute changes after construction ---------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"LatencyPredictor.{name} cannot be changed: a predictor is a value "
                                 "(use rescale(), at_speed() or calibrated() for a new one)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"LatencyPredictor.{name} cannot be deleted: a predictor is a value")

    def _replace(self, **changes) -> "LatencyPredictor":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def _build_lookup(self, drift_corrected: bool) -> list:
        """One (in widths, out widths, net-entry grid) per unit, entries optionally put on one machine speed."""
        entries = self.table.units()
        reference = self.table.probe_ms() if drift_corrected else 1.0
        by_sig = {sig: df for sig, df in entries.groupby("signature")}
        lookup = []
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
            for a in (ins, outs, grid):
                a.flags.writeable = False  # shared by every predictor made from this one
            lookup.append((u, KINDS.index(u.sig.kind), ins, outs, grid))
        return lookup

    def _with_drift_correction(self, drift_corrected: bool) -> "LatencyPredictor":
        """The same predictor over entries put on one speed (or not): what :meth:`calibrated` fits on."""
        if drift_corrected == self.drift_corrected:
            return self
        return self._replace(drift_corrected=drift_corrected, _lookup=self._build_lookup(drift_corrected))

    def _set(self, cal: Calibration) -> None:  # construction only
        self.calibration = cal
        self.slopes = _frozen_array([cal.slope(k) for k in KINDS])
        self.a, self.b, self.error_pct = cal.a, cal.b, cal.loo_rmspe_pct
        self.terms = dict(cal.terms)

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
            total[:, kind] += values * u.kept(w)
        return total

    def raw(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Sum of the units' net entries (ms), per subnet: no fixed part, no calibration."""
        return self.raw_by_kind(subnets).sum(1)

    def term_values(self, subnets: Union[Sequence[Subnet], np.ndarray], names: Sequence[str] = TERMS) -> dict[str, np.ndarray]:
        """The analytic terms per subnet: ``weights`` (millions of parameters), ``flops`` (MFLOPs) and ``blocks`` (the
        skippable blocks kept: the width matrix's block columns summed)."""
        w = self.widths(subnets)
        cost = self.supernet.cost
        fns = {"weights": lambda m: cost.params(m) / 1e6, "flops": lambda m: cost.flops(m) / 1e6, "blocks": cost.kept_blocks}
        return {t: np.asarray(fns[t](w), float).reshape(-1) for t in names}

    def predict(self, subnets: Union[Sequence[Subnet], np.ndarray]) -> np.ndarray:
        """Predicted end-to-end latency in ms for each subnet (or each row of a width matrix)."""
        w = self.widths(subnets)
        out = self.raw_by_kind(w) @ self.slopes + self.b
        for t, x in self.term_values(w, list(self.terms)).items():
            out = out + self.terms[t] * x
        return out * self.speed

    # -- calibration and drift -------------------------------------------------------------------------------
    def _fixed_ms(self) -> float:
        """The fixed part measured as whole-network time minus the units' sum (0 if not measured)."""
        subnets, measured, _ = calibration_rows(self.table, self.supernet)
        return float(np.median(np.asarray(measured) - self.raw(subnets))) if subnets else 0.0

    def calibrated(self, subnets: Sequence[Subnet], measured_ms: Sequence[float], probe_ms: float,
                   drift_corrected: bool = True, ridges: Optional[Sequence[float]] = None) -> tuple["LatencyPredictor", dict]:
        """A new predictor with per-kind slopes and the fixed part fitted on end-to-end latencies measured while
        the reference probe ran at ``probe_ms`` (its speed 1 at that probe), and what ``calibration.json`` stores."""
        base = self._with_drift_correction(drift_corrected)
        raw_k = base.raw_by_kind(subnets)
        measured = np.asarray(measured_ms, float)
        cal = calibration.calibrate(raw_k, measured, KINDS, ridges, terms=base.term_values(subnets))
        new = base._replace(calibration=cal, slopes=_frozen_array([cal.slope(k) for k in KINDS]), a=cal.a, b=cal.b,
                            error_pct=cal.loo_rmspe_pct, terms=dict(cal.terms),
                            reference_probe_ms=float(probe_ms), speed=1.0)
        return new, {**cal.to_dict(), "drift_corrected": drift_corrected, "probe_ms": new.reference_probe_ms,
                     "n": len(measured), "subnets": [s.hash for s in subnets], "measured_ms": measured.tolist(),
                     "raw_ms": raw_k.sum(1).tolist(), "raw_ms_by_kind": {k: raw_k[:, i].tolist() for i, k in enumerate(KINDS)}}

    def at_speed(self, speed: float) -> "LatencyPredictor":
        """A new predictor whose predictions are this calibration's times ``speed``."""
        speed = float(speed)
        if not np.isfinite(speed) or speed <= 0:
            raise SlimnasError(f"a predictor's speed must be a positive number, got {speed}")
        return self._replace(speed=speed)

    def rescale(self, probe_now_ms: float) -> "LatencyPredictor":
        """A new predictor following the machine's speed: predictions scale by probe now / probe at calibration."""
        return self.at_speed(float(probe_now_ms) / self.reference_probe_ms)


def _frozen_array(values) -> np.ndarray:
    a = np.array(values, dtype=float)
    a.flags.writeable = False
    return a


def _drift_factors(df, reference_ms: float) -> np.ndarray:
    """Reference probe over the probe timed before each row; rows without one (interpolated) get the median
    factor of their signature's measured rows."""
    import pandas as pd

    f = reference_ms / pd.to_numeric(df["probe_ms"], errors="coerce").to_numpy(float)
    ok = (df["source"] == "measured").to_numpy() & np.isfinite(f) & (f > 0)
    return np.where(ok, f, float(np.median(f[ok])) if ok.any() else 1.0)
