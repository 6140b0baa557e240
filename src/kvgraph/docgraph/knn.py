"""Nearest-neighbour pairs for ``SIMILAR`` and ``SYNONYM`` edges, without comparing every pair.

Each row's ``k`` nearest other rows by cosine, kept when at least ``threshold`` similar, as
unique pairs ``(i, j, similarity)`` with ``i < j``. Two methods:

- ``exact``: blocked matrix products (memory ``block x n``), up to :data:`EXACT_MAX` rows, where
  the quadratic cost is a fraction of a second and small graphs come out exactly as before;
- ``hnsw``: a transient faiss HNSW graph over the rows (float32, inner product), built in
  ``O(n log n)`` and searched for each row's ``k + 1`` nearest (itself included). Its
  similarities are exact dot products; only the choice of neighbours is approximate.

faiss is the optional extra ``kvgraph[ann]``: without it ``auto`` stays exact at every size (a
quadratic number of dot products, logged as a warning beyond :data:`EXACT_MAX` rows), and asking
for ``hnsw`` raises MissingDependencyError naming the extra.

:func:`knn_recall` measures the approximation on a sample of rows (the share of their exact
``k`` nearest neighbours above the threshold that the pairs hold); the graph build records it in
``meta["knn"]``.
"""

from __future__ import annotations

import logging

import numpy as np

from kvgraph.errors import InvalidInputError

EXACT_MAX = 4_096  # rows up to which the exact method is used ("auto")
METHODS = ("auto", "exact", "hnsw")
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64  # recall of the thresholded edges measured in bench/graph.py --kb (bench/README.md)
SEARCH_BATCH = 4_096

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]
log = logging.getLogger(__name__)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32, C-contiguous."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _empty() -> Pairs:
    e = np.zeros(0, np.int64)
    return e, e.copy(), np.zeros(0, np.float32)


def unique_pairs(rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, threshold: float, n: int) -> Pairs:
    """(i, j, sim) with i < j, one per unordered pair; self pairs, padding (-1) and pairs below threshold dropped."""
    keep = (cols >= 0) & (rows != cols) & (sims >= threshold)
    i, j, s = rows[keep], cols[keep], sims[keep]
    a, b = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    _, first = np.unique(a * n + b, return_index=True)
    return a[first], b[first], s[first].astype(np.float32)


