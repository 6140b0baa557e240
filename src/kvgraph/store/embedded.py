"""kvgraph's embedded vector store: a directory that behaves like a small database.

Layout of a store directory::

    records.sqlite      nodes, dead slots, vector checksums, settings (the commit point)
    vectors-<g>.f32     float32 rows, slot i at row i (unit vectors for the cosine metric)
    cache/*.kvg         derived structures (metadata columns, BM25, HNSW), checksummed,
                        each valid for the slots it covers; rebuilt when absent or stale
    LOCK                the writer lock (holder's pid and command inside)

A write appends vectors and fsyncs them, then commits the records in one SQLite
transaction; a crash at any point leaves the last commit intact (see docs/store.md).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from kvgraph.errors import (
    CorruptionError,
    DimensionMismatchError,
    InvalidInputError,
    ReadOnlyError,
    StoreClosedError,
)
from kvgraph.fileio import fsync_dir, read_arrays, write_arrays
from kvgraph.filters import FilterSpec, is_match_all, parse_filter
from kvgraph.locking import WriterLock
from kvgraph.schema import Node, metadata_to_json, validate_id, validate_metadata
from kvgraph.store import dense, fusion, planner
from kvgraph.store.ann import HnswIndex, pack_mask
from kvgraph.store.base import Metric, QueryMode, VectorStoreQuery, VectorStoreQueryResult
from kvgraph.store.bm25 import BM25Index
from kvgraph.store.columns import MetadataColumns
from kvgraph.store.growable import GrowableArray
from kvgraph.store.mmr import mmr
from kvgraph.store.records import FORMAT_VERSION, NodeRow, Records
from kvgraph.store.slotids import SlotIds
from kvgraph.store.vectors import VectorFile

T = TypeVar("T")
INDEX_DEFAULTS: dict[str, Any] = {
    "ann_threshold": 50_000,
    "hnsw_m": 16,
    "ef_construction": 200,
    "ef_search": 128,
    "ann_storage": "vectors",
}
READ_RETRIES = 5  # a reader whose snapshot lost a race with vacuum starts the call again
INDEX_BATCH = 2_048  # rows the background indexer adds per hold of the index lock
# Rows added after the index was built are searched exactly until this many wait: adding to
# a "vectors" index copies the indexed rows once per build, which should not happen per add().
TAIL_ROWS = 2_048
PENDING_SWEEP = 4_096  # lazy query results remembered before the list is swept of freed ones


def _loads(doc: str) -> Any:
    return {} if doc == "{}" else json.loads(doc)  # most nodes carry no relationships


class _SqliteErrors:
    """Report a damaged records database as CorruptionError naming the file.

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
            damaged = type(e) is sqlite3.DatabaseError or any(
                w in str(e) for w in ("malformed", "not a database", "disk I/O", "corrupt")
            )
            if damaged:
                raise CorruptionError(self.path / "records.sqlite", f"records database damaged: {e}") from e


class LazyNodesResult(VectorStoreQueryResult):
    """A query result whose ``nodes`` are built on first access.

    Ids, similarities and the plan are filled in by the query. Turning hits into
    :class:`Node` objects (an SQL read of text, metadata and relationships, and their
    JSON decoding) costs as much as an HNSW search on 100k vectors, and callers that
    rank, fuse or evaluate need only ids and scores, so it waits for ``result.nodes``.
    The store hands out a loader that returns exactly what the query saw: it
    materialises pending results before it commits anything (see
    ``EmbeddedVectorStore._settle_results``), and a read-only store, whose writer is
    another process, reads the rows during the query. Otherwise this behaves like
    :class:`VectorStoreQueryResult`.
    """

    def __init__(
        self,
        nodes: list[Node] | None = None,
        similarities: list[float] | None = None,
        ids: list[str] | None = None,
        plan: str = "",
        *,
        load: Callable[[LazyNodesResult], list[Node]] | None = None,
    ) -> None:
        self._load = load
        self._nodes = nodes
        self.similarities = similarities if similarities is not None else []
        self.ids = ids if ids is not None else []
        self.plan = plan

    @property
    def nodes(self) -> list[Node]:
        nodes = self._nodes
        if nodes is None:
            # The loader returns this result's nodes if another thread set them meanwhile;
            # two threads may both load, and they get equal lists.
            nodes = self._load(self) if self._load is not None else []
            if self._nodes is None:
                self._nodes = nodes
            return self._nodes
        return nodes

    @nodes.setter
    def nodes(self, value: list[Node]) -> None:
        self._nodes = list(value)
        self._load = None

    @property
    def materialized(self) -> bool:
        return self._nodes is not None

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle / deepcopy as a plain result, nodes built (the loader belongs to the store)
        return (VectorStoreQueryResult, (self.nodes, self.similarities, self.ids, self.plan))


