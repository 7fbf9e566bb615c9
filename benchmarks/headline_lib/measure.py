"""Measured latency, relative to the base model timed in the same fresh process.

Every call starts ``slimnas.latency.worker`` processes (one by default) that times the base model and the given models in
interleaved rounds with the reference probe (:func:`slimnas.latency.e2e.time_onnx_files`). A model's latency is
the project's end-to-end statistic (:class:`~slimnas.latency.E2EConfig`; by default the quietest round's median,
since other jobs on a shared machine only ever slow a round down) and its ratio to the base is taken within
the run, so a change of machine speed cancels out; budgets are fractions of the base, as DESIGN.md asks.
The repeat error of a ratio is how far the ratio from the even rounds and the ratio from the odd rounds
disagree (two independent half-length measurements taken side by side). A timing may run in several fresh
processes (``E2EConfig.processes``): one process's ratios were off by up to 20% on a shared VM while its own
rounds agreed within 1-2%, so the ratio is then the median over processes and the repeat error includes the
spread across them.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch import nn

from slimnas.export import export_onnx, layer_shapes
from slimnas.latency.backends import BackendConfig
from slimnas.latency.e2e import E2EConfig, median_se_pct, time_onnx_files
from slimnas.latency.timing import TimingConfig
from slimnas.pipeline.verify import state_off, within_state


@dataclass(frozen=True)
class Measurement:
    latency_ms: float  # under the run's statistic (quietest round's median by default)
    median_ms: float  # all rounds' samples pooled
    p10_ms: float
    p90_ms: float
    ratio: float  # latency / the base's latency, same run, same statistic
    ratio_p10: float  # 10th and 90th percentiles of the per-round ratios (round median / base round median)
    ratio_p90: float
    repeat_pct: float  # |ratio from the even rounds - ratio from the odd rounds| / ratio, in %
    n: int  # timed samples

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MeterConfig:
    backend: str = "onnxruntime"
    threads: int = 1
    batch: int = 1


def architecture_key(model: nn.Module) -> str:
    """A short hash of every conv/BN/linear layer's shape: equal keys, equal latency."""
    text = json.dumps(layer_shapes(model), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def onnx_for(model: nn.Module, folder: Path, input_shape: tuple[int, ...], name: str | None = None) -> Path:
    """``model`` as ONNX in ``folder`` (named by its architecture unless ``name`` is given; reused if present)."""
    path = Path(folder) / f"{name or architecture_key(model)}.onnx"
    if not path.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(model.eval(), path, input_shape)
    return path


def _stat(rounds: np.ndarray, statistic: str) -> float:
    return float(rounds.min() if statistic == "best_round" else np.median(rounds))


def ratio_stats(model_rounds: Sequence[float], base_rounds: Sequence[float], statistic: str) -> tuple[float, float, float, float]:
    """(ratio, p10 and p90 of the per-round ratios, even-vs-odd repeat error in %) of one model to the base."""
    m, b = np.asarray(model_rounds, float), np.asarray(base_rounds, float)
    per_round = m / b

    def ratio(idx: slice) -> float:
        if statistic == "best_round":
            return _stat(m[idx], statistic) / _stat(b[idx], statistic)
        return float(np.median(per_round[idx]))

    r = ratio(slice(None))
    repeat = abs(ratio(slice(0, None, 2)) - ratio(slice(1, None, 2))) / r * 100 if len(m) >= 2 else float("nan")
    return r, float(np.percentile(per_round, 10)), float(np.percentile(per_round, 90)), repeat


class Meter:
    """Times ONNX files against one base ONNX file, interleaved, in a fresh process per call."""

    def __init__(self, base_onnx: Path, config: MeterConfig = MeterConfig()):
        self.base_onnx = Path(base_onnx)
        self.config = config

    def measure(self, paths: Sequence[Path], e2e: E2EConfig,
                dtypes: Optional[Sequence[str]] = None) -> tuple[Measurement, list[Measurement], dict]:
        """(base, each model, raw worker output) from ``e2e.processes`` fresh timing processes: with several, a
        model's ratio is the median over processes of its ratio within each one, and its repeat error the larger
        of two: how far that median taken over every process's even rounds and over its odd rounds disagree (the
        even-vs-odd error of the combined ratio, which shrinks as processes are added, where the median of the
        processes' own errors would not), and the standard error of the median across processes.

        ``dtypes`` (one per path): ``"int8"`` times that FP32 file as its INT8 (QDQ) graph, quantized in the worker
        with slimnas's settings, beside the FP32 base in the same rounds; a file already quantized is timed as it
        is (``"fp32"``, the default)."""
        c = self.config
        raw = time_onnx_files([self.base_onnx, *paths], c.backend, BackendConfig("cpu", c.threads, c.batch),
                              TimingConfig(), e2e, dtypes=None if dtypes is None else ["fp32", *dtypes])
        procs = raw["processes"]
        out = []
        for i, m in enumerate(raw["models"]):
            each = [ratio_stats(r["models"][i]["round_medians_ms"], r["models"][0]["round_medians_ms"], e2e.statistic)
                    for r in procs]
            ratios = np.array([e[0] for e in each])
            ratio = float(np.median(ratios))
            per_round = np.concatenate([np.asarray(r["models"][i]["round_medians_ms"], float)
                                        / np.asarray(r["models"][0]["round_medians_ms"], float) for r in procs])
            between = float(median_se_pct(np.log(ratios)))
            halves = [[ratio_stats(r["models"][i]["round_medians_ms"][h::2], r["models"][0]["round_medians_ms"][h::2],
                                   e2e.statistic)[0] for r in procs] for h in (0, 1)] if e2e.rounds >= 2 else None
            own = abs(np.median(halves[0]) - np.median(halves[1])) / ratio * 100 if halves else float("nan")
            repeat = max(float(own), between) if np.isfinite(own) else between
            out.append(Measurement(e2e.latency_ms(m), m["median_ms"], m["p10_ms"], m["p90_ms"], ratio,
                                   float(np.percentile(per_round, 10)), float(np.percentile(per_round, 90)), repeat,
                                   m["n"]))
        return out[0], out[1:], raw


@dataclass(frozen=True)
class StateGate:
    """When a closing run may decide budget shares: its base at most ``tol_pct`` slower than the base measured when
    the budgets were set. A model's ratio to the base moves with the machine's state, not only its noise: on the 2-core Xeon VM,
    with the base 17% slower than when the budgets were set, every one of 15 ratios was 9.5% higher than an hour
    before (benchmarks/results/headline/ladder-xeon/agreement-40vs40/), so a share of the budget measured then is not
    the share of the budget that was set. Slower states raise the ratios, quieter ones do not lower them: three
    closing runs hours apart with the base 0.6-1.2% faster than when the budgets were set agreed (mean change of the
    ratios +0.02% and -0.07%, every one within two repeat errors), one with the base 1.3% slower had every ratio 2.4%
    higher (agreement-5-vs-D/, agreement-D-vs-E/, agreement-A-vs-D/ there); hence a one-sided 1% tolerance. Before
    the closing run a probe, the closing run itself in a few processes (the base timed among the same models: timed
    alone with the budgets' settings it read 1.6-2.7% slower than the closing run right after, ladder-xeon/closingE/results.json),
    is repeated every ``poll_s`` until it is within the tolerance or ``wait_s`` have passed; a closing run whose own
    base is off is timed again while the wait allows; it then goes on either way and records how far off it was."""

    tol_pct: float = 1.0  # 0: no gate (the closing run is taken in whatever state the machine is in)
    wait_s: float = 0.0  # longest wait for the machine to come back, over the whole closing run (headline.py: 30 min)
    poll_s: float = 120.0  # time between probes while waiting
    closing_runs: int = 2  # a closing run whose own base is off is retimed (time left permitting) up to this many in all

    def __post_init__(self) -> None:
        if self.tol_pct < 0 or self.wait_s < 0 or self.poll_s <= 0 or self.closing_runs < 1:
            raise ValueError(f"state gate needs tol_pct >= 0, wait_s >= 0, poll_s > 0 and closing_runs >= 1, got {self}")

    @property
    def on(self) -> bool:
        return self.tol_pct > 0

    def within(self, base_ms: float, reference_ms: float) -> bool:
        """At most ``tol_pct`` slower than the budgets' state (any faster state is as good: see the class); the rule
        slim's verification applies (:func:`slimnas.pipeline.verify.within_state`)."""
        return not self.on or within_state(base_ms, reference_ms, self.tol_pct / 100)


def off_pct(base_ms: float, reference_ms: float) -> float:
    """How far (in %) the base's latency now is from its latency when the budgets were set."""
    return state_off(base_ms, reference_ms) * 100


def await_state(probe, reference_ms: float, gate: StateGate, deadline: float, log=print,
                clock=time.monotonic, sleep=time.sleep) -> list[dict]:
    """Probe (``probe()`` returns the base's latency in ms) until the machine is at most ``gate.tol_pct`` slower than
    ``reference_ms`` or the clock passes ``deadline``; every probe, in order, as
    ``{"t_s", "base_ms", "off_pct"}`` (t_s from the first). Nothing is probed when the gate is off or the deadline has
    passed (``wait_s`` 0: the closing run is timed at once and its own base records the state)."""
    if not gate.on or clock() >= deadline:  # no gate, or no time to wait: the closing run itself shows the state
        return []
    polls: list[dict] = []
    t0 = clock()
    while True:
        ms = float(probe())
        polls.append({"t_s": round(clock() - t0, 1), "base_ms": ms, "off_pct": off_pct(ms, reference_ms)})
        if gate.within(ms, reference_ms):
            return polls
        if clock() + gate.poll_s > deadline:
            log(f"machine state: the base times {ms:.4f} ms, {off_pct(ms, reference_ms):+.1f}% from its "
                f"{reference_ms:.4f} ms when the budgets were set (tolerance {gate.tol_pct:g}%); no time left to wait")
            return polls
        log(f"machine state: the base times {ms:.4f} ms, {off_pct(ms, reference_ms):+.1f}% from its "
            f"{reference_ms:.4f} ms when the budgets were set (tolerance {gate.tol_pct:g}%); probing again in "
            f"{gate.poll_s:.0f} s")
        sleep(gate.poll_s)


def in_state(run, probe, reference_ms: float, gate: StateGate, log=print, clock=time.monotonic,
             sleep=time.sleep) -> tuple[object, dict]:
    """``run()`` (it returns (its base's latency in ms, its result)) once the machine is back in the budgets' state,
    as far as ``gate`` lets it wait (:func:`await_state` with ``probe``), and again (up to ``gate.closing_runs`` in
    all, within the wait) while its own base is off: (the last run's result, the state it ran in)."""
    deadline = clock() + gate.wait_s
    probes: list[dict] = []
    bases: list[float] = []
    while True:
        probes += await_state(probe, reference_ms, gate, deadline, log, clock, sleep)
        base_ms, result = run()
        bases.append(float(base_ms))
        off = off_pct(base_ms, reference_ms)
        if gate.within(base_ms, reference_ms) or len(bases) >= gate.closing_runs or clock() >= deadline:
            break
        log(f"machine state: the closing run's base timed {base_ms:.4f} ms, {off:+.1f}% from when the budgets were set "
            f"(tolerance {gate.tol_pct:g}%): timing it again")
    within = gate.within(base_ms, reference_ms)
    if gate.on and not within:
        log(f"machine state: the closing run's base is {off:+.1f}% from when the budgets were set (tolerance "
            f"{gate.tol_pct:g}%): its budget shares are not decided; rerun with --retime on a quieter machine")
    return result, {"reference_ms": reference_ms, "base_ms": float(base_ms), "off_pct": off, "tol_pct": gate.tol_pct,
                    "within": within, "wait_s": gate.wait_s, "probes": probes, "closing_runs_base_ms": bases}
