"""Crash-safe file writes and the checksummed array file format used for derived caches.

An array file is::

    b"KVGARR01" | u64 header length | u32 crc32(header) | header JSON | arrays, each 64-byte aligned

The header lists every array's name, dtype, shape, offset and crc32, plus free-form
``meta``. A file is written to a temporary name, fsynced, renamed over the target and
the directory fsynced, so readers see either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.errors import CorruptionError

MAGIC = b"KVGARR01"
_ALIGN = 64


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, chunks: list[bytes | memoryview]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
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