def exact_neighbours(v: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each unit row's ``k`` nearest other rows, exactly: (n x k) row numbers and similarities."""
    n = v.shape[0]
    kk = min(k, n - 1)
    cols = np.full((n, kk), -1, np.int64)
    sims = np.zeros((n, kk), np.float32)
    for lo in range(0, n, block):
        s = v[lo : lo + block] @ v.T
        s[np.arange(s.shape[0]), np.arange(lo, lo + s.shape[0])] = -np.inf  # not oneself
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cols[lo : lo + block] = top
        sims[lo : lo + block] = np.take_along_axis(s, top, axis=1)
    return cols, sims


def hnsw_neighbours(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each unit row's ``k`` nearest other rows through a faiss HNSW graph: (n x k) rows (-1 padded), similarities."""
    from kvgraph.store.ann import load_faiss  # here: importing kvgraph.store loads the whole store

    faiss = load_faiss()
    n, dim = v.shape
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(v)
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, 2 * (k + 1))
    cols = np.full((n, k), -1, np.int64)
    sims = np.zeros((n, k), np.float32)
    for lo in range(0, n, SEARCH_BATCH):
        q = v[lo : lo + SEARCH_BATCH]
        found_sims, found = index.search(q, k + 1)
        own = np.arange(lo, lo + len(q))[:, None]
        found_sims = np.where((found == own) | (found < 0), -np.inf, found_sims)
        top = np.argsort(-found_sims, axis=1, kind="stable")[:, :k]  # oneself (if found) sorts last
        picked = np.take_along_axis(found_sims, top, axis=1)
        cols[lo : lo + len(q)] = np.where(np.isfinite(picked), np.take_along_axis(found, top, axis=1), -1)
        sims[lo : lo + len(q)] = np.where(np.isfinite(picked), picked, 0.0)
    return cols, sims


def knn_lists(vectors: np.ndarray, k: int, method: str = "auto", block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows by cosine: (n x k) row numbers and similarities, best first.

    Fewer than ``k`` found (fewer rows, or the approximate search came short) are padded with row
    -1 and similarity -inf. These lists are what an incremental update keeps up to date
    (:mod:`kvgraph.docgraph.incremental`); :func:`pairs_from_lists` turns them into edges.
    """
    if method not in METHODS:
        raise InvalidInputError(f"knn method must be one of {', '.join(METHODS)}, got {method!r}")
    n = len(vectors)
    cols = np.full((n, max(k, 0)), -1, np.int64)
    sims = np.full((n, max(k, 0)), -np.inf, np.float32)
    if n < 2 or k < 1:
        return cols, sims
    v = unit_rows(vectors)
    kk = min(k, n - 1)
    if chosen_method(n, method) == "exact":
        if method == "auto" and n > EXACT_MAX:
            log.warning(
                "nearest neighbours of %s rows found exactly (%s dot products: quadratic in the rows) "
                "because faiss is not installed; pip install 'kvgraph[ann]' makes them approximate "
                "(an HNSW graph) for big graphs",
                f"{n:,}",
                f"{n * n:,}",
            )
        found, found_sims = exact_neighbours(v, kk, block)
    else:
        found, found_sims = hnsw_neighbours(v, kk)
        found_sims = np.where(found >= 0, found_sims, -np.inf).astype(np.float32)
    order = np.argsort(-found_sims, axis=1, kind="stable")
    cols[:, :kk] = np.take_along_axis(found, order, axis=1)
    sims[:, :kk] = np.take_along_axis(found_sims, order, axis=1)
    return cols, sims


def pairs_from_lists(cols: np.ndarray, sims: np.ndarray, threshold: float, rows: np.ndarray | None = None) -> Pairs:
    """The unique pairs (i, j, sim), i < j, of neighbour lists, at least ``threshold`` similar.

    ``rows`` names the row each list belongs to (default: list ``r`` is row ``r``); ``cols`` hold
    the same kind of numbers (-1 for padding).
    """
    owner = np.arange(len(cols)) if rows is None else np.asarray(rows, dtype=np.int64)
    n = int(max(owner.max(initial=-1), cols.max(initial=-1))) + 1
    r = np.repeat(owner, cols.shape[1])
    return unique_pairs(r, cols.ravel(), sims.ravel(), threshold, max(n, 1))


def knn_pairs(vectors: np.ndarray, k: int, threshold: float, method: str = "auto", block: int = 1024) -> Pairs:
    """Each row's ``k`` nearest other rows by cosine with similarity >= ``threshold``, as (i, j, sim) with i < j.

    ``method``: ``exact``, ``hnsw`` or ``auto`` (exact up to :data:`EXACT_MAX` rows, else hnsw).
    A pair found from both ends is kept once.
    """
    cols, sims = knn_lists(vectors, k, method, block)
    if not cols.size:
        return _empty()
    return pairs_from_lists(cols, sims, threshold)


def chosen_method(n: int, method: str = "auto") -> str:
    """The method :func:`knn_pairs` runs for ``n`` rows (``auto`` is exact without faiss)."""
    if method != "auto":
        return method
    return "exact" if n <= EXACT_MAX or not _faiss_installed() else "hnsw"


def _faiss_installed() -> bool:
    from kvgraph.store.ann import optional_faiss  # here: importing kvgraph.store loads the whole store

    return optional_faiss() is not None


def knn_recall(
    vectors: np.ndarray, pairs: Pairs, k: int, threshold: float, sample: int = 256, seed: int = 0
) -> float | None:
    """Share of the exact kNN pairs of ``sample`` random rows (above ``threshold``) that ``pairs`` holds.

    1.0 for the exact method (up to ties); None when the sampled rows have no neighbour above the
    threshold. Costs ``sample x n`` dot products.
    """
    n = len(vectors)
    if n < 2 or k < 1:
        return None
    v = unit_rows(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    s = v[rows] @ v.T
    s[np.arange(rows.size), rows] = -np.inf
    kk = min(k, n - 1)
    top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    top_sim = np.take_along_axis(s, top, axis=1)
    r = np.repeat(rows, kk)
    want_i, want_j, _ = unique_pairs(r, top.ravel(), top_sim.ravel(), threshold, n)
    if not want_i.size:
        return None
    i, j, _ = pairs
    have = np.isin(want_i * n + want_j, np.asarray(i, np.int64) * n + np.asarray(j, np.int64))
    return float(have.mean())
