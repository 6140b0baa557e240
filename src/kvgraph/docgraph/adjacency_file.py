"""A fully built graph's walk adjacency, saved beside it and memory-mapped by the processes that query it.

Every process builds the walk's sparse adjacency from the graph's edge lists on its first graph
query, sorting every edge in both directions: 0.13-0.19 s at 100k chunks, 4.9 s on a generated
1M-node / 10M-edge graph. A full build (``kb.graph.build()``) saves that matrix (the default edge
weights) in ``adjacency-<build>.csr``; a process that loads the graph maps the file instead,
after checking its CRC-32 (the page cache serves every process; nothing is copied).

Only full builds write it: an incremental update would pay the sort in every ingest (more than
the ingest goal leaves at 100k chunks), and it rewrites the SYNONYM and SIMILAR pairs rather than
appending to the edge lists, so a saved matrix cannot be extended by the edges since. The save
that commits an update names no adjacency file, and deletes the old one; processes then build
the adjacency in memory, as before, until the next full build.

Layout, no header: ``indptr`` (int64, nodes + 1), ``indices`` (int32, nnz; padded to 8 bytes),
``data`` (float64, nnz). ``graph.json`` records the file, the node and entry counts and the CRC-32 of the whole file.
A file that is missing, of the wrong size or whose CRC does not match is not used (the adjacency
is built from the edges; the next full build writes a new file).
"""

from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.docgraph.csr import Csr
from kvgraph.docgraph.side_files import described, side_files

ADJACENCY_PREFIX, ADJACENCY_SUFFIX = "adjacency-", ".csr"
_CRC_BLOCK = 1 << 24  # bytes checksummed at a time


@dataclass
class AdjacencyFile:
    """The saved adjacency of a graph of ``nodes`` nodes and ``nnz`` stored entries, with the file's CRC-32."""

    path: Path
    nodes: int
    nnz: int
    crc: int

    @property
    def size(self) -> int:
        return self.data_offset + 8 * self.nnz

    @property
    def data_offset(self) -> int:
        """Where ``data`` starts: after the row pointers and the indices, padded to 8 bytes."""
        return 8 * (self.nodes + 1) + 8 * ((self.nnz + 1) // 2)

    def describe(self) -> dict[str, Any]:
        """What ``graph.json`` records (the file by name: a knowledge base may move)."""
        return {"file": self.path.name, "nodes": self.nodes, "nnz": self.nnz, "crc32": self.crc}

    @classmethod
    def from_info(cls, directory: Path, info: object) -> AdjacencyFile:
        """The file ``graph.json`` describes; ValueError if the description is malformed."""
        name, (nodes, nnz, crc) = described(
            info, "adjacency", ADJACENCY_PREFIX, ADJACENCY_SUFFIX, ("nodes", "nnz", "crc32")
        )
        return cls(directory / name, nodes, nnz, crc)

    @classmethod
    def write(cls, directory: Path, build: str, matrix: Csr) -> AdjacencyFile | None:
        """Save ``matrix`` (square, rows sorted) for a graph saved as ``build``; None when its
        node numbers do not fit int32 (then no file: the adjacency is built in memory)."""
        nodes = matrix.shape[0]
        if nodes >= np.iinfo(np.int32).max or not matrix.sorted_rows:
            return None
        path = directory / f"{ADJACENCY_PREFIX}{build}{ADJACENCY_SUFFIX}"
        crc = 0
        with open(path, "wb") as f:
            for part in (
                np.ascontiguousarray(matrix.indptr, dtype=np.int64),
                np.ascontiguousarray(matrix.indices, dtype=np.int32),
                np.zeros(matrix.nnz % 2, dtype=np.int32),  # data aligned to 8 bytes
                np.ascontiguousarray(matrix.data, dtype=np.float64),
            ):
                raw = part.data.cast("B")
                f.write(raw)
                crc = zlib.crc32(raw, crc)
            f.flush()
            os.fsync(f.fileno())
        return cls(path, nodes, matrix.nnz, crc & 0xFFFFFFFF)

    def map(self) -> Csr:
        """The matrix, read-only over the mapped file; ValueError when the file does not match its description."""
        with open(self.path, "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != self.size:
                raise ValueError(f"{self.path.name}: {actual} bytes, expected {self.size}")
            mapped = mmap.mmap(f.fileno(), self.size, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        crc = 0
        for start in range(0, self.size, _CRC_BLOCK):
            crc = zlib.crc32(view[start : start + _CRC_BLOCK], crc)
        if crc & 0xFFFFFFFF != self.crc:
            raise ValueError(f"{self.path.name}: CRC-32 mismatch (damaged)")
        n, nnz = self.nodes, self.nnz
        indptr = np.frombuffer(mapped, dtype=np.int64, count=n + 1)
        indices = np.frombuffer(mapped, dtype=np.int32, count=nnz, offset=8 * (n + 1))
        data = np.frombuffer(mapped, dtype=np.float64, count=nnz, offset=self.data_offset)
        if indptr[0] != 0 or indptr[-1] != nnz:
            raise ValueError(f"{self.path.name}: row pointers do not span the entries")
        return Csr(indptr, indices, data, (n, n), sorted_rows=True)


def adjacency_files(directory: Path) -> list[Path]:
    """Every saved adjacency file in ``directory``, used or not."""
    return side_files(directory, ADJACENCY_PREFIX, ADJACENCY_SUFFIX)
