"""The approximate nearest-neighbour index: faiss HNSW over the store's slots.

Position ``i`` in the index is slot ``i``: slots are appended in order, dead ones
included, and excluded at search time through an allow-list bitmap. By default the
index keeps 8-bit scalar-quantized copies of the vectors (a quarter of the float32
size) and the store re-ranks the candidates exactly from its memory-mapped file, so
memory stays close to the raw vectors while results keep full precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kvgraph.errors import MissingDependencyError

TRAIN_SAMPLE = 100_000


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a core dependency
        raise MissingDependencyError("faiss", "local") from e
    return faiss


class HnswIndex:
    def __init__(self, dim: int, metric: str, m: int = 16, ef_construction: int = 200, storage: str = "sq8") -> None:
        faiss = _faiss()
        fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if storage == "sq8":
            self.index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, fmetric)
        elif storage == "flat":
            self.index = faiss.IndexHNSWFlat(dim, m, fmetric)
        else:
            raise ValueError(f"ann storage must be 'sq8' or 'flat', got {storage!r}")
        self.index.hnsw.efConstruction = ef_construction
        self.storage = storage

    @classmethod
    def from_bytes(cls, blob: np.ndarray) -> HnswIndex:
        obj = cls.__new__(cls)
        obj.index = _faiss().deserialize_index(np.ascontiguousarray(blob))
        obj.storage = "sq8" if "SQ" in type(obj.index).__name__ else "flat"
        return obj

    def to_bytes(self) -> np.ndarray:
        blob: np.ndarray = _faiss().serialize_index(self.index)
        return blob

    @property
    def n(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: np.ndarray) -> None:
        if not self.index.is_trained:
            rng = np.random.default_rng(0)
            if len(sample) > TRAIN_SAMPLE:
                sample = sample[np.sort(rng.choice(len(sample), TRAIN_SAMPLE, replace=False))]
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, rows: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(rows, dtype=np.float32))

    def search(
        self, queries: np.ndarray, k: int, ef: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) arrays of shape (q, k); slot -1 where fewer than k were found.

        ``allowed`` is a boolean mask over the index positions; positions outside it are
        never returned (the graph is still traversed through them).
        """
        faiss = _faiss()
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, k)
        bitmap = None
        if allowed is not None:
            bitmap = np.packbits(allowed[: self.n], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        scores, slots = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        del bitmap  # kept alive until here: faiss reads it during search
        return scores, slots
