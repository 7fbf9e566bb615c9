"""The timing protocol shared by every backend: warm up, then at least 30 timed samples; median, p10, p90.

A sample is the mean time of ``inner`` back-to-back calls, with ``inner`` chosen during warm-up so that one
sample lasts at least ``min_sample_ms`` (a single call of a tiny layer is shorter than the timer's noise). The
samples are taken in two halves; ``spread_pct`` is how far the halves' medians disagree, so an entry timed
while the machine changed speed is visible in the table.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np


@dataclass(frozen=True)
class TimingConfig:
    """How long and how often to time one workload."""

    warmup_ms: float = 20.0  # run at least this long (and at least 3 calls) before timing
    samples: int = 30  # timed samples (at least 30 for a table entry)
    min_sample_ms: float = 0.5  # each sample lasts at least this long (inner calls are batched)
    max_inner: int = 1000


@dataclass(frozen=True)
class Timing:
    """Summary of the samples of one workload; every value is per call, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int  # timed samples
    inner: int  # calls averaged in each sample
    spread_pct: float  # disagreement of the two halves' medians, in % of the median

    @classmethod
    def of(cls, samples_ms: np.ndarray, inner: int) -> "Timing":
        s = np.asarray(samples_ms, dtype=np.float64)
        half = len(s) // 2
        med = float(np.median(s))
        spread = abs(float(np.median(s[:half])) - float(np.median(s[half:]))) / max(med, 1e-12) * 100 if half else 0.0
        return cls(med, float(np.percentile(s, 10)), float(np.percentile(s, 90)), len(s), inner, spread)


def sample_calls(call: Callable[[int], float], config: TimingConfig) -> tuple[np.ndarray, int]:
    """Warm up, then ``config.samples`` per-call times in ms of ``call(k)`` (which runs the workload ``k``
    times and returns the elapsed milliseconds), batching ``k`` calls per sample so each lasts at least
    ``min_sample_ms``. Returns the samples and that ``k``."""
    elapsed, calls = 0.0, 0
    while elapsed < config.warmup_ms or calls < 3:
        elapsed += call(1)
        calls += 1
    per_call = max(elapsed / calls, 1e-6)
    inner = int(min(config.max_inner, max(1, np.ceil(config.min_sample_ms / per_call))))
    return np.array([call(inner) / inner for _ in range(config.samples)]), inner


def time_calls(call: Callable[[int], float], config: TimingConfig) -> Timing:
    """Median, p10/p90 and spread of :func:`sample_calls`."""
    return Timing.of(*sample_calls(call, config))


def wall_clock(run: Callable[[], object]) -> Callable[[int], float]:
    """``call(k)`` for a synchronous ``run``: perf_counter around k calls."""

    def call(k: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            run()
        return (time.perf_counter_ns() - t0) / 1e6

    return call


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at ``n``, then give the caller back its own.

    Every place in slimnas that needs a thread count sets it through this, so no public verb changes the
    count its caller trains, searches or fine-tunes with. torch is imported here, not at module level: the
    timing worker imports this module and must not pay for torch unless it times with it.
    """
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
