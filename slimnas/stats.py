"""Small statistics shared by ranking and latency validation."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties counted as in scipy.stats.kendalltau)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("kendall_tau needs two sequences of the same length >= 2")
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n0 = len(i)
    n1, n2 = np.sum(da == 0), np.sum(db == 0)
    denom = np.sqrt((n0 - n1) * (n0 - n2))
    return float(np.sum(da * db) / denom) if denom > 0 else float("nan")
