"""``profile``: build (or resume) a latency table for a supernet's search space on one backend.

Order of work: the empty-call baseline; every unit signature over its (in, out) candidate pairs on an adaptive
grid (see :mod:`.grid`), with the reference probe re-timed every ``probe_every_s``; a second pass that times
every measured entry again (an entry is worth its best pass: other jobs on a shared machine only slow timings
down); then whole subnets end to end in a fresh process (the fixed part and the calibration). Every finished
measurement is appended to ``entries.csv`` at once (a later pass adds a row for the same entry); a rerun
answers finished entries from disk and times only what is missing.
"""
from __future__ import annotations

import logging
import datetime
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import pandas as pd

from ..errors import SlimnasError
from .backends.base import Backend
from .calibration_set import calibration_rows, calibration_subnets
from .e2e import E2EConfig, export_subnets, time_onnx_files
from .fingerprint import machine, space_hash
from .grid import adaptive
from .predictor import LatencyPredictor
from .probe import check_probe, default_probe, time_baseline, time_probe, unit_workload
from .table import LatencyTable
from .timing import TimingConfig
from .units import candidate_pairs, units_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileConfig:
    """How a table is built."""

    timing: TimingConfig = field(default_factory=TimingConfig)
    grid_step: int = 2  # coarse grid: every k-th candidate width of each axis (and the last)
    refine_tol: float = 0.05  # a cell whose check point misses the interpolation by more is timed in full
    probe_every_s: float = 3.0  # re-time the reference probe this often (entries are put on its speed)
    passes: int = 2  # time every measured entry this many times, at different moments; keep the best
    calibration_subnets: int = 30  # whole subnets timed end to end for the fixed part and calibration
    # how those subnets are timed: in three fresh processes, combined per subnet (E2EConfig.processes; one process's
    # timings of whole networks were off by up to 20% per network on a shared VM, benchmarks/results/timing_processes/)
    e2e: E2EConfig = field(default_factory=lambda: E2EConfig(processes=3))
    drift_corrected: bool = True  # calibrate on entries rescaled by the probe timed before each
    probe: Optional[str] = None  # the reference probe (slimnas.latency.probe.PROBES); None: the dtype's default


def fingerprint_for(supernet, backend: Backend, model: str, model_args: Optional[dict], config: ProfileConfig) -> dict:
    return {
        **machine(), **backend.describe(),
        "model": model, "input_shape": list(supernet.input_shape), "space_hash": space_hash(supernet),
        "model_args": model_args or {}, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "timing": asdict(config.timing), "grid_step": config.grid_step, "refine_tol": config.refine_tol,
        "e2e": asdict(config.e2e), "passes": config.passes, "format": "slimnas.latency_table/1",
        "probe": config.probe or default_probe(backend.config.dtype),
    }


