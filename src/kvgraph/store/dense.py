"""Exact dense scoring and top-k selection (pure functions over numpy arrays)."""

from __future__ import annotations

import numpy as np

from kvgraph.store.ann import load_faiss

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


def knn_inner_product(
    matrix: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows by inner product: (rows, scores), each (queries, min(k, candidates)), best first.

    Candidates are all rows of ``matrix``, or the ascending row numbers in ``rows``.
    faiss scans them with SIMD and keeps a heap, so neither a (queries, rows) score
    matrix nor a gathered copy of the rows is materialised, and no separate selection
    pass runs: on a small collection that overhead is most of the difference to a bare
    faiss IndexFlatIP. Ties are broken by lower row, like :func:`top_k`.
    """
    faiss = load_faiss()
    n_cand = len(matrix) if rows is None else len(rows)
    k = min(k, n_cand)
    kk = min(k + 1, n_cand)  # one more: shows whether the k-th score is tied with a row left out
    nq = len(queries)
    out_rows = np.empty((nq, kk), dtype=np.int64)
    scores = np.empty((nq, kk), dtype=np.float32)
    if k == 0:
        return out_rows[:, :0], scores[:, :0]
    q = np.ascontiguousarray(queries, dtype=np.float32)
    d = matrix.shape[1]
    if rows is None:
        faiss.knn_inner_product(
            faiss.swig_ptr(q),
            faiss.swig_ptr(matrix),
            d,
            nq,
            n_cand,
            kk,
            faiss.swig_ptr(scores),
            faiss.swig_ptr(out_rows),
        )
    else:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        faiss.knn_inner_products_by_idx(
            faiss.swig_ptr(q),
            faiss.swig_ptr(matrix),
            faiss.swig_ptr(rows),
            d,
            nq,
            len(matrix),
            n_cand,
            kk,
            faiss.swig_ptr(scores),
            faiss.swig_ptr(out_rows),
            0,  # every query scans the same subset
        )
    if kk > k:
        # faiss picks arbitrarily among rows tied at the k-th score: where the row after the
        # k-th ties with it, score that query's candidates in full and choose by row order
        tied = scores[:, k] == scores[:, k - 1]
        out_rows, scores = out_rows[:, :k], scores[:, :k]
        if tied.any():
            out_rows, scores = out_rows.copy(), scores.copy()
            for i in np.flatnonzero(tied):
                all_scores = score_rows(matrix, rows, q[i : i + 1])[0]
                top = top_k(all_scores, k)
                out_rows[i] = top if rows is None else rows[top]
                scores[i] = all_scores[top]
    # equal scores inside the top k: list them by row
    if k > 1 and (len(set(scores[0].tolist())) < k if nq == 1 else (scores[:, 1:] == scores[:, :-1]).any()):
        order = np.lexsort((out_rows, -scores), axis=1)
        out_rows = np.take_along_axis(out_rows, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
    return out_rows, scores


def score_rows(matrix: np.ndarray, rows: np.ndarray | None, queries: np.ndarray) -> np.ndarray:
    """Inner products of queries (q, d) with matrix rows (all rows, or the given ones): (q, n)."""
    if rows is None:
        return np.asarray(queries @ matrix.T)
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
