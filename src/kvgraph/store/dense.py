"""Exact dense scoring and top-k selection (pure functions over numpy arrays).

Exact top-k by inner product runs faiss's brute-force kernels when faiss is installed (the
``kvgraph[ann]`` extra) and blocked numpy matrix products otherwise; both return the same
rows, ties broken by lower row (bench/README.md compares their speed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from kvgraph.store.ann import optional_faiss

BLOCK_ROWS = 65_536  # rows gathered at once when scoring a subset: bounds temporary memory
# The numpy top-k scores at most this many (query, row) pairs at once (32 MB of float32):
# one query scans BLOCK_ROWS rows per block, a batch of 1,000 queries 8,192.
SCORES_PER_BLOCK = 1 << 23
GATHER_ROWS = 16_384  # rows of a subset the numpy top-k copies at once (25 MB at 384-d)


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
    faiss IndexFlatIP. Ties are broken by lower row, like :func:`top_k`. Without faiss,
    :func:`knn_inner_product_numpy` gives the same rows.
    """
    faiss = optional_faiss()
    if faiss is None:
        return knn_inner_product_numpy(matrix, queries, k, rows)
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
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype=np.int64)  # a list works too, here and for ties
    with _single_query_threads(faiss, nq):
        _faiss_knn(faiss, q, matrix, rows, d, nq, n_cand, kk, scores, out_rows)
    return _settle_ties(matrix, rows, q, k, kk, out_rows, scores)


@contextlib.contextmanager
def _single_query_threads(faiss: Any, nq: int) -> Iterator[None]:
    """One OpenMP thread for a single query (this thread only; OpenMP settings are per thread).

    For one query faiss splits the rows between its threads and merges their heaps; on 2 cores,
    right after the embedding model's threads ran, that took 3-4x longer than one thread (10k
    rows, k 30: 1.19 vs 0.33 ms; 100k: 14.9 vs 6.1 ms; bench/README.md "Exact search without
    faiss"). Several queries are split between threads, which pays (32 queries at 10k: 4.9 vs
    10.4 ms).
    """
    if nq != 1:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_knn(
    faiss: Any,
    q: np.ndarray,
    matrix: np.ndarray,
    rows: np.ndarray | None,
    d: int,
    nq: int,
    n_cand: int,
    kk: int,
    scores: np.ndarray,
    out_rows: np.ndarray,
) -> None:
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


def _settle_ties(
    matrix: np.ndarray,
    rows: np.ndarray | None,
    q: np.ndarray,
    k: int,
    kk: int,
    out_rows: np.ndarray,
    scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    nq = len(q)
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


def knn_inner_product_numpy(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    rows: np.ndarray | None = None,
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_inner_product` in numpy: the same (rows, scores), ties broken by lower row.

    The candidates are scored a block of rows at a time (one matrix product each; ``block_rows``
    per block, by default as many as keep the block's scores within :data:`SCORES_PER_BLOCK`, and
    at most :data:`GATHER_ROWS` when a subset's rows must be copied);
    each block's top k (:func:`top_k_rows_chunked`) is merged with the best k so far, so memory
    stays bounded by the block whatever the number of rows.
    """
    n_cand = len(matrix) if rows is None else len(rows)
    k = min(k, n_cand)
    nq = len(queries)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    step = block_rows or max(1_024, min(BLOCK_ROWS, SCORES_PER_BLOCK // max(nq, 1)))
    if rows is not None and block_rows is None:
        step = min(step, GATHER_ROWS)  # a subset's rows are copied out of the matrix: a smaller block
    best_rows = np.zeros((nq, 0), dtype=np.int64)
    best_scores = np.zeros((nq, 0), dtype=np.float32)
    if k == 0:
        return best_rows, best_scores
    for s in range(0, n_cand, step):
        if rows is None:
            ids = np.arange(s, min(s + step, n_cand), dtype=np.int64)
            block = np.asarray(matrix[s : s + step])
        else:
            ids = np.asarray(rows[s : s + step], dtype=np.int64)
            block = matrix[ids]
        # one query: a matrix-vector product (gemv), faster than a one-row matrix product
        scores = (block @ q[0])[None, :] if nq == 1 else q @ block.T
        top, top_scores = top_k_rows_chunked(np.asarray(scores, dtype=np.float32), k)
        top_rows = ids[top]
        if best_scores.shape[1]:
            # The best so far come first: every one of their rows is lower than this block's, and
            # top_k_rows breaks ties by position, so a tie still goes to the lower row.
            top_scores = np.concatenate([best_scores, top_scores], axis=1)
            top_rows = np.concatenate([best_rows, top_rows], axis=1)
            pick = top_k_rows(top_scores, k)
            top_scores = np.take_along_axis(top_scores, pick, axis=1)
            top_rows = np.take_along_axis(top_rows, pick, axis=1)
        best_rows, best_scores = top_rows, top_scores
    return best_rows, best_scores


def top_k_rows_chunked(scores: np.ndarray, k: int, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top k of a (queries, items) score matrix as (indices, scores), like :func:`top_k_rows`.

    A full selection (argpartition) costs ~8 ns per score; this reads each score once more for
    the maximum of its chunk of ``chunk`` items (~1 ns). The k-th largest chunk maximum is a floor:
    at least k scores reach it (one in each of those chunks), so the top k lie in the chunks whose
    maximum reaches it, typically about k of them, and only their scores are sorted.
    """
    nq, n = scores.shape
    k = min(k, n)
    if k == 0 or n < 8 * k or n < 4 * chunk:
        top = top_k_rows(scores, k)
        return top, np.take_along_axis(scores, top, axis=1)
    chunk = min(chunk, n // (2 * k))  # at least 2k chunks, so the floor is a real cut
    n_chunks = -(-n // chunk)
    # fmax: a NaN must not hide the real scores of its chunk (NaN is never among the top k)
    maxima = np.fmax.reduceat(scores, np.arange(0, n, chunk), axis=1)  # (queries, chunks)
    floor = np.partition(maxima, n_chunks - k, axis=1)[:, n_chunks - k]
    qi, ch = np.nonzero(maxima >= floor[:, None])
    cols = ch[:, None] * chunk + np.arange(chunk)  # the items of those chunks (the last may be short)
    inside = cols < n
    vals = scores[qi[:, None], np.minimum(cols, n - 1)]
    keep = inside & (vals >= floor[qi][:, None])
    qi, cols, vals = np.broadcast_to(qi[:, None], cols.shape)[keep], cols[keep], vals[keep]
    counts = np.bincount(qi, minlength=nq)
    if (counts < k).any():  # only NaN scores can leave a query short: select the plain way
        top = top_k_rows(scores, k)
        return top, np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((cols, -vals, qi))  # by query, then best first, then lower index
    pick = (np.cumsum(counts) - counts)[:, None] + np.arange(k)  # the first k of each query's run
    return cols[order][pick], vals[order][pick]


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
