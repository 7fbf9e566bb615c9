"""``profile``: build (or resume) a latency table for a supernet's search space on one backend.

Order of work: the empty-call baseline; every unit signature over its (in, out) candidate pairs on an adaptive
grid (see :mod:`.grid`), with the reference probe re-timed every ``probe_every_s``; then a few whole subnets
end to end in a fresh process (the fixed part and the calibration). Every finished measurement is appended
to ``entries.csv`` at once; a rerun answers finished entries from disk and times only what is missing.
"""
from __future__ import annotations

import datetime
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from ..subnet import Subnet
from .backends.base import Backend
from .e2e import export_subnets, time_onnx_files
from .fingerprint import machine, space_hash
from .grid import adaptive
from .probe import time_baseline, time_probe, unit_workload
from .table import LatencyTable
from .timing import TimingConfig
from .units import candidate_pairs, units_of


@dataclass(frozen=True)
class ProfileConfig:
    """How a table is built."""

    timing: TimingConfig = field(default_factory=TimingConfig)
    grid_step: int = 2  # coarse grid: every k-th candidate width of each axis (and the last)
    refine_tol: float = 0.05  # a cell whose check point misses the interpolation by more is timed in full
    probe_every_s: float = 15.0  # re-time the reference probe this often
    calibration_subnets: int = 10  # whole subnets timed end to end for the fixed part and calibration
    e2e_rounds: int = 3  # interleaved rounds of the end-to-end timing


def calibration_subnets(supernet, n: int) -> list[Subnet]:
    """Uniform-ratio subnets (narrowest to widest), then random ones, ``n`` in all (deterministic)."""
    ratios = sorted({c / g.width for g in supernet.space.groups for c in g.choices} or {1.0})
    uniform = []
    for r in np.linspace(min(ratios), max(ratios), max(2, min(n, 5))):
        s = supernet.space.uniform(float(r))
        if s not in uniform:
            uniform.append(s)
    out = uniform[:n]
    rng = random.Random(20240601)
    while len(out) < n and len(out) < supernet.space.size():
        s = supernet.space.sample(rng)
        if s not in out:
            out.append(s)
    return out


def fingerprint_for(supernet, backend: Backend, model: str, model_args: Optional[dict], config: ProfileConfig) -> dict:
    return {
        **machine(), **backend.describe(),
        "model": model, "input_shape": list(supernet.input_shape), "space_hash": space_hash(supernet),
        "model_args": model_args or {}, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "timing": asdict(config.timing), "grid_step": config.grid_step, "refine_tol": config.refine_tol,
        "format": "slimnas.latency_table/1",
    }


