"""A compressed sparse row matrix in plain numpy: what the graph walks need, nothing more.

The document graph's walks use a few operations on a sparse adjacency: build it from edge
lists (summing repeated edges), row sums, scaling rows, products with it and with its transpose,
and the submatrix of the nodes a bounded expansion reached. scipy.sparse does all of this but
is 143 MB installed, a quarter of kvgraph's whole install for these few lines (issue 16).

Measured against scipy.sparse on a 100,000-node, 1,000,000-edge graph (``bench/graph.py
--no-cypher``, bench/README.md "Graph"): a graph-mode walk (bounded expansion, submatrix,
personalized PageRank) takes 54 ms instead of 39; building the adjacency 21 ms instead of 8.5; a
product with the whole matrix is about 3x slower (numpy gathers then ``bincount``s where scipy
runs one C loop). The transpose is a view, not a copy. At 1M nodes / 10M edges the bounded walk
takes 1.7 ms against scipy's 8.6: :meth:`Csr.submatrix` binary-searches hub rows instead of
reading them.

The arrays are plain ``ndarray``s, so a matrix saved with :func:`numpy.save` can come back
memory-mapped (``np.load(..., mmap_mode="r")``) and be used without reading it whole.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Csr:
    """Row ``i``'s entries are ``indices[indptr[i]:indptr[i+1]]`` (columns) and ``data[...]`` (values)."""

    indptr: np.ndarray  # int64, n_rows + 1
    indices: np.ndarray  # int64 column of each stored entry (a row's entries in any order)
    data: np.ndarray  # value of each stored entry (float64; float32 in a graph's walk adjacency)
    shape: tuple[int, int]
    _rows: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)  # cached row_ids()
    sorted_rows: bool = False  # each row's columns ascending (from_edges), so a row can be binary-searched
    # Per thread: a column -> kept-column table that submatrix fills and clears for its kept nodes only
    # (a fresh table as long as the graph cost ~0.1 ms per query at 400k nodes, and its reads twice as much).
    _scratch: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_edges(cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> Csr:
        """The matrix with ``values`` at ``(rows, cols)``; repeated positions are summed."""
        n_rows, n_cols = shape
        r = np.asarray(rows, dtype=np.int64).ravel()
        c = np.asarray(cols, dtype=np.int64).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        if not r.size == c.size == v.size:
            raise ValueError(f"rows, cols and values differ in length: {r.size}, {c.size}, {v.size}")
        if r.size and (r.min() < 0 or r.max() >= n_rows or c.min() < 0 or c.max() >= n_cols):
            raise ValueError(f"an edge lies outside the {n_rows} x {n_cols} matrix")
        # One int64 key per entry sorts 2.5x faster than a lexsort on (row, column).
        key = r * max(n_cols, 1) + c
        order = np.argsort(key)
        key, v = key[order], v[order]
        if key.size:
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            key, v = key[starts], np.add.reduceat(v, starts)
        r, c = np.divmod(key, max(n_cols, 1))
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
        return cls(indptr, c, v, (n_rows, n_cols), sorted_rows=True)

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> Csr:
        a = np.asarray(matrix, dtype=np.float64)
        rows, cols = np.nonzero(a)
        return cls.from_edges(rows, cols, a[rows, cols], (a.shape[0], a.shape[1]))

    # ------------------------------------------------------------------ properties

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def row_ids(self) -> np.ndarray:
        """The row of every stored entry (computed once and kept)."""
        if not self._rows:
            self._rows.append(np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr)))
        return self._rows[0]

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape)
        np.add.at(out, (self.row_ids(), self.indices), self.data)
        return out

    # ------------------------------------------------------------------ operations

    def row_sums(self) -> np.ndarray:
        return np.bincount(self.row_ids(), weights=self.data, minlength=self.shape[0]).astype(np.float64)

    def scale_rows(self, factors: np.ndarray) -> Csr:
        """Row ``i`` multiplied by ``factors[i]``."""
        rows = self.row_ids()
        scaled = self.data * np.asarray(factors)[rows]
        return Csr(self.indptr, self.indices, scaled, self.shape, self._rows, sorted_rows=self.sorted_rows)

    def transpose(self) -> Transposed:
        """``A.T`` without moving an entry: products with it gather by row and add by column."""
        return Transposed(self)

    @property
    def T(self) -> Transposed:
        return Transposed(self)

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        """The product with a vector of length ``shape[1]``."""
        vec = _vector(x, self.shape)
        return np.bincount(self.row_ids(), weights=self.data * vec[self.indices], minlength=self.shape[0])

    def submatrix(self, nodes: np.ndarray) -> Csr:
        """Rows and columns ``nodes`` (distinct), numbered in the order given: ``A[nodes][:, nodes]``.

        A kept row much longer than the number of kept nodes (a hub entity: a million mentions in
        a big graph) is binary-searched for the kept columns instead of read whole, when the rows
        are sorted: at 1M nodes a bounded walk keeps ~75 nodes whose rows hold ~2.5M entries.
        """
        keep = np.asarray(nodes, dtype=np.int64).ravel()
        k = keep.size
        starts, lengths = self.indptr[keep], self.indptr[keep + 1] - self.indptr[keep]
        long = lengths > _SEARCH_ROW_FACTOR * max(k, 1) if self.sorted_rows else np.zeros(k, dtype=bool)
        short_lengths = np.where(long, 0, lengths)
        total = int(short_lengths.sum())
        ends = np.cumsum(short_lengths)
        # Every stored entry of the kept short rows, gathered without a Python loop per row.
        pos = np.arange(total) + np.repeat(starts - (ends - short_lengths), short_lengths)
        # New column numbers through a lookup table as long as the graph: one gather per entry
        # (a binary search per entry over the kept nodes measured 10x slower at 20,000 nodes).
        new_number = self._column_table()
        new_number[keep] = np.arange(k, dtype=new_number.dtype)
        try:
            cols = new_number[self.indices[pos]]
        finally:
            new_number[keep] = -1
        # The kept entries' positions (ascending, so grouped by row: no per-entry row number), and
        # per row how many lie before its end. Gathers of the ~20% kept and a binary search per
        # row were 1.5x faster than boolean masks and a running count over all of them.
        kept = np.flatnonzero(cols >= 0)
        indptr = np.zeros(k + 1, dtype=np.int64)
        indptr[1:] = np.searchsorted(kept, ends)
        cols = cols[kept].astype(np.int64)
        vals = self.data[pos[kept]]
        if long.any():
            rows = np.repeat(np.arange(k, dtype=np.int64), np.diff(indptr))
            order = np.argsort(keep, kind="stable")
            sorted_keep = keep[order]
            extra_rows, extra_cols, extra_vals = [rows], [cols], [vals]
            for i in np.flatnonzero(long).tolist():
                lo, hi = int(starts[i]), int(starts[i] + lengths[i])
                row = self.indices[lo:hi]
                at = np.searchsorted(row, sorted_keep)
                found = at < row.size
                found[found] = row[at[found]] == sorted_keep[found]
                extra_rows.append(np.full(int(found.sum()), i, dtype=np.int64))
                extra_cols.append(order[found])
                extra_vals.append(self.data[lo + at[found]])
            rows, cols, vals = np.concatenate(extra_rows), np.concatenate(extra_cols), np.concatenate(extra_vals)
            group = np.argsort(rows, kind="stable")  # entries of a row together again
            rows, cols, vals = rows[group], cols[group], vals[group]
            np.cumsum(np.bincount(rows, minlength=k), out=indptr[1:])
        return Csr(indptr, cols, vals, (k, k))

    def _column_table(self) -> np.ndarray:
        """This thread's table of -1 for every column (int32 while the columns fit)."""
        table: np.ndarray | None = getattr(self._scratch, "table", None)
        if table is None:
            dtype = np.int32 if self.shape[1] < np.iinfo(np.int32).max else np.int64
            table = self._scratch.table = np.full(self.shape[1], -1, dtype=dtype)
        return table


