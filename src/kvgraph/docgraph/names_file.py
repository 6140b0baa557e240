"""A saved graph's entity-name vectors: one file of packed rows, memory-mapped, that updates append to.

At 100k chunks the 187k name vectors are 72 MB, half of the graph. When they lived inside
``graph.npz`` every one-file ingest read them whole (into fresh memory, whose page faults are
slow) and wrote them whole again. In a file of their own a graph maps them (the page cache
serves every process; nothing is copied) and an update writes only its new rows.

Layout: ``names-<id>.q6`` holds rows of ``dim`` values packed in 6 bits (``dim * 3 / 4`` bytes a
row, :mod:`kvgraph.docgraph.name_codec`) and no header; ``names-<id>.i8`` (graphs saved before, and
a ``dim`` not a multiple of 4) holds ``dim`` int8 values a row. ``graph.json`` names the file, how
many of its rows belong to the graph, their width (``dim``, and ``bits`` and the packing's
``layout`` unless 8) and their CRC-32, which every load checks.

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

from kvgraph.docgraph import name_codec
from kvgraph.docgraph.side_files import described, side_files

NAMES_PREFIX = "names-"
SUFFIXES = {8: ".i8", 6: ".q6"}  # bits a value -> the file's suffix


@dataclass
class NamesFile:
    """The first ``rows`` rows of the file at ``path`` (``dim`` values of ``bits`` each), whose CRC-32 is ``crc``."""

    path: Path
    rows: int
    dim: int
    crc: int
    appended: bool = False  # an update wrote after these rows: another update from them must copy
    bits: int = 8

    @property
    def width(self) -> int:
        """Bytes a row takes."""
        return self.dim if self.bits == 8 else name_codec.packed_width(self.dim)

    @property
    def dtype(self) -> type[np.generic]:
        return np.int8 if self.bits == 8 else np.uint8

    def describe(self) -> dict[str, Any]:
        """What ``graph.json`` records (the file by name: a knowledge base may move)."""
        info: dict[str, Any] = {"file": self.path.name, "rows": self.rows, "dim": self.dim, "crc32": self.crc}
        if self.bits != 8:  # as graphs saved before recorded int8 files
            info["bits"], info["layout"] = self.bits, name_codec.LAYOUT
        return info

    @classmethod
    def from_info(cls, directory: Path, info: object) -> NamesFile:
        """The file ``graph.json`` describes; ValueError if the description is malformed."""
        fields = info if isinstance(info, dict) else {}
        bits = fields.get("bits", 8)
        if type(bits) is not int or bits not in SUFFIXES:
            raise ValueError(f"bad name-vector file description {info!r}")
        name, (rows, dim, crc) = described(info, "name-vector", NAMES_PREFIX, SUFFIXES[bits], ("rows", "dim", "crc32"))
        if bits != 8 and not name_codec.packs(dim):
            raise ValueError(f"bad name-vector file description {info!r}")
        if bits != 8 and fields.get("layout") != name_codec.LAYOUT:
            raise ValueError(f"{name} packs its values in a layout this version does not read; rebuild the graph")
        return cls(directory / name, rows, dim, crc, bits=bits)

    def map(self, check: bool = True) -> np.ndarray:
        """The rows as a read-only array over the file; ValueError if it is short or (``check``) fails its CRC.

        FileNotFoundError when the file is gone (a save replaced it since ``graph.json`` was read).
        """
        size = self.rows * self.width
        if not size:
            return np.zeros((self.rows, self.width), dtype=self.dtype)
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size < size:
                raise ValueError(f"{self.path.name} is shorter than its {self.rows} rows")
            view = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        rows = np.frombuffer(view, dtype=self.dtype).reshape(self.rows, self.width)
        if check and zlib.crc32(rows.reshape(-1).data) != self.crc:
            raise ValueError(f"{self.path.name} fails its checksum")
        return rows

    def append(self, fresh: np.ndarray, saved: object) -> NamesFile | None:
        """This file with ``fresh`` packed rows written after this graph's, or None where that could
        overwrite rows a graph uses: ``saved`` (what ``graph.json`` records now) is not this graph's
        file and rows, or an update appended after them already (see the module docstring)."""
        if self.appended or saved != self.describe():
            return None
        if fresh.dtype != self.dtype or fresh.ndim != 2 or fresh.shape[1] != self.width:
            shape = f"{fresh.dtype} {fresh.shape[1:]}"
            raise ValueError(f"rows of {shape} do not fit {self.path.name} ({self.width} bytes a row)")
        data = np.ascontiguousarray(fresh)
        with open(self.path, "r+b") as f:
            # Over whatever a crashed update left after the rows; not truncated after the new rows:
            # an unsaved graph of this process may map rows past them (a shorter file would make
            # reading those a SIGBUS), and what lies past the saved rows is never read.
            f.seek(self.rows * self.width)
            f.write(data.reshape(-1).data)
        self.appended = True
        crc = zlib.crc32(data.reshape(-1).data, self.crc)
        return NamesFile(self.path, self.rows + len(data), self.dim, crc, bits=self.bits)

    def sync(self) -> None:
        """Flush the file to disk (an append wrote without flushing: the save that commits it flushes)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def write(cls, directory: Path, stem: str, rows: np.ndarray) -> NamesFile:
        """A new file ``names-<stem>.q6`` (or ``.i8``) holding packed ``rows`` (2-d), flushed to disk."""
        if rows.dtype not in (np.int8, np.uint8) or rows.ndim != 2:
            raise ValueError(f"name vectors to save must be packed rows, not {rows.dtype} {rows.shape}")
        bits = 8 if rows.dtype == np.int8 else name_codec.BITS
        data = np.ascontiguousarray(rows)
        path = directory / f"{NAMES_PREFIX}{stem}{SUFFIXES[bits]}"
        with open(path, "wb") as f:
            f.write(data.reshape(-1).data)
            f.flush()
            os.fsync(f.fileno())
        return cls(path, len(data), name_codec.row_dim(data), zlib.crc32(data.reshape(-1).data), bits=bits)


def names_files(directory: Path) -> list[Path]:
    """Every name-vector file in ``directory`` (of either format), used or not."""
    return sorted(p for suffix in SUFFIXES.values() for p in side_files(directory, NAMES_PREFIX, suffix))
