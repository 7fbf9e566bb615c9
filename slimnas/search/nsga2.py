"""NSGA-II's pieces (Deb et al., 2002), vectorised with numpy. Every objective here is minimised.

``points`` is an ``[n, m]`` array, one row per individual. Ties are broken by row order, so the same input
always gives the same output.
"""
from __future__ import annotations

import random

import numpy as np


def dominates(points: np.ndarray) -> np.ndarray:
    """``[n, n]`` boolean matrix: ``d[i, j]`` when row i is no worse than row j everywhere and better somewhere."""
    p = np.asarray(points, dtype=float)
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    return le & lt


def non_dominated_sort(points: np.ndarray) -> np.ndarray:
    """Front number of each row: 0 for the non-dominated rows, 1 for those only they dominate, and so on."""
    d = dominates(points)
    n = len(d)
    rank = np.full(n, -1, dtype=int)
    count = d.sum(axis=0)  # how many rows dominate each row
    front = np.flatnonzero(count == 0)
    r = 0
    while front.size:
        rank[front] = r
        count = count - d[front].sum(axis=0)
        count[rank >= 0] = -1
        front = np.flatnonzero(count == 0)
        r += 1
    return rank


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Rows no other row dominates (two objectives: one sort and a sweep, so long histories stay cheap)."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or p.shape[1] != 2:
        return ~dominates(p).any(axis=0)
    order = np.lexsort((p[:, 1], p[:, 0]))
    mask = np.zeros(len(p), dtype=bool)
    best_before = np.inf  # smallest second objective among rows with a strictly smaller first one
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and p[order[j], 0] == p[order[i], 0]:
            j += 1
        group = order[i:j]
        lowest = p[group[0], 1]
        mask[group] = ~((best_before <= p[group, 1]) | (lowest < p[group, 1]))
        best_before = min(best_before, lowest)
        i = j
    return mask


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """Crowding distance within one front: the ends are infinite, others sum normalised neighbour gaps."""
    p = np.asarray(points, dtype=float)
    n, m = p.shape
    dist = np.zeros(n)
    if n <= 2:
        dist[:] = np.inf
        return dist
    for k in range(m):
        order = np.argsort(p[:, k], kind="stable")
        col = p[order, k]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def rank_and_crowding(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front number and crowding distance (computed within each front) of every row."""
    p = np.asarray(points, dtype=float)
    rank = non_dominated_sort(p)
    crowd = np.zeros(len(p))
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        crowd[idx] = crowding_distance(p[idx])
    return rank, crowd


def order_by_rank_and_crowding(rank: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Row indices, best first: lower front, then larger crowding distance, then row order."""
    return np.lexsort((np.arange(len(rank)), -crowd, rank))


def select_survivors(points: np.ndarray, k: int) -> np.ndarray:
    """(mu + lambda) survival: the indices of the ``k`` best rows by (front, crowding), best first."""
    rank, crowd = rank_and_crowding(points)
    return order_by_rank_and_crowding(rank, crowd)[:k]


def tournament(rank: np.ndarray, crowd: np.ndarray, rng: random.Random) -> int:
    """Binary tournament: two random rows, the one with the lower front (then larger crowding) wins."""
    n = len(rank)
    a, b = rng.randrange(n), rng.randrange(n)
    if (rank[b], -crowd[b]) < (rank[a], -crowd[a]):
        return b
    return a
