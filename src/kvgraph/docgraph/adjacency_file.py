"""A saved graph's walk adjacency, kept beside it and memory-mapped by the processes that query it.

Every process builds the walk's sparse adjacency from the graph's edge lists on its first graph
query, sorting every edge in both directions: 0.13-0.19 s at 100k chunks, 4.9 s on a generated
1M-node / 10M-edge graph. That matrix (for the default edge weights) is saved once per save of
the graph in ``adjacency-<build>.csr``, and a process that loads the graph maps the file instead,
after checking its CRC-32 (the page cache serves every process; nothing is copied).

Who writes it: a full build (``kb.graph.build()``) writes it with the graph and describes it in
``graph.json``. An incremental update does not (the sort would cost every ingest more than the
ingest goal leaves at 100k chunks, and the update rewrites the SYNONYM and SIMILAR pairs rather
than appending to the edge lists, so a saved matrix cannot be extended); its save deletes the old
file. The first process that builds the adjacency of that save in memory then writes the file for
the others (:meth:`AdjacencyFile.write` to a temporary name, then a rename: readers racing to do it
write equal files), named by the save's build id, which is why the file carries its own
description in a trailer. A process that cannot write there (a read-only directory) keeps its matrix in memory.
The next save deletes every adjacency file but its own.

Layout: ``indptr`` (int64, nodes + 1), ``indices`` (int32, nnz; padded to 8 bytes), ``data``
(float32, nnz), then a 32-byte trailer: ``KVGCSR02``, nodes and nnz (int64), the CRC-32 of what
precedes it (uint32), 4 zero bytes. ``graph.json`` records a full build's file with the same
counts, its CRC and ``data_bytes`` 4. The matrix a process builds in memory holds the same float32
values (:meth:`DocGraph._edge_adjacency`), so a mapped file and a built matrix walk alike; float32
weights took the file from 28 to 20 MB at 100k chunks. Files written before hold float64 data
(trailer ``KVGCSR01``, or none and a description without ``data_bytes``) and are still read.
A file that is missing, of the wrong size or whose CRC does not match is not used (the adjacency
is built from the edges).
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.docgraph.csr import Csr
from kvgraph.docgraph.side_files import described, side_files

ADJACENCY_PREFIX, ADJACENCY_SUFFIX = "adjacency-", ".csr"
_CRC_BLOCK = 1 << 24  # bytes checksummed at a time
_TRAILER = struct.Struct("<8sqqI4x")
# Graphs with fewer edges get no file: their adjacency builds in a few milliseconds (8-16 ms at 105k
# edges, the 10k-chunk bench graph, against 1.4 ms to map its 2.2 MB file: 8% of that knowledge
# base's bytes for ~10 ms once per process), while at 1M edges (100k chunks) building took
# 0.13-0.42 s against 9 ms to map.
MIN_EDGES = 200_000
_MAGICS = {b"KVGCSR01": 8, b"KVGCSR02": 4}  # trailer magic -> bytes of each value (float64, float32)
_MAGIC = b"KVGCSR02"  # what this version writes
_DATA_TYPES = {8: np.float64, 4: np.float32}
_TMP = ".tmp-"  # as docgraph/build.py names unfinished files: a save deletes them


@dataclass
class AdjacencyFile:
    """The saved adjacency of a graph of ``nodes`` nodes and ``nnz`` stored entries, with the file's CRC-32."""

    path: Path
    nodes: int
    nnz: int
    crc: int
    data_bytes: int = 8  # 4: float32 values (this version); 8: float64 (files written before)

    @property
    def size(self) -> int:
        """Bytes before the trailer (all of a file of the first version)."""
        return self.data_offset + self.data_bytes * self.nnz

    @property
    def data_offset(self) -> int:
        """Where ``data`` starts: after the row pointers and the indices, padded to 8 bytes."""
        return 8 * (self.nodes + 1) + 8 * ((self.nnz + 1) // 2)

    def describe(self) -> dict[str, Any]:
        """What ``graph.json`` records (the file by name: a knowledge base may move)."""
        info: dict[str, Any] = {"file": self.path.name, "nodes": self.nodes, "nnz": self.nnz, "crc32": self.crc}
        if self.data_bytes != 8:  # as descriptions of float64 files were written
            info["data_bytes"] = self.data_bytes
        return info

    @classmethod
    def from_info(cls, directory: Path, info: object) -> AdjacencyFile:
        """The file ``graph.json`` describes; ValueError if the description is malformed."""
        name, (nodes, nnz, crc) = described(
            info, "adjacency", ADJACENCY_PREFIX, ADJACENCY_SUFFIX, ("nodes", "nnz", "crc32")
        )
        data_bytes = info.get("data_bytes", 8) if isinstance(info, dict) else 8
        if type(data_bytes) is not int or data_bytes not in _DATA_TYPES:
            raise ValueError(f"bad adjacency file description {info!r}")
        return cls(directory / name, nodes, nnz, crc, data_bytes)

    @classmethod
    def found(cls, directory: Path, build: str) -> AdjacencyFile | None:
        """The file a process wrote for the save ``build`` (described by its trailer); None when there
        is none; ValueError when its trailer is not one."""
        path = _path(directory, build)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - _TRAILER.size))
                tail = f.read(_TRAILER.size)
        except FileNotFoundError:
            return None
        if len(tail) != _TRAILER.size or tail[:8] not in _MAGICS:
            raise ValueError(f"{path.name}: no adjacency trailer")
        magic, nodes, nnz, crc = _TRAILER.unpack(tail)
        if nodes < 0 or nnz < 0:
            raise ValueError(f"{path.name}: bad adjacency trailer")
        return cls(path, nodes, nnz, crc, _MAGICS[magic])

    @classmethod
    def write(cls, directory: Path, build: str, matrix: Csr, durable: bool = True) -> AdjacencyFile | None:
        """Save ``matrix`` (square, rows sorted, float32 values) for a graph saved as ``build``; None
        when its node numbers do not fit int32 (then no file: the adjacency is built in memory).

        The file appears whole under its name or not at all (written under a temporary name, then
        renamed). ``durable`` syncs it to disk first, as a save does; a process writing it for the
        others does not need to: a file cut short by a crash fails its CRC and is built again.
        """
        nodes = matrix.shape[0]
        if nodes >= np.iinfo(np.int32).max or not matrix.sorted_rows:
            return None
        if matrix.data.dtype != np.float32:  # a mapped matrix must walk as the built one does
            raise ValueError(f"the adjacency to save holds {matrix.data.dtype} values, not float32")
        path = _path(directory, build)
        tmp = directory / f".{path.name}{_TMP}{secrets.token_hex(4)}"
        crc = 0
        try:
            with open(tmp, "wb") as f:
                for part in (
                    np.ascontiguousarray(matrix.indptr, dtype=np.int64),
                    np.ascontiguousarray(matrix.indices, dtype=np.int32),
                    np.zeros(matrix.nnz % 2, dtype=np.int32),  # data aligned to 8 bytes
                    np.ascontiguousarray(matrix.data),
                ):
                    raw = part.data.cast("B")
                    f.write(raw)
                    crc = zlib.crc32(raw, crc)
                crc &= 0xFFFFFFFF
                f.write(_TRAILER.pack(_MAGIC, nodes, matrix.nnz, crc))
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return cls(path, nodes, matrix.nnz, crc, 4)

    def map(self) -> Csr:
        """The matrix, read-only over the mapped file; ValueError when the file does not match its description."""
        with open(self.path, "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual not in (self.size, self.size + _TRAILER.size):
                raise ValueError(f"{self.path.name}: {actual} bytes, expected {self.size + _TRAILER.size}")
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
        data = np.frombuffer(mapped, dtype=_DATA_TYPES[self.data_bytes], count=nnz, offset=self.data_offset)
        if indptr[0] != 0 or indptr[-1] != nnz:
            raise ValueError(f"{self.path.name}: row pointers do not span the entries")
        return Csr(indptr, indices, data, (n, n), sorted_rows=True)


def adjacency_name(build: object) -> str | None:
    """The adjacency file name of the save ``build``; None unless the id is a save's (hex digits)."""
    if not (isinstance(build, str) and 0 < len(build) <= 64 and all(c in "0123456789abcdef" for c in build)):
        return None
    return f"{ADJACENCY_PREFIX}{build}{ADJACENCY_SUFFIX}"


def _path(directory: Path, build: str) -> Path:
    """The adjacency file of the save ``build``; ValueError for an id no save makes."""
    name = adjacency_name(build)
    if name is None:
        raise ValueError(f"bad graph build id {build[:80]!r}")
    return directory / name


def adjacency_files(directory: Path) -> list[Path]:
    """Every saved adjacency file in ``directory``, used or not."""
    return side_files(directory, ADJACENCY_PREFIX, ADJACENCY_SUFFIX)
