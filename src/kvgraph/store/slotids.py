"""Node id of every slot, held in memory so that a query can name its hits without SQL.

A query's hits are slots; turning ten slots into ids through SQLite costs tens of
microseconds once the HNSW walk has evicted SQLite's pages from the CPU caches, which
is as much as the search itself on 100k vectors. The ids are kept as one UTF-8 blob
plus offsets (a few bytes more than the ids themselves per slot), are derived from the
records like the other caches, and are valid for the prefix of slots they cover.
Dead slots keep their last id; they are never returned by a search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kvgraph.store.growable import GrowableArray


class SlotIds:
    __slots__ = ("_blob", "_ends")

    def __init__(self) -> None:
        self._blob = bytearray()
        self._ends = GrowableArray(np.int64, 0)  # _ends[i]: end of slot i's id in _blob

    @property
    def n(self) -> int:
        return len(self._ends)

    def append(self, ids: Sequence[str]) -> None:
        """Ids of the next ``len(ids)`` slots ("" for a dead slot)."""
        if not ids:
            return
        encoded = [i.encode() for i in ids]
        start = len(self._blob)
        self._blob += b"".join(encoded)
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        self._ends.extend(start + np.cumsum(lengths))

    def get(self, slots: Sequence[int]) -> list[str]:
        ends = self._ends.view.data  # a memoryview: plain ints on indexing: cheaper than numpy scalars
        blob = self._blob
        return [blob[ends[s - 1] if s else 0 : ends[s]].decode() for s in slots]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"blob": np.frombuffer(bytes(self._blob), dtype=np.uint8), "ends": self._ends.view}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SlotIds:
        out = cls()
        out._blob = bytearray(arrays["blob"].tobytes())
        out._ends = GrowableArray.from_array(np.asarray(arrays["ends"], dtype=np.int64), 0)
        if out.n and int(out._ends.view[-1]) != len(out._blob):
            raise ValueError("slot ids: offsets do not match the blob")
        return out
