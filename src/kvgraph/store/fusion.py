"""Fusing ranked lists from different retrievers (pure functions, numpy in and out)."""

from __future__ import annotations

import numpy as np


def rrf(rankings: list[np.ndarray], k: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion: score(d) = sum over lists of 1 / (k + rank of d), rank from 1.

    Each ranking is an array of item ids, best first. Returns (ids, scores), best first.
    """
    ids = np.concatenate(rankings) if rankings else np.zeros(0, dtype=np.int64)
    contrib = np.concatenate([1.0 / (k + np.arange(1, len(r) + 1)) for r in rankings]) if rankings else np.zeros(0)
    return _sum_by_id(ids, contrib)


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant list becomes all ones (every item equally best)."""
    if not len(scores):
        return scores.astype(np.float64)
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo < 1e-12:
        return np.ones(len(scores))
    return (scores - lo) / (hi - lo)


def alpha_fusion(
    dense_ids: np.ndarray, dense_scores: np.ndarray, sparse_ids: np.ndarray, sparse_scores: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """alpha * normalized dense + (1 - alpha) * normalized sparse; absent from a list counts as 0."""
    ids = np.concatenate([dense_ids, sparse_ids])
    contrib = np.concatenate([alpha * min_max(dense_scores), (1 - alpha) * min_max(sparse_scores)])
    return _sum_by_id(ids, contrib)


def _sum_by_id(ids: np.ndarray, contrib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(ids):
        return ids.astype(np.int64), contrib.astype(np.float64)
    uniq, inv = np.unique(ids, return_inverse=True)
    total = np.bincount(inv, weights=contrib, minlength=len(uniq))
    # stable order: score desc, then id asc
    order = np.lexsort((uniq, -total))
    return uniq[order], total[order]
