"""A saved graph's entity-name vectors: one file of int8 rows, memory-mapped, that updates append to.

At 100k chunks the 187k name vectors are 72 MB, half of the graph. When they lived inside
``graph.npz`` every one-file ingest read them whole (into fresh memory, whose page faults are
slow) and wrote them whole again. In a file of their own a graph maps them (the page cache
serves every process; nothing is copied) and an update writes only its new rows.

Layout: ``names-<id>.i8`` holds rows of ``dim`` int8 values and no header; ``graph.json`` names
the file, how many of its rows belong to the graph and their CRC-32, which every load checks.

Crash safety: rows a saved graph uses are never written again. An update writes its rows after
them, where no committed graph looks, and the save that commits them renames ``graph.json``
last; a crash in between leaves the old graph (its rows and their CRC untouched) and bytes after
them that the next append writes over. An update appends only when the saved graph is the one it
started from and nothing appended to that graph before (otherwise, and when names were removed
or renamed, the save writes a new file); the file a save stops using is deleted after it.
"""

from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.docgraph.side_files import described, side_files

NAMES_PREFIX, NAMES_SUFFIX = "names-", ".i8"


@dataclass
class NamesFile:
    """The first ``rows`` rows of the file at ``path`` (``dim`` int8 values each), whose CRC-32 is ``crc``."""

    path: Path
    rows: int
    dim: int
    crc: int
    appended: bool = False  # an update wrote after these rows: another update from them must copy

    def describe(self) -> dict[str, Any]:
        """What ``graph.json`` records (the file by name: a knowledge base may move)."""
        return {"file": self.path.name, "rows": self.rows, "dim": self.dim, "crc32": self.crc}

    @classmethod
    def from_info(cls, directory: Path, info: object) -> NamesFile:
        """The file ``graph.json`` describes; ValueError if the description is malformed."""
        name, (rows, dim, crc) = described(info, "name-vector", NAMES_PREFIX, NAMES_SUFFIX, ("rows", "dim", "crc32"))
        return cls(directory / name, rows, dim, crc)

    def map(self, check: bool = True) -> np.ndarray:
        """The rows as a read-only array over the file; ValueError if it is short or (``check``) fails its CRC.

        FileNotFoundError when the file is gone (a save replaced it since ``graph.json`` was read).
        """
        size = self.rows * self.dim
        if not size:
            return np.zeros((self.rows, self.dim), dtype=np.int8)
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size < size:
                raise ValueError(f"{self.path.name} is shorter than its {self.rows} rows")
            view = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        rows = np.frombuffer(view, dtype=np.int8).reshape(self.rows, self.dim)
        if check and zlib.crc32(rows.reshape(-1).data) != self.crc:
            raise ValueError(f"{self.path.name} fails its checksum")
        return rows

    def append(self, fresh: np.ndarray, saved: object) -> NamesFile | None:
        """This file with ``fresh`` int8 rows written after this graph's, or None where that could
        overwrite rows a graph uses: ``saved`` (what ``graph.json`` records now) is not this graph's
        file and rows, or an update appended after them already (see the module docstring)."""
        if self.appended or saved != self.describe():
            return None
        data = np.ascontiguousarray(fresh, dtype=np.int8)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"rows of {data.shape[1:]} values do not fit {self.path.name} ({self.dim} a row)")
        with open(self.path, "r+b") as f:
            # Over whatever a crashed update left after the rows; not truncated after the new rows:
            # an unsaved graph of this process may map rows past them (a shorter file would make
            # reading those a SIGBUS), and what lies past the saved rows is never read.
            f.seek(self.rows * self.dim)
            f.write(data.reshape(-1).data)
        self.appended = True
        return NamesFile(self.path, self.rows + len(data), self.dim, zlib.crc32(data.reshape(-1).data, self.crc))

    def sync(self) -> None:
        """Flush the file to disk (an append wrote without flushing: the save that commits it flushes)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def write(cls, directory: Path, stem: str, rows: np.ndarray) -> NamesFile:
        """A new file ``names-<stem>.i8`` holding ``rows`` (int8, 2-d), flushed to disk."""
        data = np.ascontiguousarray(rows, dtype=np.int8)
        path = directory / f"{NAMES_PREFIX}{stem}{NAMES_SUFFIX}"
        with open(path, "wb") as f:
            f.write(data.reshape(-1).data)
            f.flush()
            os.fsync(f.fileno())
        return cls(path, len(data), int(data.shape[1]), zlib.crc32(data.reshape(-1).data))


def names_files(directory: Path) -> list[Path]:
    """Every name-vector file in ``directory``, used or not."""
    return side_files(directory, NAMES_PREFIX, NAMES_SUFFIX)
