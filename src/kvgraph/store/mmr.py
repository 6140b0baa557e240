"""Maximal marginal relevance: pick results that are relevant and unlike each other."""

from __future__ import annotations

import numpy as np


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lambda_mult: float = 0.5) -> np.ndarray:
    """Indices into ``candidates`` (unit vectors, (n, d)), in pick order.

    Each step picks argmax of lambda * sim(query, c) - (1 - lambda) * max sim(c, picked).
    """
    n = len(candidates)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    relevance = candidates @ query
    picked: list[int] = []
    max_sim = np.full(n, -np.inf, dtype=np.float64)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = lambda_mult * relevance - (1 - lambda_mult) * redundancy
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, candidates @ candidates[best])
    return np.asarray(picked, dtype=np.int64)
