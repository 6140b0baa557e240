"""Exact dense scoring and top-k selection (pure functions over numpy arrays)."""

from __future__ import annotations

import numpy as np

BLOCK_ROWS = 65_536  # rows gathered at once when scoring a subset: bounds temporary memory


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; ties broken by lower index."""
    n = len(scores)
    if k >= n:
        idx = np.arange(n)
    else:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition picks arbitrarily among items tied with the k-th: take them all
        idx = np.flatnonzero(scores >= scores[part].min())
    return idx[np.lexsort((idx, -scores[idx]))][:k]


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise top_k for a (queries, items) score matrix; returns (queries, min(k, items))."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k == n:
        part = np.tile(np.arange(n), (len(scores), 1))
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    out = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)
    if k < n:
        # rows where more than k items reach the k-th score: choose among the ties by index
        tied = (scores >= vals.min(axis=1, keepdims=True)).sum(axis=1) > k
        for r in np.flatnonzero(tied):
            out[r] = top_k(scores[r], k)
    return out


def score_rows(matrix: np.ndarray, rows: np.ndarray | None, queries: np.ndarray) -> np.ndarray:
    """Inner products of queries (q, d) with matrix rows (all rows, or the given ones): (q, n)."""
    if rows is None:
        return queries @ matrix.T
    out = np.empty((len(queries), len(rows)), dtype=np.float32)
    for s in range(0, len(rows), BLOCK_ROWS):
        block = matrix[rows[s : s + BLOCK_ROWS]]
        out[:, s : s + len(block)] = queries @ block.T
    return out


def squared_norms(matrix: np.ndarray) -> np.ndarray:
    out = np.empty(len(matrix), dtype=np.float32)
    for s in range(0, len(matrix), BLOCK_ROWS):
        block = np.asarray(matrix[s : s + BLOCK_ROWS])
        out[s : s + len(block)] = np.einsum("ij,ij->i", block, block)
    return out