_SEARCH_ROW_FACTOR = 8  # a kept row longer than 8x the kept nodes is searched, not read


_FIRST_SEEN = threading.local()  # per thread: {n: a table of -1 for the numbers 0..n-1}


def first_seen(values: np.ndarray, n: int) -> np.ndarray:
    """Where each number of ``values`` (all in ``[0, n)``) occurs for the first time: a boolean mask.

    What ``np.unique(values, return_index=True)`` finds, without sorting: one scatter of the
    reversed positions into a table of ``n`` entries kept per thread (the largest reversed position
    is the first), one gather back, and the touched entries reset. 15x faster than the sort on 30k
    values (breadth-first expansion runs it once per hop).
    """
    vals = np.asarray(values).ravel()
    m = vals.size
    tables: dict[int, np.ndarray] | None = getattr(_FIRST_SEEN, "tables", None)
    if tables is None:
        tables = _FIRST_SEEN.tables = {}
    table = tables.get(n)
    if table is None:
        if len(tables) >= 4:  # graphs of other sizes in one thread: keep a few
            tables.clear()
        table = tables[n] = np.full(n, -1, dtype=np.int32 if n < np.iinfo(np.int32).max else np.int64)
    if m >= np.iinfo(table.dtype).max:  # positions would not fit the table: sort instead
        _, first = np.unique(vals, return_index=True)
        mask = np.zeros(m, dtype=bool)
        mask[first] = True
        return mask
    reversed_at = np.arange(m - 1, -1, -1, dtype=table.dtype)
    np.maximum.at(table, vals, reversed_at)
    try:
        seen: np.ndarray = table[vals] == reversed_at
    finally:
        table[vals] = -1
    return seen


def _vector(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    vec = np.asarray(x, dtype=np.float64)
    if vec.shape != (shape[1],):
        raise ValueError(f"a {shape[0]} x {shape[1]} matrix times a vector of shape {vec.shape}")
    return vec


@dataclass(frozen=True)
class Transposed:
    """The transpose of a :class:`Csr`, for products: ``(A.T @ x)[j]`` sums ``A[i, j] * x[i]``."""

    base: Csr

    @property
    def shape(self) -> tuple[int, int]:
        return (self.base.shape[1], self.base.shape[0])

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        a = self.base
        vec = _vector(x, self.shape)
        return np.bincount(a.indices, weights=a.data * vec[a.row_ids()], minlength=self.shape[0])

    def toarray(self) -> np.ndarray:
        return self.base.toarray().T