class EmbeddedVectorStore:
    """A persistent vector store in a directory. Open with :meth:`open`."""

    path: Path
    read_only: bool
    ann_threshold: int
    ef_search: int
    metric: Metric
    dim: int
    _hnsw_params: tuple[int, int, str]
    _background: bool
    _mutex: threading.RLock
    _ann_lock: threading.Lock
    _closed: bool
    _lock: WriterLock | None
    _records: Records
    _indexer: threading.Thread | None
    _stop_indexer: threading.Event
    _indexer_error: Exception | None = None
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
    _ann_saved_n: int = 0
    _sqnorms: np.ndarray | None
    _slot_ids: SlotIds | None
    _pending: list[weakref.ref[LazyNodesResult]]  # results whose nodes are not built yet
    _sweep_at: int = PENDING_SWEEP

    def __init__(self) -> None:  # use open()
        raise TypeError("use EmbeddedVectorStore.open(path)")

    # ------------------------------------------------------------------ opening / closing

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        dim: int | None = None,
        metric: str | Metric | None = None,
        read_only: bool = False,
        ann_threshold: int | None = None,
        hnsw_m: int | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
        ann_storage: str | None = None,
        background_indexing: bool = True,
    ) -> EmbeddedVectorStore:
        """Open the store at ``path``, creating it unless ``read_only``.

        ``dim`` and ``metric`` are fixed when the store is created (dim may also be taken
        from the first embedding added); reopening with different values is an error.
        An HNSW index is built in the background once ``ann_threshold`` nodes are live.
        """
        self = object.__new__(cls)
        self.path = Path(path)
        self.read_only = read_only
        given = {
            "ann_threshold": ann_threshold,
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "ann_storage": ann_storage,
        }
        self._background = background_indexing and not read_only
        self._mutex = threading.RLock()
        self._ann_lock = threading.Lock()
        self._pending = []
        self._closed = False
        self._lock = None
        if read_only:
            if not (self.path / "records.sqlite").exists():
                raise InvalidInputError(f"{self.path}: no kvgraph store here (records.sqlite missing)")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = WriterLock(self.path / "LOCK")
            self._lock.acquire()
        try:
            with self._sqlite_errors():
                self._records = Records(self.path / "records.sqlite", read_only)
                self._init_meta(dim, metric)
                self._init_index_settings(given)
                self._load_state()
            if not read_only:
                self._remove_orphans()
        except BaseException:
            if self._lock:
                self._lock.release()
            raise
        self._indexer = None
        self._stop_indexer = threading.Event()
        self._kick_indexer()
        return self

    def _init_meta(self, dim: int | None, metric: str | Metric | None) -> None:
        meta = self._records.meta()
        if not meta:
            if self.read_only:
                raise InvalidInputError(f"{self.path}: store was never initialised")
            m = Metric(metric or Metric.COSINE)
            if dim is not None and (not isinstance(dim, int) or dim <= 0):
                raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
            self._records.begin()
            self._records.set_meta(
                {
                    "format": FORMAT_VERSION,
                    "metric": m.value,
                    "dim": dim or 0,
                    "n_slots": 0,
                    "vectors_file": "vectors-0.f32",
                    "generation": 0,
                }
            )
            self._records.commit()
            meta = self._records.meta()
        if meta.get("format") != FORMAT_VERSION:
            raise CorruptionError(self.path / "records.sqlite", f"unsupported store format {meta.get('format')!r}")
        self.metric = Metric(meta["metric"])
        if metric is not None and Metric(metric) != self.metric:
            raise InvalidInputError(
                f"{self.path}: store uses metric {self.metric.value!r}, not {Metric(metric).value!r}"
            )
        self.dim = int(meta["dim"])
        if dim is not None and self.dim and dim != self.dim:
            raise DimensionMismatchError(self.dim, dim, f"opening {self.path}")

    def _init_index_settings(self, given: dict[str, Any]) -> None:
        """Index settings persist with the store; values passed to open() replace them."""
        meta = self._records.meta()
        settings: dict[str, Any] = {}
        for key, default in INDEX_DEFAULTS.items():
            value = given[key] if given[key] is not None else meta.get(key, default)
            settings[key] = type(default)(value)
        changed = {k: v for k, v in settings.items() if meta.get(k) != str(v)}
        if changed and not self.read_only:
            self._records.begin()
            self._records.set_meta(changed)
            self._records.commit()
        self.ann_threshold = settings["ann_threshold"]
        self.ef_search = settings["ef_search"]
        self._hnsw_params = (settings["hnsw_m"], settings["ef_construction"], settings["ann_storage"])

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

    def _remove_orphans(self) -> None:
        # Cut rows a crashed writer appended without committing; drop vector files of old epochs.
        if self.dim:
            self._vf.truncate(self._n)
        for p in self.path.glob("vectors-*.f32"):
            if p.name != self._epoch:
                p.unlink()
        for p in self.path.glob(".*.tmp-*"):
            p.unlink()
        cache = self.path / "cache"
        if cache.exists():
            for p in cache.glob(".*.tmp-*"):
                p.unlink()

    def close(self) -> None:
        """Persist derived caches, stop background work and release the writer lock."""
        with self._mutex:
            if self._closed:
                return
            self._stop_background()
            try:
                self._settle_results()
                if not self.read_only:
                    self._save_caches()
            finally:
                self._closed = True
                self._vf.close()
                self._records.close()
                if self._lock:
                    self._lock.release()

    def __enter__(self) -> EmbeddedVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.path}: store is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: store was opened read-only")

    # ------------------------------------------------------------------ writing

    def add(self, nodes: Sequence[Node], replace_docs: Sequence[str] = ()) -> list[str]:
        """Insert or replace nodes (same id replaces); all or nothing. Returns the ids.

        ``replace_docs``: document ids whose existing nodes are deleted in the same commit,
        so re-ingesting a changed document swaps old nodes for new ones atomically.
        """
        if isinstance(nodes, Node):
            nodes = [nodes]
        if not isinstance(nodes, Sequence) or not all(isinstance(n, Node) for n in nodes):
            raise InvalidInputError("add() takes a list of Node objects")
        embs = []
        for n in nodes:
            validate_id(n.id)
            if n.embedding is None:
                raise InvalidInputError(f"node {n.id!r} has no embedding; embed it before adding")
            embs.append(n.embedding)
        return self.add_arrays(
            [n.id for n in nodes],
            self._as_matrix(embs, [n.id for n in nodes]) if nodes else np.zeros((0, self.dim or 1), np.float32),
            metadatas=[n.metadata for n in nodes],
            texts=[n.text for n in nodes],
            ref_doc_ids=[n.ref_doc_id for n in nodes],
            relationships=[n.relationships for n in nodes],
            replace_docs=replace_docs,
        )

    def _as_matrix(self, embs: list[Any], ids: list[str]) -> np.ndarray:
        try:
            return np.asarray(embs, dtype=np.float32)
        except (ValueError, TypeError):
            lens = {len(e) if hasattr(e, "__len__") else -1 for e in embs}
            for e, i in zip(embs, ids):
                if not hasattr(e, "__len__") or len(e) != max(lens):
                    raise InvalidInputError(f"node {i!r}: embedding must be a flat list of numbers") from None
            raise InvalidInputError("embeddings must be flat lists of numbers") from None

    def add_arrays(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        texts: Sequence[str] | None = None,
        ref_doc_ids: Sequence[str | None] | None = None,
        relationships: Sequence[dict[str, Any]] | None = None,
        replace_docs: Sequence[str] = (),
    ) -> list[str]:
        """Bulk form of :meth:`add`: parallel sequences instead of Node objects."""
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            ids = list(ids)
            m = len(ids)
            if isinstance(replace_docs, str):
                replace_docs = [replace_docs]
            for d in replace_docs:
                validate_id(d, "replace_docs entry")
            rows = self._validate_batch(ids, embeddings, metadatas, texts, ref_doc_ids, relationships)
            if m == 0:
                for d in replace_docs:
                    self._delete_slots(lambda d=d: self._records.slots_of_docs([d]))
                return []
            self._settle_results()
            vecs = np.asarray(embeddings, dtype=np.float32).reshape(m, -1)
            norms = np.linalg.norm(vecs, axis=1)
            if self.metric is Metric.COSINE:
                zero = np.flatnonzero(norms == 0)
                if len(zero):
                    raise InvalidInputError(f"node {ids[zero[0]]!r}: zero embedding cannot be used with cosine metric")
                vecs = vecs / norms[:, None]
            new_dim = not self.dim
            if new_dim:
                self.dim = vecs.shape[1]
                self._vf = VectorFile(self.path / self._epoch, self.dim)
            start = self._n
            db_rows: list[NodeRow] = [(start + i, ids[i], *rows[i], float(norms[i])) for i in range(m)]
            try:
                segments = self._vf.append(start, vecs)
                db = self._records
                db.begin()
                try:
                    old = set(db.slots_of(ids).values())
                    if replace_docs:
                        old.update(db.slots_of_docs(list(replace_docs)))
                    if old:
                        db.kill_slots(sorted(old))
                    db.insert_nodes(db_rows)
                    db.add_segments(segments)
                    db.set_meta(
                        {"n_slots": start + m, "generation": self._gen + 1, **({"dim": self.dim} if new_dim else {})}
                    )
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise
            except BaseException:
                self._vf.truncate(start)
                if new_dim:
                    self.dim = 0
                raise
            # committed: bring the in-memory view up to date
            self._gen += 1
            self._n = start + m
            self._segments.extend(segments)
            self._verified = self._n if self._verified == start else self._verified
            self._live.extend(np.ones(m, dtype=bool))
            self._n_live += m
            if old:
                self._mark_dead(sorted(old))
            if self._columns is not None:
                self._columns.append([json.loads(r[1]) for r in rows])
            if self._slot_ids is not None:
                self._slot_ids.append(ids)
            if self._bm25 is not None:
                self._bm25.append([r[0] for r in rows])
            self._sqnorms = None
            self._kick_indexer()
            return ids

    def _validate_batch(
        self,
        ids: list[str],
        embeddings: np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None,
        texts: Sequence[str] | None,
        ref_doc_ids: Sequence[str | None] | None,
        relationships: Sequence[dict[str, Any]] | None,
    ) -> list[tuple[str, str, str | None, str]]:
        """Check everything before anything is written; returns (text, metadata, ref, rels) rows."""
        m = len(ids)
        for name, seq in (
            ("metadatas", metadatas),
            ("texts", texts),
            ("ref_doc_ids", ref_doc_ids),
            ("relationships", relationships),
        ):
            if seq is not None and len(seq) != m:
                raise InvalidInputError(f"{name} has {len(seq)} entries for {m} ids")
        seen: set[str] = set()
        for i in ids:
            validate_id(i)
            if i in seen:
                raise InvalidInputError(f"node id {i!r} appears twice in one add(); ids must be unique per batch")
            seen.add(i)
        if m == 0:
            return []
        arr = np.asarray(embeddings)
        if arr.ndim != 2 or arr.shape[0] != m:
            raise InvalidInputError(f"embeddings must have shape ({m}, dim), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise InvalidInputError(f"embeddings must be real numbers, got dtype {arr.dtype}")
        if self.dim and arr.shape[1] != self.dim:
            raise DimensionMismatchError(self.dim, arr.shape[1], f"node {ids[0]!r}")
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise InvalidInputError(f"node {ids[bad]!r}: embedding contains NaN or infinity")
        out = []
        for j, node_id in enumerate(ids):
            text = texts[j] if texts is not None else ""
            if not isinstance(text, str):
                raise InvalidInputError(f"node {node_id!r}: text must be a string, got {type(text).__name__}")
            md = validate_metadata(metadatas[j] if metadatas is not None else {}, node_id)
            ref = ref_doc_ids[j] if ref_doc_ids is not None else None
            if ref is not None and not isinstance(ref, str):
                raise InvalidInputError(f"node {node_id!r}: ref_doc_id must be a string or None, got {ref!r}")
            rel = relationships[j] if relationships is not None else {}
            try:
                md_json = metadata_to_json(md)
                rel_json = json.dumps({str(k.value if hasattr(k, "value") else k): v for k, v in (rel or {}).items()})
            except (TypeError, ValueError) as e:
                raise InvalidInputError(
                    f"node {node_id!r}: metadata or relationships not JSON-serialisable: {e}"
                ) from e
            out.append((text, md_json, ref, rel_json))
        return out

    def _mark_dead(self, slots: list[int]) -> None:
        live = self._live.view
        idx = np.asarray(slots, dtype=np.int64)
        self._n_live -= int(live[idx].sum())
        live[idx] = False

    def delete(self, ids: Sequence[str]) -> int:
        """Delete nodes by id; unknown ids are ignored. Returns how many were deleted."""
        if isinstance(ids, str):
            ids = [ids]
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            for i in ids:
                validate_id(i)
            return self._delete_slots(lambda: list(self._records.slots_of(list(ids)).values()))

    def delete_ref_doc(self, ref_doc_id: str) -> int:
        """Delete every node that came from document ``ref_doc_id``. Returns how many."""
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            validate_id(ref_doc_id, "ref_doc_id")
            return self._delete_slots(lambda: self._records.slots_of_docs([ref_doc_id]))

    def _delete_slots(self, find: Any) -> int:
        self._settle_results()
        db = self._records
        db.begin()
        try:
            slots = find()
            if not slots:
                db.rollback()
                return 0
            db.kill_slots(slots)
            db.set_meta({"generation": self._gen + 1})
            db.commit()
        except BaseException:
            db.rollback()
            raise
        self._gen += 1
        self._mark_dead(slots)
        return len(slots)

    # ------------------------------------------------------------------ reading

    def _sqlite_errors(self) -> _SqliteErrors:
        return _SqliteErrors(self.path)

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

    def count(self) -> int:
        return self._read(lambda: self._n_live)

    def get(self, ids: Sequence[str]) -> list[Node | None]:
        """Nodes for the ids, in order, with embeddings; None where an id is unknown."""
        if isinstance(ids, str):
            ids = [ids]
        ids = [validate_id(i) for i in ids]
        return self._read(lambda: self._get(ids))

    def ids(self, filters: Any = None, doc_ids: Sequence[str] | None = None) -> list[str]:
        """Ids of every live node matching ``filters`` (and in ``doc_ids``), in insertion order."""

        def read() -> list[str]:
            mask = self._allowed(VectorStoreQuery(filters=filters, doc_ids=doc_ids))
            if mask is None:
                return self._records.ids_by_slots(None)
            return self._records.ids_by_slots(np.flatnonzero(mask).tolist())

        return self._read(read)

    def get_ref_doc(self, ref_doc_id: str, with_embedding: bool = False) -> list[Node]:
        """Every node of a document, in insertion order."""
        validate_id(ref_doc_id, "ref_doc_id")

        def read() -> list[Node]:
            slots = sorted(self._records.slots_of_docs([ref_doc_id]))
            rows = self._records.rows_by_slots(slots)
            return [self._row_to_node(rows[s], with_embedding=with_embedding) for s in slots if s in rows]

        return self._read(read)

    def _get(self, ids: list[str]) -> list[Node | None]:
        slot_of = self._records.slots_of(ids)
        rows = self._records.rows_by_slots(list(slot_of.values()))
        nodes = {r[1]: self._row_to_node(r, with_embedding=True) for r in rows.values()}
        return [nodes.get(i) for i in ids]

    def _row_to_node(self, row: NodeRow, with_embedding: bool = False) -> Node:
        slot, node_id, text, md, ref, rels, norm = row
        emb = None
        if with_embedding:
            vec = np.array(self._matrix()[slot], dtype=np.float32)
            emb = vec * np.float32(norm) if self.metric is Metric.COSINE else vec
        return Node(
            id=node_id,
            text=text,
            metadata=_loads(md),
            embedding=emb,
            ref_doc_id=ref,
            relationships=_loads(rels),
        )

    def _matrix(self) -> np.ndarray:
        """The committed vectors, checksums verified before first use."""
        if self._verified < self._n:
            self._vf.verify([s for s in self._segments if s[0] + s[1] > self._verified])
            self._verified = self._n
        return self._vf.matrix(self._n)

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

    # ------------------------------------------------------------------ derived structures

    def _rows_between(self, a: int, b: int) -> tuple[list[str], list[dict[str, Any]]]:
        """Texts and metadata of slots a..b-1 (empty for dead slots)."""
        texts = [""] * (b - a)
        metas: list[dict[str, Any]] = [{} for _ in range(b - a)]
        for slot, text, md in self._records.rows_from(a):
            if slot >= b:
                break
            texts[slot - a] = text
            metas[slot - a] = json.loads(md)
        return texts, metas

    def _ids_between(self, a: int, b: int) -> list[str]:
        """Node ids of slots a..b-1 ("" for dead slots)."""
        out = [""] * (b - a)
        for slot, node_id in self._records.ids_from(a):
            if slot >= b:
                break
            out[slot - a] = node_id
        return out

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

    # ------------------------------------------------------------------ the ANN index

    def _ann_wanted(self) -> bool:
        return self._n_live >= self.ann_threshold and self.dim > 0

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

    # ------------------------------------------------------------------ querying

    def _query_vector(self, q: Any, where: str = "query_embedding") -> np.ndarray:
        if q is None:
            raise InvalidInputError(f"{where} is required for this query mode")
        if q.__class__ is np.ndarray and q.dtype == np.float32:
            arr = q  # already what search takes: no conversion
        else:
            try:
                arr = np.asarray(q, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{where} must be a list of numbers") from None
        if arr.ndim != 1:
            raise InvalidInputError(f"{where} must be one flat vector, got shape {arr.shape}")
        if self.dim and arr.shape[0] != self.dim:
            raise DimensionMismatchError(self.dim, arr.shape[0], where)
        sq = float(arr @ arr)  # finite unless an entry is NaN/inf (or the square overflows)
        if not math.isfinite(sq):
            if not np.isfinite(arr).all():
                raise InvalidInputError(f"{where} contains NaN or infinity")
            sq = float(np.square(arr, dtype=np.float64).sum())
        if self.metric is Metric.COSINE:
            if sq == 0:
                raise InvalidInputError(f"{where} is the zero vector; cosine similarity is undefined")
            arr = arr * np.float32(1.0 / math.sqrt(sq))
        return arr

    def _query_matrix(self, qs: np.ndarray) -> np.ndarray:
        """_query_vector for every row at once; errors name the first bad row."""
        if not len(qs):
            return qs
        if self.dim and qs.shape[1] != self.dim:
            raise DimensionMismatchError(self.dim, qs.shape[1], "query_embedding[0]")
        sq = np.einsum("ij,ij->i", qs, qs, dtype=np.float64)
        bad = ~np.isfinite(sq)
        if bad.any():  # NaN/inf in a row, or a square sum beyond float64 (checked row by row)
            for i in np.flatnonzero(bad):
                self._query_vector(qs[i], f"query_embedding[{i}]")
        if self.metric is Metric.COSINE:
            zero = np.flatnonzero(sq == 0)
            if len(zero):
                raise InvalidInputError(
                    f"query_embedding[{zero[0]}] is the zero vector; cosine similarity is undefined"
                )
            return np.asarray((qs / np.sqrt(sq)[:, None]).astype(np.float32))
        return qs

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

    def query(self, query: VectorStoreQuery) -> VectorStoreQueryResult:
        """Top-k search in the mode the query asks for; see VectorStoreQuery."""
        k = query.similarity_top_k
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {k!r}")
        mode = query.mode
        if mode.__class__ is not QueryMode:
            try:
                mode = QueryMode(mode)
            except ValueError:
                raise InvalidInputError(
                    f"unknown query mode {query.mode!r}; use dense, sparse, hybrid or mmr"
                ) from None
        return self._read(lambda: self._query(query, k, mode))

    def _query(self, query: VectorStoreQuery, k: int, mode: QueryMode) -> VectorStoreQueryResult:
        if mode is QueryMode.DENSE and query.filters is None and query.node_ids is None and query.doc_ids is None:
            qv = self._query_vector(query.query_embedding)  # the common case, straight through
            slots, scores, plan = self._dense(qv[None, :], k, None, query)
            return self._result(slots[0], scores[0], plan)
        allowed = self._allowed(query)
        if mode is QueryMode.DENSE:
            qv = self._query_vector(query.query_embedding)
            slots, scores, plan = self._dense(qv[None, :], k, allowed, query)
            return self._result(slots[0], scores[0], plan)
        if mode is QueryMode.SPARSE:
            slots, scores = self._sparse(query.query_str, k, allowed)
            return self._result(slots, scores, "bm25")
        if mode is QueryMode.HYBRID:
            return self._hybrid(query, k, allowed)
        return self._mmr(query, k, allowed)

    def query_batch(
        self,
        embeddings: np.ndarray,
        similarity_top_k: int = 4,
        filters: FilterSpec = None,
        *,
        ef_search: int | None = None,
        strategy: str = "auto",
        exact: bool = False,
        node_ids: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[VectorStoreQueryResult]:
        """Dense top-k for many query embeddings in one call (one matrix product / one ANN call).

        ``ef_search``, ``strategy``, ``exact``, ``node_ids`` and ``doc_ids`` mean what they
        mean in :class:`VectorStoreQuery`, and apply to every query of the batch.
        """
        q = VectorStoreQuery(
            similarity_top_k=similarity_top_k,
            filters=filters,
            ef_search=ef_search,
            strategy=strategy,
            exact=exact,
            node_ids=node_ids,
            doc_ids=doc_ids,
        )
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        return self._read(lambda: self._query_batch(embeddings, similarity_top_k, q))

    def _query_batch(
        self, embeddings: np.ndarray, similarity_top_k: int, q: VectorStoreQuery
    ) -> list[VectorStoreQueryResult]:
        qs = np.asarray(embeddings, dtype=np.float32)
        if qs.ndim != 2:
            raise InvalidInputError(f"embeddings must be a (queries, dim) matrix, got shape {qs.shape}")
        qs = self._query_matrix(qs)
        allowed = self._allowed(q)
        slots, scores, plan = self._dense(qs, similarity_top_k, allowed, q)
        rows = None
        if self.read_only:  # results read their rows now (see _result): one SQL read for all of them
            keep = (slots >= 0) & np.isfinite(scores)
            rows = self._records.rows_by_slots(np.unique(slots[keep]).tolist())
        return [self._result(s, sc, plan, rows) for s, sc in zip(slots, scores)]

    # ---- dense ----

    def _similarity(self, raw: np.ndarray, rows: np.ndarray | None, q: np.ndarray) -> np.ndarray:
        """Turn inner products into the metric's similarity (higher is better)."""
        if self.metric is not Metric.L2:
            return raw
        if self._sqnorms is None or len(self._sqnorms) < self._n:
            self._sqnorms = dense.squared_norms(self._matrix())
        sq = self._sqnorms if rows is None else self._sqnorms[rows]
        qn = np.einsum("ij,ij->i", q, q)[:, None]
        dist2 = np.maximum(sq[None, :] - 2 * raw + qn, 0.0)
        return np.asarray((1.0 / (1.0 + np.sqrt(dist2))).astype(np.float32))

    def _exact(self, qs: np.ndarray, k: int, allowed: np.ndarray | None, lo: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over slots >= lo that are allowed (or live). Returns (slots, sims), -1 padded."""
        mat = self._matrix()
        if self.metric is not Metric.L2:
            if allowed is None and lo == 0 and self._n_live == self._n:
                return dense.knn_inner_product(mat, qs, k)  # the common case: every row, no selection pass
            if allowed is None:
                live = self._live_rows()
                subset = live[np.searchsorted(live, lo) :] if lo else live
            else:
                subset = np.flatnonzero(allowed[lo:]) + lo
            return dense.knn_inner_product(mat, qs, k, subset)
        mask = self._live.view if allowed is None else allowed
        n_dead_region = self._n - lo - int(mask[lo:].sum())
        if allowed is None and n_dead_region == 0 and lo == 0:
            rows = None
            sims = self._similarity(dense.score_rows(mat, None, qs), None, qs)
        elif (self._n - lo) and int(mask[lo:].sum()) > 0.5 * (self._n - lo):
            rows = np.arange(lo, self._n)
            sims = self._similarity(dense.score_rows(mat[lo:], None, qs), rows, qs)
            sims[:, ~mask[lo:]] = -np.inf
        else:
            rows = np.flatnonzero(mask[lo:]) + lo
            sims = self._similarity(dense.score_rows(mat, rows, qs), rows, qs)
        top = dense.top_k_rows(sims, k)
        out_scores = np.take_along_axis(sims, top, axis=1) if top.size else np.zeros_like(top, dtype=np.float32)
        out_slots = top if rows is None else rows[top]
        out_slots = np.where(np.isfinite(out_scores), out_slots, -1)
        return out_slots, out_scores

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

    def _dense(
        self, qs: np.ndarray, k: int, allowed: np.ndarray | None, query: VectorStoreQuery
    ) -> tuple[np.ndarray, np.ndarray, str]:
        if not self._n_live or not self.dim:
            return np.full((len(qs), 0), -1), np.zeros((len(qs), 0), np.float32), "empty"
        strategy = query.strategy
        planner.check_strategy(strategy)
        wants_ann = not query.exact and strategy != "exact" and (strategy == "ann" or self._ann_wanted())
        plan = planner.EXACT
        n_allowed = None if allowed is None else int(np.count_nonzero(allowed))
        if wants_ann:
            mat = self._matrix()
            # Never wait for the background indexer while it builds: search exactly meanwhile.
            # Loading a saved index is quick, so the first query waits for that instead.
            if self._ann_lock.acquire(blocking=strategy == "ann" or not self._ann_loaded):
                try:
                    self._load_ann()
                    ann = self._ann
                    indexed = ann.n if ann is not None else 0
                    plan = planner.choose_plan(
                        k=k,
                        n_slots=self._n,
                        n_live=self._n_live,
                        n_allowed=n_allowed,
                        indexed=indexed,
                        ef_search=self.ef_search,
                        ef_override=query.ef_search,
                        strategy=strategy,
                    )
                    if plan.kind == "ann":
                        assert ann is not None
                        if ann.attached:
                            ann.attach(mat)  # no-op unless the file was mapped anew (rows were added)
                        bits = self._live_bitmap(indexed) if allowed is None else pack_mask(allowed[:indexed])
                        # SQ8 distances are approximate: fetch more candidates and re-rank them exactly.
                        k_cand = k if ann.exact_scores else max(k, plan.ef)
                        raw, cand = ann.search(qs, k_cand, plan.ef, bitmap=bits)
                        exact_scores = ann.exact_scores
                finally:
                    self._ann_lock.release()
        if plan.kind == "exact":
            slots, sims = self._exact(qs, k, allowed)
            return slots, sims, "exact" if allowed is None else "exact-subset"
        plan_name = f"{'ann' if allowed is None else 'ann-filtered'}(ef={plan.ef})"
        want = min(k, self._n_live if n_allowed is None else n_allowed)
        if exact_scores and indexed == self._n and self.metric is not Metric.L2:
            # faiss's inner products are the similarities, already sorted: nothing to re-rank
            out_slots, out_sims = cand, raw
        else:
            out_slots, out_sims = self._rerank(qs, k, allowed, cand, indexed)
        # hits come first in each row, -1 after; a row short of `want` hits means the graph walk
        # ran out of allowed nodes before finding them: answer those queries exactly
        last = out_slots[:, want - 1]
        if want and (last[0] < 0 if len(last) == 1 else (last < 0).any()):
            short = np.flatnonzero(last < 0)
            ex_slots, ex_sims = self._exact(qs[short], k, allowed)
            out_slots = out_slots.copy()
            out_sims = out_sims.copy()
            out_slots[short] = -1
            out_sims[short] = -np.inf
            out_slots[short, : ex_slots.shape[1]] = ex_slots
            out_sims[short, : ex_sims.shape[1]] = ex_sims
            plan_name += "+exact"
        return out_slots, out_sims, plan_name

    def _rerank(
        self, qs: np.ndarray, k: int, allowed: np.ndarray | None, cand: np.ndarray, indexed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the ANN candidates, merged with an exact search of the un-indexed tail."""
        mat = self._matrix()
        out_slots = np.full((len(qs), k), -1, dtype=np.int64)
        out_sims = np.full((len(qs), k), -np.inf, dtype=np.float32)
        tail = self._exact(qs, k, allowed, lo=indexed) if indexed < self._n else None
        for i in range(len(qs)):
            c = cand[i][cand[i] >= 0]
            sims = self._similarity(dense.score_rows(mat, c, qs[i : i + 1]), c, qs[i : i + 1])[0]
            if tail is not None:
                t = tail[0][i] >= 0
                c = np.concatenate([c, tail[0][i][t]])
                sims = np.concatenate([sims, tail[1][i][t]])
            top = dense.top_k(sims, k)
            out_slots[i, : len(top)] = c[top]
            out_sims[i, : len(top)] = sims[top]
        return out_slots, out_sims

    # ---- sparse / hybrid / mmr ----

    def _sparse(self, text: str | None, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("query_str (a non-empty string) is required for sparse and hybrid search")
        slots, scores = self._get_bm25().scores(text, self._live.view, allowed)
        top = dense.top_k(scores, k)
        return slots[top], scores[top]

    def _hybrid(self, q: VectorStoreQuery, k: int, allowed: np.ndarray | None) -> VectorStoreQueryResult:
        pool = max(k * 4, q.sparse_top_k or 0, 20)
        qv = self._query_vector(q.query_embedding)
        d_slots, d_sims, plan = self._dense(qv[None, :], pool, allowed, q)
        keep = d_slots[0] >= 0
        d_slots, d_sims = d_slots[0][keep], d_sims[0][keep]
        s_slots, s_scores = self._sparse(q.query_str, q.sparse_top_k or pool, allowed)
        if q.alpha is None:
            ids, scores = fusion.rrf([d_slots, s_slots])
            how = "rrf"
        else:
            if not 0.0 <= q.alpha <= 1.0:
                raise InvalidInputError(f"alpha must be between 0 and 1, got {q.alpha!r}")
            ids, scores = fusion.alpha_fusion(d_slots, d_sims, s_slots, s_scores, q.alpha)
            how = f"alpha={q.alpha}"
        return self._result(ids[:k], scores[:k], f"hybrid({plan}+bm25, {how})")

    def _mmr(self, q: VectorStoreQuery, k: int, allowed: np.ndarray | None) -> VectorStoreQueryResult:
        if not 0.0 <= q.mmr_threshold <= 1.0:
            raise InvalidInputError(f"mmr_threshold must be between 0 and 1, got {q.mmr_threshold!r}")
        qv = self._query_vector(q.query_embedding)
        fetch = max(q.mmr_fetch_k or 0, 4 * k, 20)
        slots, sims, plan = self._dense(qv[None, :], fetch, allowed, q)
        keep = slots[0] >= 0
        slots, sims = slots[0][keep], sims[0][keep]
        vecs = np.asarray(self._matrix()[slots], dtype=np.float32)
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        qn = qv / max(float(np.linalg.norm(qv)), 1e-12)
        picked = mmr(qn, unit, k, q.mmr_threshold)
        return self._result(slots[picked], sims[picked], f"mmr({plan}, pool={len(slots)})")

    def _result(
        self, slots: np.ndarray, scores: np.ndarray, plan: str, rows: dict[int, NodeRow] | None = None
    ) -> VectorStoreQueryResult:
        hits = slots.tolist()
        sims = scores.tolist()
        # searches put hits first and fill with slot -1 / non-finite scores (a non-finite entry
        # makes the sum non-finite; finite similarities cannot overflow it)
        if hits and (hits[-1] < 0 or not math.isfinite(sum(sims))):
            pairs = [(s, x) for s, x in zip(hits, sims) if s >= 0 and math.isfinite(x)]
            hits, sims = [s for s, _ in pairs], [x for _, x in pairs]
        if self.read_only:
            # the writer is another process: read the rows now, in this call's snapshot
            if rows is None:
                rows = self._records.rows_by_slots(hits)
            hit_rows = [rows[s] for s in hits]
            decode = self._row_to_node
            return LazyNodesResult(
                similarities=sims,
                ids=[r[1] for r in hit_rows],
                plan=plan,
                load=lambda _res: [decode(r) for r in hit_rows],
            )
        res = LazyNodesResult(
            similarities=sims,
            ids=self._get_slot_ids().get(hits),
            plan=plan,
            load=lambda res: self._load_nodes(res, hits),
        )
        pending = self._pending
        pending.append(weakref.ref(res))
        if len(pending) >= self._sweep_at:  # drop results that were freed or materialised
            self._pending = [r for r in pending if (x := r()) is not None and not x.materialized]
            self._sweep_at = max(PENDING_SWEEP, 2 * len(self._pending))
        return res

    def _load_nodes(self, res: LazyNodesResult, slots: list[int]) -> list[Node]:
        """The nodes in these slots, for a pending result (see _settle_results)."""
        with self._mutex, self._sqlite_errors():
            if res.materialized:  # settled by a write that ran while this thread waited
                return res.nodes
            self._check_open()
            rows = self._records.rows_by_slots(slots)
            return [self._row_to_node(rows[s]) for s in slots]

    def _settle_results(self) -> None:
        """Build the nodes of every result still waiting for them, before anything changes.

        A slot's record only changes when it is deleted (or renumbered by vacuum), so a
        result that loads its nodes later sees what its query saw as long as this runs
        before each commit of this process (callers hold the mutex).
        """
        pending, self._pending = self._pending, []
        for ref in pending:
            res = ref()
            if res is not None:
                res.nodes  # noqa: B018 - materialises

    # ------------------------------------------------------------------ maintenance

    def vacuum(self) -> dict[str, int]:
        """Rewrite the vector file without dead rows and drop everything derived from them.

        Deleted text and metadata are already gone from the records (secure delete); this
        purges their vectors, BM25 postings, metadata columns and HNSW entries.
        """
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            self._stop_background()
            self._settle_results()
            dead = self._n - self._n_live
            live_slots = np.flatnonzero(self._live.view)
            new_epoch = f"vectors-{self._gen + 1}.f32"
            new_vf = VectorFile(self.path / new_epoch, self.dim or 1)
            mat = self._matrix()
            segments: list[tuple[int, int, int]] = []
            new_vf.truncate(0)
            for s in range(0, len(live_slots), 65_536):
                block = np.asarray(mat[live_slots[s : s + 65_536]])
                segments += new_vf.append(s, block)
            if not len(live_slots):
                new_vf.append(0, np.zeros((0, self.dim or 1), np.float32))
            db = self._records
            db.begin()
            try:
                db.db.executemany(
                    "UPDATE nodes SET slot = ? WHERE slot = ?",
                    ((i, int(old)) for i, old in enumerate(live_slots) if i != old),
                )
                db.db.execute("DELETE FROM dead")
                db.db.execute("DELETE FROM segments")
                db.add_segments(segments)
                db.set_meta({"n_slots": len(live_slots), "vectors_file": new_epoch, "generation": self._gen + 1})
                db.commit()
            except BaseException:
                db.rollback()
                (self.path / new_epoch).unlink(missing_ok=True)
                raise
            old_file = self._vf.path
            self._vf.close()
            old_file.unlink(missing_ok=True)
            for p in (self.path / "cache").glob("*.kvg") if (self.path / "cache").exists() else []:
                p.unlink()
            db.db.execute("VACUUM")
            self._load_state()
            self._ann_saved_n = 0
            self._kick_indexer()
            return {"removed_rows": dead, "rows": len(live_slots)}

    def verify(self) -> dict[str, Any]:
        """Check every checksum (vector file and caches); raise CorruptionError naming a damaged file."""
        return self._read(self._verify)

    def _verify(self) -> dict[str, Any]:
        self._vf.verify(self._segments)
        self._verified = self._n
        caches = []
        for p in sorted((self.path / "cache").glob("*.kvg")) if (self.path / "cache").exists() else []:
            read_arrays(p)
            caches.append(p.name)
        return {"vector_rows": self._n, "segments": len(self._segments), "caches": caches}

    def stats(self) -> dict[str, Any]:
        return self._read(self._stats)

    def get_meta(self, key: str) -> str | None:
        """A user-level setting stored with the store (e.g. which model made the vectors)."""
        with self._mutex, self._sqlite_errors():
            self._check_open()
            return self._records.meta().get(f"user:{key}")

    def set_meta(self, key: str, value: str) -> None:
        """Store a user-level setting in its own commit (kept apart from the store's own keys)."""
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            db = self._records
            db.begin()
            try:
                db.set_meta({f"user:{key}": value})
                db.commit()
            except BaseException:
                db.rollback()
                raise

    def _stats(self) -> dict[str, Any]:
        disk = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        with self._ann_lock:
            indexed = self._ann.n if self._ann is not None else 0
            storage = self._ann.storage if self._ann is not None else self._hnsw_params[2]
        return {
            "path": str(self.path),
            "count": self._n_live,
            "dead_rows": self._n - self._n_live,
            "dim": self.dim,
            "metric": self.metric.value,
            "generation": self._gen,
            "ann_threshold": self.ann_threshold,
            "ann_indexed_rows": indexed,
            "ann_storage": storage,
            "ann_active": self._ann_wanted() and indexed >= 0.5 * self._n,
            "disk_bytes": disk,
            "read_only": self.read_only,
            "indexer_error": repr(self._indexer_error) if self._indexer_error else None,
        }
