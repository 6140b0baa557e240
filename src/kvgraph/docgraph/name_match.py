"""The entity name nearest to each of a few query vectors, above a threshold, without reading every vector.

Graph mode matches the names a question uses that no graph key spells the same way against
every entity-name vector. At 100k chunks that is 187k vectors (288 MB of float32): one
matrix-vector product per question read all of it, ~18 ms, more than the rest of the query.

:class:`NameMatcher` keeps a 64-dimensional projection of the vectors onto their main
directions (the eigenvectors of a sample's second moments) and the length of what the
projection leaves out. For unit vectors ``q`` and ``v`` split into the projected parts and
the rest, ``q . v = q_p . v_p + q_r . v_r <= q_p . v_p + |q_r| |v_r|`` (Cauchy-Schwarz). Only
the rows whose bound reaches the threshold can match, and only those are compared in full:
the answer is the one the full product gives (the best row, if it reaches the threshold),
from a quarter of the memory. Measured on the 100k-chunk bench graph (117 unmatched
question names): a median of 74 rows compared in full, the same matches for all 117.

It reads a saved graph's packed rows directly, a block at a time, and unpacks to floats only the
rows it compares in full: unpacking all 187k names would hold 288 MB more in every process that
answers graph queries, and allocating them took 0.1-0.8 s of the first query on the 2-core VM.
"""

from __future__ import annotations

import numpy as np

from kvgraph.docgraph import name_codec
from kvgraph.docgraph.build import name_rows, packed_unit_rows

PROJECT_FROM = 32_768  # rows; below this one full product is as cheap
DIMS = 64
_SAMPLE = 8192  # rows the projection is fitted on
_MARGIN = 1e-4  # float32 rounding in the bound: never prune a row that reaches the threshold
_BLOCK = 16_384  # rows unpacked at a time while projecting


class NameMatcher:
    """Best row of the name vectors for each query, when its cosine reaches a threshold.

    ``vectors``: unit float32 rows; or ``packed``: rows as a graph saves them (unit rows once
    unpacked and normalised, :func:`~kvgraph.docgraph.build.packed_unit_rows`).
    """

    def __init__(self, vectors: np.ndarray | None = None, packed: np.ndarray | None = None, seed: int = 0) -> None:
        source = vectors if vectors is not None else packed
        if source is None:
            raise ValueError("no name vectors: give them as floats or packed")
        n, dim = len(source), (source.shape[1] if vectors is not None else name_codec.row_dim(source))
        self.n = n
        self.packed = packed
        self.vectors: np.ndarray | None = None
        self.basis: np.ndarray | None = None
        if n < PROJECT_FROM or dim <= DIMS:  # small: hold the floats, one product per query
            self.vectors = np.asarray(vectors, dtype=np.float32) if vectors is not None else packed_unit_rows(source)
            return
        if vectors is not None:
            self.vectors = np.asarray(vectors, dtype=np.float32)
        rng = np.random.default_rng(seed)
        sample = self.rows_at(np.sort(rng.choice(n, _SAMPLE, replace=False))).astype(np.float64)
        # The main directions from the eigenvectors of the sample's 384 x 384 second moments
        # (an SVD of the sample itself took 0.26 s); any orthonormal basis keeps the bound exact.
        _, eigenvectors = np.linalg.eigh(sample.T @ sample)
        self.basis = np.ascontiguousarray(eigenvectors[:, ::-1][:, :DIMS], dtype=np.float32)
        # Each row's projection, then the length of its rest as one more column: the bound for a
        # query is then one product with (q_p, |q_r|), no outer product added (that took 1.3 of
        # 3 ms at 187k names). Packed rows are projected as integers and scaled after (the product
        # is linear, and the rest of a unit row is sqrt(1 - |v_p|^2)): no normalised copy of each
        # block (set-up 0.25 -> 0.16 s at 187k names).
        self.projected = np.empty((n, DIMS + 1), dtype=np.float32)
        for lo in range(0, n, _BLOCK):
            part = self.projected[lo : lo + _BLOCK]
            if packed is None or vectors is not None:
                block = self.rows_at(slice(lo, lo + _BLOCK))
                part[:, :DIMS] = block @ self.basis
                part[:, DIMS] = _rest_norms(block, part[:, :DIMS])
                continue
            raw = name_codec.values(packed[lo : lo + _BLOCK]).astype(np.float32)
            squares = np.einsum("ij,ij->i", raw, raw)
            inverse = (1.0 / np.sqrt(np.where(squares > 0, squares, 1.0))).astype(np.float32)
            np.multiply(raw @ self.basis, inverse[:, None], out=part[:, :DIMS])
            kept = np.einsum("ij,ij->i", part[:, :DIMS], part[:, :DIMS])
            part[:, DIMS] = np.where(squares > 0, np.sqrt(np.maximum(1.0 - kept, 0.0)), 0.0)

    def rows_at(self, index: np.ndarray | slice) -> np.ndarray:
        """Unit float32 rows (unpacked when the matcher holds packed rows)."""
        return name_rows(self.vectors, self.packed, index)

    def best(self, queries: np.ndarray, threshold: float) -> list[int]:
        """For each query row (unit), the row of ``vectors`` most similar to it, or -1 if below ``threshold``."""
        q = np.asarray(queries, dtype=np.float32)
        if not len(q) or not self.n:
            return [-1] * len(q)
        if self.basis is None:
            assert self.vectors is not None
            sims = q @ self.vectors.T
            best = sims.argmax(axis=1)
            return [int(b) if sims[i, b] >= threshold else -1 for i, b in enumerate(best.tolist())]
        qp = q @ self.basis
        bound = self.projected @ np.hstack([qp, _rest_norms(q, qp)[:, None]]).T
        out = []
        for i in range(len(q)):
            rows = np.flatnonzero(bound[:, i] >= threshold - _MARGIN)
            if not rows.size:
                out.append(-1)
                continue
            sims = self.rows_at(rows) @ q[i]
            j = int(sims.argmax())  # ties: the lowest row, as argmax over all rows picks
            out.append(int(rows[j]) if sims[j] >= threshold else -1)
        return out


def _rest_norms(full: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """Length of each row's part outside the projection: sqrt(|v|^2 - |v_p|^2), never negative."""
    whole = np.einsum("ij,ij->i", full, full)
    kept = np.einsum("ij,ij->i", projected, projected)
    return np.asarray(np.sqrt(np.maximum(whole - kept, 0.0)), dtype=np.float32)
