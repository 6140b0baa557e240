"""The vector file: float32 rows appended at the end, memory-mapped for search.

Row ``i`` is slot ``i``. The file has no header: its dimension, committed row count
and per-segment checksums live in the records database, which is the commit point.
A crash after rows were appended but before the records committed leaves garbage
beyond the committed count; it is cut off at the next write and never read.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kvgraph.errors import CorruptionError
from kvgraph.fileio import crc32, disk_full_errors, fsync_dir

SEGMENT_ROWS = 65_536  # checksum granularity: a damaged region is reported by row range


class VectorFile:
    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * 4
        self._map: np.ndarray | None = None
        self._mapped_rows = 0
        # Hold the file open from the moment the committed state naming it is loaded: a vacuum in
        # another process may unlink it while a reader is still in that snapshot, and an open
        # file stays readable (and growable by the writer's appends) after its name is gone.
        try:
            self._file: BinaryIO | None = open(path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            self._file = None  # not created yet (a writer's new file), or already vacuumed away

    def _size(self) -> int:
        if self._file is not None:
            return os.fstat(self._file.fileno()).st_size
        return self.path.stat().st_size if self.path.exists() else 0

    def matrix(self, n_rows: int) -> np.ndarray:
        """A read-only (n_rows, dim) float32 view of the committed rows."""
        if n_rows == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if self._map is None or self._mapped_rows != n_rows:
            size = self._size()
            if size < n_rows * self.row_bytes:
                raise CorruptionError(
                    self.path, f"truncated: holds {size // self.row_bytes} rows, {n_rows} are committed"
                )
            source: BinaryIO | Path = self._file if self._file is not None else self.path
            # a plain ndarray view of the map: np.memmap's per-index wrapping costs more than a small gather
            self._map = np.asarray(np.memmap(source, dtype=np.float32, mode="r", shape=(n_rows, self.dim)))
            self._mapped_rows = n_rows
        return self._map

    def append(self, start_row: int, rows: np.ndarray) -> list[tuple[int, int, int]]:
        """Write rows at ``start_row`` (dropping anything beyond it) and fsync.

        Returns the (start, count, crc32) segments to commit with the records.
        """
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        created = not self.path.exists()
        with disk_full_errors(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, start_row * self.row_bytes)
                segments = []
                for s in range(0, len(rows), SEGMENT_ROWS):
                    chunk = rows[s : s + SEGMENT_ROWS]
                    buf = chunk.view(np.uint8).reshape(-1).data
                    _write_all(fd, buf, (start_row + s) * self.row_bytes)
                    segments.append((start_row + s, len(chunk), crc32(buf)))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                # the new name must be durable before the records commit to pointing at it
                fsync_dir(self.path.parent)
        return segments

    def truncate(self, n_rows: int) -> None:
        if self.path.exists() and self.path.stat().st_size > n_rows * self.row_bytes:
            with open(self.path, "r+b") as f:
                f.truncate(n_rows * self.row_bytes)

    def verify(self, segments: list[tuple[int, int, int]]) -> None:
        """Check the checksum of each (start, count, crc) segment; raise naming the file and rows."""
        for start, count in self.damaged(segments, first_only=True):
            raise CorruptionError(
                self.path,
                f"checksum mismatch in rows {start}..{start + count - 1}; "
                "run kvgraph repair (a knowledge base) or restore the store from a backup",
            )

    def damaged(self, segments: list[tuple[int, int, int]], first_only: bool = False) -> list[tuple[int, int]]:
        """(start, count) of each segment whose rows no longer match their checksum.

        Raises CorruptionError when the file is shorter than the segments (rows were lost).
        """
        if not segments:
            return []
        end = max(s + c for s, c, _ in segments)
        mat = self.matrix(end)
        bad = []
        for start, count, expected in segments:
            if crc32(np.ascontiguousarray(mat[start : start + count])) != expected:
                bad.append((start, count))
                if first_only:
                    break
        return bad

    def close(self) -> None:
        self._map = None
        self._mapped_rows = 0
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:  # a state reload drops the old VectorFile without close()
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


def _write_all(fd: int, buf: memoryview, offset: int) -> None:
    """pwrite until every byte is written: a nearly full disk may take only part of a write."""
    view = memoryview(buf).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:  # no progress and no error: report it as what it is
            raise OSError(errno.ENOSPC, "no space left on device", None)
        view, offset = view[n:], offset + n
