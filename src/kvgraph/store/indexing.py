"""Derived structures of the embedded store: metadata columns, BM25, slot ids and the HNSW index.

Each is valid for the prefix of slots it covers (slots are immutable), is built lazily from the
records, extended as rows are added, and cached to ``cache/*.kvg`` (checksummed) so that the
next open starts where this one stopped. The HNSW index is built by a background thread once
``ann_threshold`` nodes are live. Filters become slot masks here (:meth:`IndexingStore._allowed`).

The HNSW index needs faiss (the ``kvgraph[ann]`` extra). Without it the store searches exactly at
every size and logs one warning when ``ann_threshold`` is reached; a saved index
(``cache/hnsw.kvg``) is neither read nor rewritten, and stays valid while rows are added or
deleted (it covers a prefix of the slots, which never change), so it is used again once faiss is
installed. Asking for the index outright (:meth:`IndexingStore.build_index`, a query with
``strategy="ann"``) raises MissingDependencyError naming the extra.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.errors import CorruptionError
from kvgraph.fileio import fsync_dir, read_arrays, write_arrays
from kvgraph.filters import is_match_all, parse_filter
from kvgraph.schema import validate_id
from kvgraph.store.ann import HnswIndex, load_faiss, optional_faiss
from kvgraph.store.base import VectorStoreQuery
from kvgraph.store.bm25 import BM25Index
from kvgraph.store.columns import MetadataColumns
from kvgraph.store.core import StoreCore
from kvgraph.store.slotids import SlotIds

INDEX_BATCH = 2_048  # rows the background indexer adds per hold of the index lock
# Rows added after the index was built are searched exactly until this many wait: adding to
# a "vectors" index copies the indexed rows once per build, which should not happen per add().
TAIL_ROWS = 2_048
log = logging.getLogger(__name__)


class IndexingStore(StoreCore):
    """The derived structures on top of the core state, and the background indexer."""

    ann_threshold: int
    _hnsw_params: tuple[int, int, str]
    _background: bool
    _indexer: threading.Thread | None
    _stop_indexer: threading.Event
    _indexer_error: Exception | None = None
    _ann_saved_n: int = 0
    _warned_no_faiss: bool = False

    def _get_slot_ids(self) -> SlotIds:
        if self._slot_ids is None:
            cached = self._load_cache("ids")
            ids = SlotIds()
            if cached:
                try:
                    ids = SlotIds.from_arrays(cached[0])
                except (KeyError, ValueError):
                    ids = SlotIds()  # a damaged cache is only a lost shortcut
            ids.append(self._ids_between(ids.n, self._n))
            self._slot_ids = ids
        return self._slot_ids

    def _cache_path(self, name: str) -> Path:
        return self.path / "cache" / f"{name}.kvg"

    def _load_cache(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        p = self._cache_path(name)
        if not p.exists():
            return None
        try:
            arrays, meta = read_arrays(p)
        except CorruptionError:
            # A damaged cache is only a lost shortcut: the records rebuild it.
            return None
        if meta.get("epoch") != self._epoch or int(meta.get("n", -1)) > self._n:
            return None
        return arrays, meta

    def _get_columns(self) -> MetadataColumns:
        if self._columns is None:
            cached = self._load_cache("columns")
            cols = MetadataColumns.from_arrays(cached[0], cached[1]["columns"]) if cached else MetadataColumns()
            _, metas = self._rows_between(cols.n, self._n)
            cols.append(metas)
            self._columns = cols
        return self._columns

    def _get_bm25(self) -> BM25Index:
        if self._bm25 is None:
            cached = self._load_cache("bm25")
            idx = BM25Index.from_arrays(cached[0], cached[1]["bm25"]) if cached else BM25Index()
            texts, _ = self._rows_between(idx.n, self._n)
            idx.append(texts)
            self._bm25 = idx
        return self._bm25

    def _save_caches(self) -> None:
        if not self._n or self._closed:
            return
        (self.path / "cache").mkdir(exist_ok=True)
        if self._columns is not None:
            arrays, meta = self._columns.to_arrays()
            write_arrays(
                self._cache_path("columns"), arrays, {"epoch": self._epoch, "n": self._columns.n, "columns": meta}
            )
        if self._slot_ids is not None:
            write_arrays(
                self._cache_path("ids"), self._slot_ids.to_arrays(), {"epoch": self._epoch, "n": self._slot_ids.n}
            )
        if self._bm25 is not None:
            arrays, meta = self._bm25.to_arrays()
            write_arrays(self._cache_path("bm25"), arrays, {"epoch": self._epoch, "n": self._bm25.n, "bm25": meta})
        with self._ann_lock:
            ann = self._ann
            if ann is not None and ann.n and ann.n > self._ann_saved_n:
                write_arrays(
                    self._cache_path("hnsw"),
                    {"index": ann.to_bytes()},
                    {"epoch": self._epoch, "n": ann.n, "storage": ann.storage},
                )
                self._ann_saved_n = ann.n
        fsync_dir(self.path / "cache")

    def checkpoint(self) -> None:
        """Write the derived caches now, so that the next open starts fast."""
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            self._get_columns()
            self._get_bm25()
            self._get_slot_ids()
            self._save_caches()

    persist = checkpoint  # the classic vector-store interface name

    def rebuild_caches(self) -> list[str]:
        """Rebuild every derived structure from the records, save it, and return the cache files written.

        For repairs: nothing is read from the old cache files, which are deleted first.
        """
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            self._stop_background()
            cache = self.path / "cache"
            for p in cache.glob("*.kvg") if cache.exists() else []:
                p.unlink()
            with self._ann_lock:
                self._ann, self._ann_loaded, self._ann_saved_n = None, True, 0  # nothing left to load
            self._columns = self._bm25 = self._slot_ids = None
            self._get_columns()
            self._get_bm25()
            self._get_slot_ids()
            if self._ann_wanted():
                while self._index_some(INDEX_BATCH):
                    pass
            self._save_caches()
            return sorted(p.name for p in cache.glob("*.kvg")) if cache.exists() else []

    # ------------------------------------------------------------------ the ANN index

    def _ann_wanted(self) -> bool:
        """Whether the HNSW index should exist: ``ann_threshold`` nodes are live and faiss is installed."""
        if self._n_live < self.ann_threshold or not self.dim:
            return False
        if optional_faiss() is None:
            self._warn_no_faiss()
            return False
        return True

    def _warn_no_faiss(self) -> None:
        """Say once per store that it has reached ``ann_threshold`` but searches exactly, and why."""
        if self._warned_no_faiss:
            return
        self._warned_no_faiss = True
        saved = self._cache_path("hnsw").exists()
        log.warning(
            "%s: %s vectors reach ann_threshold (%s) but faiss is not installed: exact search; "
            "pip install 'kvgraph[ann]' for an HNSW index%s",
            self.path,
            f"{self._n_live:,}",
            f"{self.ann_threshold:,}",
            " (the saved one, cache/hnsw.kvg, is kept and used again then)" if saved else "",
        )

    def _load_ann(self) -> None:
        """Load the persisted index once (caller holds _ann_lock).

        ``_ann_loaded`` turns true only when the load is over: a query that finds it
        false waits for the lock (the load is quick) instead of searching exactly.
        """
        if self._ann_loaded:
            return
        try:
            cached = self._load_cache("hnsw")
            if cached:
                arrays, meta = cached
                ann = HnswIndex.from_bytes(arrays["index"], meta.get("storage"))
                if ann.n <= self._n:  # always, for a valid cache (its n was checked)
                    if ann.storage == "vectors":
                        ann.attach(self._matrix())
                    self._ann = ann
                    self._ann_saved_n = ann.n
        finally:
            self._ann_loaded = True

    def _index_some(self, limit: int, min_rows: int = 1) -> int:
        """Add up to ``limit`` un-indexed rows to the HNSW index; returns rows added.

        Does nothing while fewer than ``min_rows`` rows wait (they are searched exactly as
        a tail); when nothing is left to add, a ``vectors`` index switches back to reading
        the mapped file, which frees the copy it built with.
        """
        with self._ann_lock:
            self._load_ann()
            n = self._n
            if self._ann is None:
                m, efc, storage = self._hnsw_params
                self._ann = HnswIndex(self.dim, self.metric.value, m, efc, storage)
            ann = self._ann
            mat = self._matrix()
            if not ann.is_trained:
                ann.train(np.asarray(mat[:n]))
            todo = min(limit, n - ann.n)
            if todo > 0 and (todo >= min_rows or not ann.attached):
                ann.add_rows(mat, ann.n + todo)
                return todo
            ann.attach(mat)
            return 0

    def build_index(self) -> None:
        """Index every committed row now (blocking), whatever the collection size."""
        with self._mutex:
            self._check_open()
            load_faiss()  # the index is asked for outright: without faiss, say which extra to install
            while self._index_some(INDEX_BATCH):
                pass

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait until the background indexer has caught up; True if it has."""
        t = self._indexer
        if t is not None:
            t.join(timeout)
        return self._indexer is None or not self._indexer.is_alive()

    def _kick_indexer(self) -> None:
        if not self._ann_wanted() or self.read_only:
            return
        if not self._background:
            return
        if self._indexer is not None and self._indexer.is_alive():
            return
        self._stop_indexer.clear()
        self._indexer = threading.Thread(target=self._indexer_loop, name="kvgraph-indexer", daemon=True)
        self._indexer.start()

    def _indexer_loop(self) -> None:
        try:
            while not self._stop_indexer.is_set():
                if not self._index_some(INDEX_BATCH, min_rows=TAIL_ROWS):
                    break
        except Exception as e:
            self._indexer_error = e

    def _stop_background(self) -> None:
        self._stop_indexer.set()
        if self._indexer is not None:
            self._indexer.join()
            self._indexer = None

    def _allowed(self, q: VectorStoreQuery) -> np.ndarray | None:
        """Mask of slots a query may return, or None when every live slot may be returned."""
        if q.filters is None and q.node_ids is None and q.doc_ids is None:
            return None  # the common case, without building a filter tree
        tree = parse_filter(q.filters)
        restricted = not is_match_all(tree) or q.node_ids is not None or q.doc_ids is not None
        if not restricted:
            return None
        mask = self._live.view.copy()
        if not is_match_all(tree):
            mask &= self._get_columns().mask(tree)
        if q.node_ids is not None:
            ids = [validate_id(i) for i in q.node_ids]
            sel = np.zeros(self._n, dtype=bool)
            sel[list(self._records.slots_of(ids).values())] = True
            mask &= sel
        if q.doc_ids is not None:
            sel = np.zeros(self._n, dtype=bool)
            sel[self._records.slots_of_docs([validate_id(d, "doc id") for d in q.doc_ids])] = True
            mask &= sel
        return mask
