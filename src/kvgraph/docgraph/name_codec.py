"""How a saved graph packs its entity-name vectors: 6 bits a value, 4 values in 3 bytes.

The name vectors are most of a graph's bytes (at 100k chunks 187k names, 72 MB as int8 of the
151 MB graph; issue 17 asks for a graph no larger than half the rest of the knowledge base). Each
unit row is scaled so that its largest component is +-31 and rounded, as the int8 format scaled it
to +-127; decoding normalises the row again, so no scale is kept. Measured on the 18,337 names of
the 10k-chunk bench graph against int8 (nearest-neighbour pairs): cosines move by -0.0008 on
average (sd 0.0017, at most 0.007), and 3 of the 349 pairs at the SYNONYM threshold 0.9 cross
it; 4 bits crossed 111 (5 bits 25), too many. HotpotQA's graph mode gives the same recall either
way (docs/graph.md).

Packed rows are ``uint8`` arrays of ``dim * 3 / 4`` bytes a row; rows of ``int8`` (the format
before, and the one for a ``dim`` that is not a multiple of 4) are read as they are. Every
function here takes either, and tells them apart by their dtype.
"""

from __future__ import annotations

import numpy as np

PEAK = 31  # the largest magnitude a packed value takes
BITS = 6
# Which arrangement of the 6-bit values in their bytes (graph.json records it, and a file of
# another is refused rather than read as noise: its CRC cannot tell). Change it with the layout.
LAYOUT = "planes-v1"
_OFFSET = 32  # stored value = value + 32, in 1..63
_BLOCK_ROWS = 16_384  # rows quantized at a time (temporaries of block x dim float32)


def packs(dim: int) -> bool:
    """Whether rows of ``dim`` values are packed in 6 bits (else they are saved as int8)."""
    return dim % 4 == 0


def packed_width(dim: int) -> int:
    """Bytes a packed row of ``dim`` values takes."""
    return dim * 3 // 4 if packs(dim) else dim


def row_dim(packed: np.ndarray) -> int:
    """The number of values in each row of ``packed`` rows."""
    width = int(packed.shape[1])
    return width * 4 // 3 if packed.dtype == np.uint8 else width


def quantize(vectors: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Float rows as packed rows: 6 bits a value, or int8 (``bits=8``, and always when the width is
    not a multiple of 4), the format of the graphs saved before (each row scaled to +-127)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"name vectors must be rows, not an array of shape {v.shape}")
    n, dim = v.shape
    six = packs(dim) and bits != 8
    peak_value = PEAK if six else 127
    out = np.empty((n, packed_width(dim) if six else dim), dtype=np.uint8 if six else np.int8)
    for start in range(0, n, _BLOCK_ROWS):
        block = v[start : start + _BLOCK_ROWS]
        peak = np.abs(block).max(axis=1, keepdims=True) if block.size else np.ones((len(block), 1), np.float32)
        scaled = block * (np.float32(peak_value) / np.where(peak > 0, peak, np.float32(1.0)))
        np.rint(scaled, out=scaled)
        if six:
            out[start : start + len(block)] = _pack6(scaled.astype(np.int32) + _OFFSET)
        else:
            out[start : start + len(block)] = scaled
    return out


def values(packed: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The integer values of packed rows (int8 rows are returned as they are); ``out`` (int8 rows
    of the full width, at least as many) is filled and returned instead of a new array."""
    if packed.dtype == np.int8:
        return packed
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] % 3:
        raise ValueError(f"packed name vectors of dtype {packed.dtype} and shape {packed.shape}")
    n, m = len(packed), packed.shape[1] // 3
    o = np.empty((n, 4 * m), np.uint8) if out is None else out[:n].view(np.uint8)
    p0, p1, p2 = packed[:, :m], packed[:, m : 2 * m], packed[:, 2 * m :]
    np.bitwise_and(p0, 0x3F, out=o[:, :m])
    np.right_shift(p0, 6, out=o[:, m : 2 * m])
    o[:, m : 2 * m] |= (p1 & 0x0F) << 2
    np.right_shift(p1, 4, out=o[:, 2 * m : 3 * m])
    o[:, 2 * m : 3 * m] |= (p2 & 0x03) << 4
    np.right_shift(p2, 2, out=o[:, 3 * m :])
    o -= _OFFSET
    return o.view(np.int8)


def _pack6(stored: np.ndarray) -> np.ndarray:
    """Rows of values in 0..63 (a multiple of 4 a row) as 3 bytes per 4 values, in planes.

    A row's values are 4 quarters of ``m`` values (A, B, C, D); its bytes are 3 planes of ``m``:
    ``A | B << 6``, ``B >> 2 | C << 4``, ``C >> 4 | D << 2``. Unpacking is then six operations on
    contiguous runs (187k rows at 100k chunks: 0.05 s; 4 values interleaved in 3 bytes took 0.13
    s, which every graph update's pass over the names paid).
    """
    q = stored.astype(np.uint8)
    n, m = len(q), q.shape[1] // 4
    a, b, c, d = q[:, :m], q[:, m : 2 * m], q[:, 2 * m : 3 * m], q[:, 3 * m :]
    out = np.empty((n, 3 * m), dtype=np.uint8)
    out[:, :m] = a | (b << 6)
    out[:, m : 2 * m] = (b >> 2) | (c << 4)
    out[:, 2 * m :] = (c >> 4) | (d << 2)
    return out