def profile(supernet, backend: Backend, out: Path, model: str, config: Optional[ProfileConfig] = None,
            model_args: Optional[dict] = None, log: Callable[[str], None] = print) -> LatencyTable:
    """Measure (or finish measuring) the table of ``supernet`` on ``backend`` into directory ``out``."""
    config = config or ProfileConfig()
    t_start = time.time()
    table = LatencyTable.create_or_resume(out, fingerprint_for(supernet, backend, model, model_args, config))
    batch = backend.config.batch
    timing = config.timing
    done = {(r.signature, int(r.cin), int(r.cout)): float(r.median_ms)
            for r in table.units("measured").itertuples()}
    state = {"probe": None, "probe_at": 0.0, "measured": 0, "reused": 0}

    def probe() -> float:
        if state["probe"] is None or time.time() - state["probe_at"] > config.probe_every_s:
            t = time_probe(backend, timing)
            table.append({"kind": "probe", "signature": "probe", "cin": 0, "cout": 0, **_stats(t), "source": "measured",
                          "probe_ms": t.median_ms})
            state["probe"], state["probe_at"] = t.median_ms, time.time()
        return state["probe"]

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

    interpolated = []
    for n_sig, (key, (sig, pairs)) in enumerate(signatures.items(), 1):
        def measure(cin: int, cout: int) -> float:
            if (key, cin, cout) in done:
                state["reused"] += 1
                return done[(key, cin, cout)]
            p = probe()
            t = backend.time(unit_workload(sig, cin, cout, batch), timing)
            table.append({"kind": "unit", "signature": key, "cin": cin, "cout": cout, **_stats(t),
                          "source": "measured", "probe_ms": p})
            done[(key, cin, cout)] = t.median_ms
            state["measured"] += 1
            return t.median_ms

        if sig.kind == "dwconv":
            axes = [sorted({a for a, _ in pairs})]
            result = adaptive(axes, lambda p: measure(axes[0][p[0]], axes[0][p[0]]), config.grid_step, config.refine_tol)
            values = {(axes[0][p[0]],) * 2: v for p, v in result.items()}
        else:
            axes = [sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})]
            result = adaptive(axes, lambda p: measure(axes[0][p[0]], axes[1][p[1]]), config.grid_step, config.refine_tol)
            values = {(axes[0][p[0]], axes[1][p[1]]): v for p, v in result.items()}
        for (cin, cout), (ms, source) in values.items():
            if source == "interpolated" and (key, cin, cout) not in done:
                interpolated.append({"kind": "unit", "signature": key, "cin": cin, "cout": cout, "median_ms": ms,
                                     "n": 0, "source": "interpolated"})
        log(f"[{n_sig}/{len(signatures)}] {key}: {len(values)} entries "
            f"({sum(v[1] == 'measured' for v in values.values())} measured)")

    # Interpolated rows are recomputed on every run; measured rows stay as they were appended.
    rows = table.rows[table.rows["source"] != "interpolated"]
    rows = pd.concat([rows, pd.DataFrame(interpolated, columns=table.rows.columns)], ignore_index=True) if interpolated else rows
    table.rewrite(rows)
    probe()

    # End to end: the fixed part and the calibration, in a fresh process.
    wanted = calibration_subnets(supernet, config.calibration_subnets)
    have = set(table.of_kind("model")["signature"])
    missing = [s for s in wanted if s.hash not in have]
    if missing:
        log(f"timing {len(missing)} whole subnets end to end (fresh process)")
        paths = export_subnets(supernet, missing, out / "onnx")
        res = time_onnx_files(paths, backend.name, backend.config, timing, rounds=config.e2e_rounds)
        p = float(np.median(res["probe_ms"]))
        for s, m in zip(missing, res["models"]):
            table.append({"kind": "model", "signature": s.hash, "cin": 0, "cout": 0, "median_ms": m["median_ms"],
                          "p10_ms": m["p10_ms"], "p90_ms": m["p90_ms"], "n": m["n"], "inner": 0,
                          "spread_pct": m["spread_pct"], "source": "measured", "probe_ms": p})
        for f in paths:
            f.unlink(missing_ok=True)
        try:
            (out / "onnx").rmdir()
        except OSError:
            pass
    calibrate_from_table(table, supernet)
    n_meas = len(table.units("measured"))
    n_int = len(table.units("interpolated"))
    table.update_fingerprint(probe_ms=table.probe_ms(), entries_measured=n_meas, entries_interpolated=n_int,
                             last_run={"measured": state["measured"], "reused": state["reused"],
                                       "wall_s": round(time.time() - t_start, 1)})
    log(f"table {out}: {n_meas} measured + {n_int} interpolated entries; this run timed {state['measured']} "
        f"and reused {state['reused']} in {time.time() - t_start:.0f} s")
    return table


def calibrate_from_table(table: LatencyTable, supernet) -> dict:
    """Fit the predictor's calibration on the table's end-to-end rows and store it next to the table."""
    from .predictor import LatencyPredictor

    models = table.of_kind("model")
    by_hash = {s.hash: s for s in calibration_subnets(supernet, len(models))}
    rows = [(by_hash[h], float(m), float(p)) for h, m, p in zip(models["signature"], models["median_ms"], models["probe_ms"])
            if h in by_hash]
    pred = LatencyPredictor(table, supernet)
    probe_ms = float(np.median([p for *_, p in rows]))
    cal = pred.calibrate([s for s, *_ in rows], [m for _, m, _ in rows], probe_ms)
    cal["fixed_ms"] = pred._fixed_ms()
    table.save_calibration(cal)
    return cal


def _stats(t) -> dict:
    return {"median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "n": t.n, "inner": t.inner,
            "spread_pct": round(t.spread_pct, 3)}
