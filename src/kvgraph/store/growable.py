"""A numpy array that grows by appending, with amortised O(1) appends."""

from __future__ import annotations

import numpy as np


class GrowableArray:
    __slots__ = ("_data", "_fill", "_n")

    def __init__(self, dtype: np.dtype | type, fill: object = 0, capacity: int = 1024) -> None:
        self._data = np.full(max(capacity, 16), fill, dtype=dtype)
        self._n = 0
        self._fill = fill

    @classmethod
    def from_array(cls, arr: np.ndarray, fill: object = 0) -> GrowableArray:
        g = cls(arr.dtype, fill, capacity=len(arr) + 16)
        g._data[: len(arr)] = arr
        g._n = len(arr)
        return g

    def __len__(self) -> int:
        return self._n

    def _reserve(self, n: int) -> None:
        if n > len(self._data):
            new = np.full(max(n, 2 * len(self._data)), self._fill, dtype=self._data.dtype)
            new[: self._n] = self._data[: self._n]
            self._data = new

    def extend(self, values: np.ndarray) -> None:
        m = len(values)
        self._reserve(self._n + m)
        self._data[self._n : self._n + m] = values
        self._n += m

    def extend_fill(self, m: int) -> None:
        """Append m copies of the fill value (the buffer beyond _n already holds it)."""
        self._reserve(self._n + m)
        self._data[self._n : self._n + m] = self._fill
        self._n += m

    @property
    def view(self) -> np.ndarray:
        return self._data[: self._n]