def profile(supernet, backend: Backend, out: Union[str, Path], model: str, config: Optional[ProfileConfig] = None,
            model_args: Optional[dict] = None) -> LatencyTable:
    """Measure (or finish measuring) the table of ``supernet`` on ``backend`` into directory ``out``."""
    config = config or ProfileConfig()
    out = Path(out)
    t_start = time.time()
    if config.probe is not None:
        check_probe(config.probe)
    table = LatencyTable.create_or_resume(out, fingerprint_for(supernet, backend, model, model_args, config))
    kind = table.probe  # a new table's is the one asked for (or the dtype's default); a resumed table keeps its own
    if config.probe is not None and kind != config.probe:
        raise SlimnasError(f"{out} holds a table on the {kind!r} reference probe, not {config.probe!r}: "
                           "resume it without --probe, or choose another --out")
    batch = backend.config.batch
    timing = config.timing
    first: dict[tuple, float] = {}  # each entry's first timing: the grid's decisions replay from these
    timings: dict[tuple, list[float]] = {}  # every pass's timing of each entry
    for r in table.units("measured").itertuples():
        key = (r.signature, int(r.cin), int(r.cout))
        first.setdefault(key, float(r.median_ms))
        timings.setdefault(key, []).append(float(r.median_ms))
    state = {"probe": None, "probe_at": 0.0, "measured": 0, "reused": 0}

    def probe() -> float:
        if state["probe"] is None or time.time() - state["probe_at"] > config.probe_every_s:
            t = time_probe(backend, timing, kind)
            table.append({"kind": "probe", "signature": "probe", "cin": 0, "cout": 0, **_stats(t), "source": "measured",
                          "probe_ms": t.median_ms})
            state["probe"], state["probe_at"] = t.median_ms, time.time()
        return state["probe"]

    def time_entry(sig, key: tuple) -> float:
        p = probe()
        t = backend.time(unit_workload(sig, key[1], key[2], batch), timing)
        table.append({"kind": "unit", "signature": key[0], "cin": key[1], "cout": key[2], **_stats(t),
                      "source": "measured", "probe_ms": p})
        timings.setdefault(key, []).append(t.median_ms)
        state["measured"] += 1
        return t.median_ms

    probe()
    if not len(table.of_kind("baseline")):
        t = time_baseline(backend, timing)
        table.append({"kind": "baseline", "signature": "empty-call", "cin": 1, "cout": 1, **_stats(t),
                      "source": "measured", "probe_ms": state["probe"]})

    units = units_of(supernet)
    signatures: dict[str, tuple] = {}
    for u in units:
        sig, pairs = signatures.get(u.sig.key, (u.sig, set()))
        pairs |= set(candidate_pairs(u, supernet))
        signatures[u.sig.key] = (sig, pairs)

    def grid(key: str, sig, pairs, measure: Callable[[int, int], float], value=None) -> dict:
        """{(cin, cout): (ms, source)} over the signature's adaptive grid."""
        if sig.diagonal:  # depthwise, or grouped with the group count following the width
            axes = [sorted({a for a, _ in pairs})]
            pick = lambda p: (axes[0][p[0]],) * 2  # noqa: E731
        else:
            axes = [sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})]
            pick = lambda p: (axes[0][p[0]], axes[1][p[1]])  # noqa: E731
        result = adaptive(axes, lambda p: measure(*pick(p)), config.grid_step, config.refine_tol,
                          None if value is None else (lambda p: value(*pick(p))))
        return {pick(p): v for p, v in result.items()}

    # Pass 1: the adaptive grid of every signature, each entry timed once.
    measured_keys: dict[str, list[tuple]] = {}
    for n_sig, (key, (sig, pairs)) in enumerate(signatures.items(), 1):
        def measure(cin: int, cout: int) -> float:
            k = (key, cin, cout)
            if k in first:
                state["reused"] += 1
            else:
                first[k] = time_entry(sig, k)
            return first[k]

        values = grid(key, sig, pairs, measure)
        measured_keys[key] = [(key, a, b) for (a, b), (_, source) in values.items() if source == "measured"]
        logger.info(f"[{n_sig}/{len(signatures)}] {key}: {len(values)} entries ({len(measured_keys[key])} measured)")

    # Later passes: every measured entry again, in the same order, so each is re-timed one pass-length (tens of
    # seconds) after its previous timing. Other jobs only ever slow a timing down, so an entry is worth its best
    # pass (and the passes' disagreement shows how quiet the machine was).
    for n_pass in range(2, config.passes + 1):
        again = [k for key in signatures for k in measured_keys[key] if len(timings[k]) < n_pass]
        if again:
            logger.info(f"pass {n_pass}: timing {len(again)} entries again")
        for k in again:
            time_entry(signatures[k[0]][0], k)

    # Interpolated entries from the best timings of their cells' corners (decisions replay from the first).
    interpolated = []
    for key, (sig, pairs) in signatures.items():
        values = grid(key, sig, pairs, lambda a, b: first[(key, a, b)], lambda a, b: min(timings[(key, a, b)]))
        interpolated += [{"kind": "unit", "signature": key, "cin": cin, "cout": cout, "median_ms": ms, "n": 0,
                          "source": "interpolated"} for (cin, cout), (ms, source) in values.items()
                         if source == "interpolated" and (key, cin, cout) not in first]

    # Interpolated rows are recomputed on every run; measured rows stay as they were appended.
    rows = table.rows[table.rows["source"] != "interpolated"]
    rows = pd.concat([rows, pd.DataFrame(interpolated, columns=table.rows.columns)], ignore_index=True) if interpolated else rows
    table.rewrite(rows)
    probe()

    # End to end: the fixed part and the calibration, in a fresh process. Whole-network rows timed under other
    # end-to-end settings (another statistic, fewer rounds) are timed again under these.
    if {**asdict(E2EConfig()), **(table.fingerprint.get("e2e") or {})} != asdict(config.e2e):  # keys added since: defaults
        table.rewrite(table.rows[table.rows["kind"] != "model"])
        table.update_fingerprint(e2e=asdict(config.e2e))
    wanted = calibration_subnets(supernet, config.calibration_subnets)
    have = set(table.of_kind("model")["signature"])
    missing = [s for s in wanted if s.hash not in have]
    if missing:
        logger.info(f"timing {len(missing)} whole subnets end to end (fresh process)")
        folder = out / backend.model_format
        paths = export_subnets(supernet, missing, folder, batch, fmt=backend.model_format)
        res = time_onnx_files(paths, backend.name, backend.config, timing, config.e2e, probe=kind)
        p = config.e2e.probe_ms(res["probe_ms"])
        for s, m in zip(missing, res["models"]):
            table.append({"kind": "model", "signature": s.hash, "cin": 0, "cout": 0, "median_ms": config.e2e.latency_ms(m),
                          "p10_ms": m["p10_ms"], "p90_ms": m["p90_ms"], "n": m["n"], "inner": 0,
                          "spread_pct": m["spread_pct"], "source": "measured", "probe_ms": p})
        for f in paths:
            f.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass
    calibrate_from_table(table, supernet, drift_corrected=config.drift_corrected)
    n_meas = len(first)
    n_int = len(table.units("interpolated"))
    table.update_fingerprint(probe_ms=table.probe_ms(), entries_measured=n_meas, entries_interpolated=n_int,
                             last_run={"measured": state["measured"], "reused": state["reused"],
                                       "wall_s": round(time.time() - t_start, 1)})
    logger.info(f"table {out}: {n_meas} measured + {n_int} interpolated entries; this run timed {state['measured']} "
        f"and reused {state['reused']} in {time.time() - t_start:.0f} s")
    return table


