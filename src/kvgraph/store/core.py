"""The embedded store's core: its committed state in memory, read snapshots, vectors and rows.

Every other part of the store (:mod:`~kvgraph.store.indexing`, :mod:`~kvgraph.store.results`,
:mod:`~kvgraph.store.search`, :mod:`~kvgraph.store.engine`) builds on :class:`StoreCore`, one
layer on top of the other, and :class:`~kvgraph.store.embedded.EmbeddedVectorStore` is the top
one. The state is loaded from one consistent snapshot of the records database (the commit
point); the vector file is verified against the committed checksums before first use.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from kvgraph.errors import CorruptionError, ReadOnlyError, StoreClosedError
from kvgraph.fileio import disk_full_error, is_disk_full, is_sqlite_damage
from kvgraph.locking import WriterLock
from kvgraph.schema import Node
from kvgraph.store.ann import HnswIndex, pack_mask
from kvgraph.store.base import Metric
from kvgraph.store.bm25 import BM25Index
from kvgraph.store.columns import MetadataColumns
from kvgraph.store.growable import GrowableArray
from kvgraph.store.records import NodeRow, Records, row_checksum
from kvgraph.store.slotids import SlotIds
from kvgraph.store.vectors import VectorFile

T = TypeVar("T")
log = logging.getLogger(__name__)
READ_RETRIES = 5  # a reader whose snapshot lost a race with vacuum starts the call again


def _loads(doc: str) -> Any:
    return {} if doc == "{}" else json.loads(doc)  # most nodes carry no relationships


class SqliteErrors:
    """Report a damaged records database as CorruptionError naming the file (a full disk as DiskFullError).

    A class rather than a generator-based context manager: it wraps every call, and
    this costs a fraction of a microsecond instead of several.
    """

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        if isinstance(e, sqlite3.DatabaseError):
            if is_disk_full(e):
                raise disk_full_error(self.path / "records.sqlite", e) from e
            if is_sqlite_damage(e):
                raise CorruptionError(self.path / "records.sqlite", f"records database damaged: {e}") from e


class StoreCore:
    """The committed state of a store directory and the reads every other layer builds on."""

    path: Path
    read_only: bool
    metric: Metric
    dim: int
    _mutex: threading.RLock
    _ann_lock: threading.Lock
    _closed: bool
    _lock: WriterLock | None
    _records: Records
    _gen: int
    _n: int
    _n_live: int
    _epoch: str
    _segments: list[tuple[int, int, int]]
    _vf: VectorFile
    _live: GrowableArray
    _verified: int
    _columns: MetadataColumns | None
    _bm25: BM25Index | None
    _ann: HnswIndex | None
    _ann_loaded: bool
    _sqnorms: np.ndarray | None
    _slot_ids: SlotIds | None
    _live_rows_cache: tuple[tuple[int, int], np.ndarray] | None
    _live_bits_cache: tuple[tuple[int, int, int], np.ndarray] | None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.path}: store is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: store was opened read-only")

    def _sqlite_errors(self) -> SqliteErrors:
        return SqliteErrors(self.path)

    def _read(self, fn: Callable[[], T]) -> T:
        """Run a read in one consistent snapshot of the committed state.

        A writer's process reads its own state. A reader wraps the call in one SQLite
        read transaction, so every statement sees the commit its in-memory state was
        loaded from; if a concurrent vacuum removed the vector file of that snapshot,
        the call starts again on the newer state.
        """
        with self._mutex, self._sqlite_errors():
            self._check_open()
            if not self.read_only:
                return fn()
            db = self._records.db
            for attempt in range(READ_RETRIES):
                db.execute("BEGIN")
                try:
                    self._refresh()
                    return fn()
                except (FileNotFoundError, CorruptionError):
                    db.execute("COMMIT")
                    if attempt + 1 < READ_RETRIES and self._records.generation() != self._gen:
                        continue
                    raise
                finally:
                    if db.in_transaction:
                        db.execute("COMMIT")
            raise AssertionError("unreachable")

    def _load_state(self) -> None:
        """(Re)load everything derived from the committed records; structures are lazy."""
        db = self._records
        own = not db.db.in_transaction
        if own:
            db.db.execute("BEGIN")  # one consistent snapshot
        try:
            meta = db.meta()
            self._gen = int(meta["generation"])
            self.dim = int(meta["dim"])
            self._n = int(meta["n_slots"])
            self._epoch = meta["vectors_file"]
            dead = db.dead_slots()
            self._segments = db.segments()
        finally:
            if own:
                db.db.execute("COMMIT")
        self._vf = VectorFile(self.path / self._epoch, self.dim or 1)
        live = np.ones(self._n, dtype=bool)
        if dead:
            live[np.asarray(dead, dtype=np.int64)] = False
        self._live = GrowableArray.from_array(live, False)
        self._n_live = int(live.sum())
        self._verified = 0  # rows whose checksums were verified (lazily, before first use)
        self._columns: MetadataColumns | None = None
        self._bm25: BM25Index | None = None
        self._ann: HnswIndex | None = None
        self._ann_loaded = False
        self._sqnorms: np.ndarray | None = None
        self._slot_ids: SlotIds | None = None
        self._live_rows_cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._live_bits_cache: tuple[tuple[int, int, int], np.ndarray] | None = None

    def _refresh(self) -> None:
        """Pick up commits made by another process (readers) since we last looked."""
        if not self.read_only:
            return
        gen = self._records.generation()
        if gen == self._gen:
            return
        old_n, old_epoch, columns, bm25, slot_ids = self._n, self._epoch, self._columns, self._bm25, self._slot_ids
        ann, ann_loaded, verified = self._ann, self._ann_loaded, self._verified
        self._load_state()
        if self._epoch != old_epoch or self._n < old_n:
            return  # vacuumed: everything derived starts over
        self._verified = verified
        self._ann, self._ann_loaded = ann, ann_loaded
        if columns is not None or bm25 is not None:
            texts, metas = self._rows_between(old_n, self._n)
            if columns is not None:
                columns.append(metas)
            if bm25 is not None:
                bm25.append(texts)
        if slot_ids is not None:
            slot_ids.append(self._ids_between(old_n, self._n))
        self._columns, self._bm25, self._slot_ids = columns, bm25, slot_ids

    def _row_to_node(self, row: NodeRow, with_embedding: bool = False) -> Node:
        slot, node_id, text, md, ref, rels, norm, crc = row
        if crc is not None and row_checksum(node_id, text, md, ref, rels, norm) != crc:
            raise CorruptionError(
                self.path / "records.sqlite",
                f"node {node_id!r} (slot {slot}) no longer matches its checksum: its text or metadata "
                "changed on disk; run kvgraph repair (a knowledge base) or restore the store from a backup",
            )
        emb = None
        if with_embedding:
            vec = np.array(self._matrix()[slot], dtype=np.float32)
            emb = vec * np.float32(norm) if self.metric is Metric.COSINE else vec
        try:
            metadata, relationships = _loads(md), _loads(rels)
        except ValueError:  # a row from before checksums, damaged on disk
            raise CorruptionError(
                self.path / "records.sqlite", f"node {node_id!r} (slot {slot}): metadata damaged; run kvgraph repair"
            ) from None
        return Node(
            id=node_id,
            text=text,
            metadata=metadata,
            embedding=emb,
            ref_doc_id=ref,
            relationships=relationships,
        )

    def _matrix(self) -> np.ndarray:
        """The committed vectors, checksums verified before first use."""
        if self._verified < self._n:
            self._vf.verify([s for s in self._segments if s[0] + s[1] > self._verified])
            self._verified = self._n
        return self._vf.matrix(self._n)

    def _rows_between(self, a: int, b: int) -> tuple[list[str], list[dict[str, Any]]]:
        """Texts and metadata of slots a..b-1 (empty for dead slots)."""
        texts = [""] * (b - a)
        metas: list[dict[str, Any]] = [{} for _ in range(b - a)]
        for slot, text, md in self._records.rows_from(a):
            if slot >= b:
                break
            texts[slot - a] = text
            try:
                metas[slot - a] = json.loads(md)
            except ValueError:  # damaged on disk: the row's checksum names it when it is read or checked
                log.warning("%s: slot %d has damaged metadata; run kvgraph check", self.path / "records.sqlite", slot)
        return texts, metas

    def _ids_between(self, a: int, b: int) -> list[str]:
        """Node ids of slots a..b-1 ("" for dead slots)."""
        out = [""] * (b - a)
        for slot, node_id in self._records.ids_from(a):
            if slot >= b:
                break
            out[slot - a] = node_id
        return out

    def _mark_dead(self, slots: list[int]) -> None:
        live = self._live.view
        idx = np.asarray(slots, dtype=np.int64)
        self._n_live -= int(live[idx].sum())
        live[idx] = False

    def _live_rows(self) -> np.ndarray:
        """Ascending live slots, cached: the mask only changes by adds (n grows) and deletes (n_live shrinks)."""
        key = (self._n, self._n_live)
        cached = self._live_rows_cache
        if cached is None or cached[0] != key:
            cached = (key, np.flatnonzero(self._live.view))
            self._live_rows_cache = cached
        return cached[1]

    def _live_bitmap(self, indexed: int) -> np.ndarray | None:
        """The live mask over the indexed slots packed for faiss (cached), or None when none is dead."""
        if self._n_live == self._n:
            return None
        key = (self._n, self._n_live, indexed)
        cached = self._live_bits_cache
        if cached is None or cached[0] != key:
            cached = (key, pack_mask(self._live.view[:indexed]))
            self._live_bits_cache = cached
        return cached[1]
