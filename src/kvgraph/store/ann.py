"""The approximate nearest-neighbour index: faiss HNSW over the store's slots.

Position ``i`` in the index is slot ``i``: slots are appended in order, dead ones
included, and excluded at search time through an allow-list bitmap.

Storage kinds (where the index finds a vector when it computes a distance):

* ``vectors`` (default): the store's own memory-mapped float32 file. The index holds
  only the graph (about ``8 * M`` bytes per vector plus levels); distances are exact, so
  nothing is re-ranked, and the vectors are in memory once, shared with exact search.
  faiss cannot append to a borrowed buffer, so adding rows copies the indexed rows
  into an owned buffer for the duration of the build (see :meth:`add_rows`), and
  :meth:`attach` switches back to the file afterwards.
* ``sq8``: 8-bit scalar-quantized copies inside the index (a quarter of float32);
  distances are approximate and the store re-ranks candidates exactly.
* ``flat``: a private float32 copy inside the index (twice the memory; exact distances).

faiss is the optional extra ``kvgraph[ann]`` (67 MB installed). It is looked up when it is
used, never at import: without it the store searches exactly (:mod:`kvgraph.store.dense`
falls back to numpy) and builds no index; asking for one explicitly raises
:class:`~kvgraph.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from kvgraph.errors import MissingDependencyError

TRAIN_SAMPLE = 100_000
STORAGES = ("vectors", "sq8", "flat")
EXTRA = "ann"  # pip install 'kvgraph[ann]' installs faiss-cpu

_not_installed = False  # an import of faiss failed once: do not search sys.path again per query


def optional_faiss() -> Any | None:
    """The faiss module, or None when it is not installed.

    Looked up at every use (exact search calls this per query): after the first import it is
    one dictionary lookup. A failed import is remembered, since searching ``sys.path`` again
    would cost tens of microseconds per query; ``sys.modules["faiss"] = None`` (how tests
    take faiss away in-process) is honoured without being remembered.
    """
    global _not_installed
    mod = sys.modules.get("faiss")
    if mod is not None:
        return mod
    if "faiss" in sys.modules or _not_installed:
        return None
    try:
        import faiss
    except ImportError:
        _not_installed = True
        return None
    return faiss


def load_faiss() -> Any:
    """The faiss module, or MissingDependencyError naming the ``ann`` extra."""
    faiss = optional_faiss()
    if faiss is None:
        raise MissingDependencyError("faiss", EXTRA)
    return faiss


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as the bitmap faiss's IDSelectorBitmap reads (bit i of byte i // 8)."""
    return np.packbits(mask, bitorder="little")