def calibrate_from_table(table: LatencyTable, supernet, drift_corrected: bool = True) -> dict:
    """Fit the predictor's calibration on the table's end-to-end rows and store it next to the table.

    Model rows hold the statistic of the table's ``e2e`` settings (tables from before them: pooled medians).
    """
    subnets, measured, probe_ms = calibration_rows(table, supernet)
    if not subnets:
        return {}
    pred = LatencyPredictor(table, supernet)
    pred, cal = pred.calibrated(subnets, measured, probe_ms, drift_corrected=drift_corrected)
    cal["fixed_ms"] = pred._fixed_ms()
    cal["e2e_statistic"] = (table.fingerprint.get("e2e") or {}).get("statistic", "median")
    table.save_calibration(cal)
    return cal


def recalibrate(table_path, supernet, drift_corrected: bool = True) -> dict:
    """Fit ``calibration.json`` again from a table's own end-to-end rows (no timing): upgrades a table
    calibrated by an older slimnas to per-kind slopes and drift correction. ``supernet`` is the network the
    table was made for (the caller builds it, e.g. :func:`slimnas.tables.supernet_for`)."""
    table = LatencyTable.load(table_path)
    if not len(table.of_kind("model")):
        raise SlimnasError(f"{table.path} has no end-to-end rows to calibrate on; run `slimnas profile` on it again")
    return calibrate_from_table(table, supernet, drift_corrected=drift_corrected)


def _stats(t) -> dict:
    return {"median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "n": t.n, "inner": t.inner,
            "spread_pct": round(t.spread_pct, 3)}
