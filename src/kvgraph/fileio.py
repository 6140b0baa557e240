"""Crash-safe file writes and the checksummed array file format used for derived caches.

An array file is::

    b"KVGARR01" | u64 header length | u32 crc32(header) | header JSON | arrays, each 64-byte aligned

The header lists every array's name, dtype, shape, offset and crc32, plus free-form
``meta``. A file is written to a temporary name, fsynced, renamed over the target and
the directory fsynced, so readers see either the old file or the new one, never a mix.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.errors import CorruptionError, DiskFullError

MAGIC = b"KVGARR01"
_ALIGN = 64


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A write that failed for lack of room: no space, a quota, or a file-size limit (RLIMIT_FSIZE).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# SQLite reports a full disk as SQLITE_FULL, or as a failed write when the OS refused it outright
# (IOERR_SHMSIZE: the WAL index file could not be grown, which opening a database may need).
_SQLITE_NO_SPACE = frozenset(
    {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE", "SQLITE_IOERR_SHMSIZE"}
)


def is_disk_full(e: BaseException) -> bool:
    """True when ``e`` is a write refused for lack of space (an OSError or an SQLite error)."""
    if isinstance(e, OSError):
        return e.errno in NO_SPACE
    return isinstance(e, sqlite3.OperationalError) and getattr(e, "sqlite_errorname", "") in _SQLITE_NO_SPACE


def is_sqlite_damage(e: BaseException) -> bool:
    """True when an SQLite error means the database file is damaged (not busy, full or a bad query)."""
    if not isinstance(e, sqlite3.DatabaseError) or is_disk_full(e):
        return False
    return type(e) is sqlite3.DatabaseError or any(
        w in str(e) for w in ("malformed", "not a database", "disk I/O", "corrupt")
    )


def disk_full_error(path: object, e: BaseException) -> DiskFullError:
    """The DiskFullError for ``e`` (see :func:`is_disk_full`), naming ``path`` and any other file the OS named."""
    reason = str(getattr(e, "strerror", None) or e)
    said = [] if getattr(e, "errno", None) == errno.ENOSPC or "disk is full" in reason else [reason]
    filename = getattr(e, "filename", None)
    if filename and str(filename) != str(path):
        said.append(str(filename))
    return DiskFullError(path, ": ".join(said))


@contextmanager
def disk_full_errors(path: object) -> Iterator[None]:
    """Raise DiskFullError naming ``path`` for a write refused for space (other errors pass through)."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        if not is_disk_full(e):
            raise
        raise disk_full_error(path, e) from e


def atomic_write(path: Path, chunks: list[bytes | memoryview]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with disk_full_errors(path), open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written temporary file would only take space
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def crc32(buf: bytes | memoryview | np.ndarray) -> int:
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1).data
    return zlib.crc32(buf) & 0xFFFFFFFF


def write_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    entries = []
    blobs: list[memoryview] = []
    offset = 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        view = arr.view(np.uint8).reshape(-1).data if arr.nbytes else memoryview(b"")
        pad = (-offset) % _ALIGN
        offset += pad
        blobs.append(memoryview(b"\0" * pad))
        entries.append(
            {
                "name": name,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": arr.nbytes,
                "crc": crc32(view),
            }
        )
        blobs.append(view)
        offset += arr.nbytes
    header = json.dumps({"meta": meta, "arrays": entries}, separators=(",", ":")).encode()
    prefix = MAGIC + struct.pack("<QI", len(header), crc32(header))
    base = len(prefix) + len(header)
    pad = (-base) % _ALIGN
    atomic_write(path, [prefix, header, b"\0" * pad, *blobs])


def read_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify an array file; raise CorruptionError naming the file if damaged."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorruptionError(path, f"cannot read: {e}") from e
    if len(data) < 20 or data[:8] != MAGIC:
        raise CorruptionError(path, "not a kvgraph array file (bad magic or truncated)")
    hlen, hcrc = struct.unpack("<QI", data[8:20])
    header = data[20 : 20 + hlen]
    if len(header) != hlen or crc32(header) != hcrc:
        raise CorruptionError(path, "header checksum mismatch")
    doc = json.loads(header)
    base = 20 + hlen
    base += (-base) % _ALIGN
    arrays: dict[str, np.ndarray] = {}
    buf = memoryview(data)
    for entry in doc["arrays"]:
        start = base + entry["offset"]
        chunk = buf[start : start + entry["nbytes"]]
        if len(chunk) != entry["nbytes"] or crc32(chunk) != entry["crc"]:
            raise CorruptionError(path, f"array {entry['name']!r} checksum mismatch")
        arrays[entry["name"]] = np.frombuffer(chunk, dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])
    return arrays, doc["meta"]