class HnswIndex:
    index: Any
    storage: str
    _matrix: np.ndarray | None  # the mapped rows the graph reads ("vectors" storage, attached)
    _built: bool  # rows were added since the graph was created or loaded (it has growth slack)

    def __init__(
        self, dim: int, metric: str, m: int = 16, ef_construction: int = 200, storage: str = "vectors"
    ) -> None:
        faiss = load_faiss()
        fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self._matrix = None
        self._built = False
        if storage == "sq8":
            self.index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, fmetric)
        elif storage in ("flat", "vectors"):
            self.index = faiss.IndexHNSWFlat(dim, m, fmetric)
        else:
            raise ValueError(f"ann storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.index.hnsw.efConstruction = ef_construction
        self.storage = storage

    # ---- persistence --------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, blob: np.ndarray, storage: str | None = None) -> HnswIndex:
        """Deserialize; a ``vectors`` index must then be given its rows with :meth:`attach`."""
        faiss = load_faiss()
        obj = cls.__new__(cls)
        obj._matrix = None
        obj._built = False
        blob = np.ascontiguousarray(blob)
        if storage == "vectors":
            obj.index = faiss.deserialize_index(blob, faiss.IO_FLAG_SKIP_STORAGE)
            flat = faiss.IndexFlatL2(obj.index.d) if obj.index.metric_type == faiss.METRIC_L2 else None
            flat = flat or faiss.IndexFlatIP(obj.index.d)
            obj.index.storage = flat  # the setter hands the new object to the index ...
            obj.index.own_fields = True  # ... which frees it with itself
            obj.storage = "vectors"
        else:
            obj.index = faiss.deserialize_index(blob)
            obj.storage = "sq8" if "SQ" in type(obj.index).__name__ else "flat"
        return obj

    def to_bytes(self) -> np.ndarray:
        """The serialized index; for ``vectors`` storage the graph only (the vectors are the store's)."""
        faiss = load_faiss()
        if self.storage != "vectors":
            blob: np.ndarray = faiss.serialize_index(self.index)
            return blob
        writer = faiss.VectorIOWriter()
        faiss.write_index(self.index, writer, faiss.IO_FLAG_SKIP_STORAGE)
        out: np.ndarray = faiss.vector_to_array(writer.data)
        return out

    # ---- state --------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def exact_scores(self) -> bool:
        """Whether search returns exact distances (no re-ranking needed)."""
        return self.storage != "sq8"

    @property
    def attached(self) -> bool:
        """For ``vectors`` storage: whether the graph reads the mapped file (not a copy)."""
        return self._matrix is not None

    def train(self, sample: np.ndarray) -> None:
        if not self.index.is_trained:
            rng = np.random.default_rng(0)
            if len(sample) > TRAIN_SAMPLE:
                sample = sample[np.sort(rng.choice(len(sample), TRAIN_SAMPLE, replace=False))]
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    # ---- the borrowed float32 rows ("vectors" storage) -------------------------------------
    #
    # The graph's storage is one faiss IndexFlat, owned by the index. Its codes are either an
    # owned buffer (while rows are added) or a view of the store's memory-mapped file.

    def _flat(self) -> Any:
        return load_faiss().downcast_index(self.index.storage)

    def attach(self, matrix: np.ndarray) -> None:
        """Read the indexed rows from ``matrix`` (the store's mapped file) instead of a copy.

        ``matrix`` must stay mapped while the index uses it: this object keeps a reference,
        and the store calls attach again when it maps the file anew.
        """
        if self.storage != "vectors" or matrix is self._matrix:
            return
        n = self.n
        if len(matrix) < n or matrix.dtype != np.float32 or not matrix.flags.c_contiguous:
            raise ValueError(f"attach needs >= {n} contiguous float32 rows, got {matrix.shape} {matrix.dtype}")
        faiss = load_faiss()
        if self._built:
            # After a build the graph's arrays carry the slack of geometric growth (up to 2x):
            # a fresh copy from the serialized graph is exact-size, and dropping the old object
            # frees it together with the row copy made for adding.
            self.index = HnswIndex.from_bytes(self.to_bytes(), "vectors").index
            self._built = False
        codes = self._flat().codes
        freed = faiss.UInt8Vector()
        codes.owned_data.swap(freed)  # any copy made for adding rows, released below
        nbytes = n * matrix.shape[1] * 4
        ptr = faiss.swig_ptr(matrix.reshape(-1).view(np.uint8)) if n else None
        codes.is_owned = not n  # an empty view would be a null pointer: stay an empty owned vector
        codes.view_data = ptr
        codes.view_size = nbytes
        codes.c_ptr = ptr if n else codes.owned_data.data()
        codes.c_size = nbytes
        self._flat().ntotal = n
        self._matrix = matrix
        del freed

    def add_rows(self, matrix: np.ndarray, hi: int, build_to: int | None = None) -> None:
        """Index rows ``self.n .. hi-1`` of ``matrix`` (all rows committed so far).

        For ``vectors`` storage faiss appends to its own buffer, so the first call after
        :meth:`attach` (or on a new index) copies the indexed rows once, into a buffer sized
        for ``build_to`` rows (default ``len(matrix)``) so that later batches of the same
        build never reallocate; :meth:`attach` releases it.
        """
        lo = self.n
        if hi <= lo:
            return
        if self.storage == "vectors" and (self._matrix is not None or lo == 0):
            faiss = load_faiss()
            flat = self._flat()
            flat.codes = faiss.MaybeOwnedVectorUInt8()  # owned and empty (a view is just dropped)
            flat.ntotal = 0
            cap = max(hi, build_to or len(matrix))
            flat.add(np.ascontiguousarray(matrix[:cap], dtype=np.float32))  # one exact-size allocation
            flat.codes.resize(lo * matrix.shape[1] * 4)  # keep the capacity; faiss re-appends rows lo..
            flat.ntotal = lo
            self._matrix = None
        self.index.add(np.ascontiguousarray(matrix[lo:hi], dtype=np.float32))
        self._built = True

    # ---- search -------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, ef: int, allowed: np.ndarray | None = None, bitmap: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) arrays of shape (q, k); slot -1 where fewer than k were found.

        ``allowed`` is a boolean mask over the index positions; positions outside it are
        never returned (the graph is still traversed through them); ``bitmap`` is the same
        mask already packed with :func:`pack_mask` (callers cache it). Scores are faiss
        distances: inner products, or squared L2 distances for the l2 metric.
        """
        faiss = load_faiss()
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, k)
        if bitmap is None and allowed is not None:
            bitmap = pack_mask(allowed[: self.n])
        if bitmap is not None:
            params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        index = self.index
        n_q = len(queries)
        scores = np.empty((n_q, k), dtype=np.float32)
        slots = np.empty((n_q, k), dtype=np.int64)
        # search_c skips the Python wrapper's checks and copies: the caller passes float32 rows
        q = np.ascontiguousarray(queries, dtype=np.float32)
        index.search_c(n_q, faiss.swig_ptr(q), k, faiss.swig_ptr(scores), faiss.swig_ptr(slots), params)
        del bitmap  # kept alive until here: faiss reads it during search
        return scores, slots
