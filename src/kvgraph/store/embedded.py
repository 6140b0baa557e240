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
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from kvgraph.filters import FilterSpec, is_match_all, parse_filter
from kvgraph.schema import Node, metadata_to_json, validate_id, validate_metadata
from kvgraph.store import dense, fusion, planner
from kvgraph.store.ann import HnswIndex
from kvgraph.store.base import Metric, QueryMode, VectorStoreQuery, VectorStoreQueryResult
from kvgraph.store.bm25 import BM25Index
from kvgraph.store.columns import MetadataColumns
from kvgraph.store.fileio import fsync_dir, read_arrays, write_arrays
from kvgraph.store.growable import GrowableArray
from kvgraph.store.lock import WriterLock
from kvgraph.store.mmr import mmr
from kvgraph.store.records import FORMAT_VERSION, NodeRow, Records
from kvgraph.store.vectors import VectorFile

T = TypeVar("T")
INDEX_DEFAULTS: dict[str, Any] = {
    "ann_threshold": 50_000,
    "hnsw_m": 16,
    "ef_construction": 200,
    "ef_search": 128,
    "ann_storage": "sq8",
}
READ_RETRIES = 5  # a reader whose snapshot lost a race with vacuum starts the call again
INDEX_BATCH = 2_048  # rows the background indexer adds per hold of the index lock


def _loads(doc: str) -> Any:
    return {} if doc == "{}" else json.loads(doc)  # most nodes carry no relationships


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

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Report a damaged records database as CorruptionError naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            damaged = type(e) is sqlite3.DatabaseError or any(
                w in str(e) for w in ("malformed", "not a database", "disk I/O", "corrupt")
            )
            if damaged:
                raise CorruptionError(self.path / "records.sqlite", f"records database damaged: {e}") from e
            raise

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
        old_n, old_epoch, columns, bm25 = self._n, self._epoch, self._columns, self._bm25
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
        self._columns, self._bm25 = columns, bm25

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
        if self._bm25 is not None:
            arrays, meta = self._bm25.to_arrays()
            write_arrays(self._cache_path("bm25"), arrays, {"epoch": self._epoch, "n": self._bm25.n, "bm25": meta})
        with self._ann_lock:
            ann = self._ann
            if ann is not None and ann.n and ann.n > self._ann_saved_n:
                write_arrays(self._cache_path("hnsw"), {"index": ann.to_bytes()}, {"epoch": self._epoch, "n": ann.n})
                self._ann_saved_n = ann.n
        fsync_dir(self.path / "cache")

    def checkpoint(self) -> None:
        """Write the derived caches now, so that the next open starts fast."""
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            self._get_columns()
            self._get_bm25()
            self._save_caches()

    persist = checkpoint  # the classic vector-store interface name

    # ------------------------------------------------------------------ the ANN index

    def _ann_wanted(self) -> bool:
        return self._n_live >= self.ann_threshold and self.dim > 0

    def _load_ann(self) -> None:
        """Load the persisted index once (caller holds _ann_lock)."""
        if self._ann_loaded:
            return
        self._ann_loaded = True
        cached = self._load_cache("hnsw")
        if cached:
            self._ann = HnswIndex.from_bytes(cached[0]["index"])
            self._ann_saved_n = self._ann.n

    def _index_some(self, limit: int) -> int:
        """Add up to ``limit`` un-indexed rows to the HNSW index; returns rows added."""
        with self._ann_lock:
            self._load_ann()
            n = self._n
            if self._ann is None:
                m, efc, storage = self._hnsw_params
                self._ann = HnswIndex(self.dim, self.metric.value, m, efc, storage)
            ann = self._ann
            if not ann.is_trained:
                ann.train(np.asarray(self._matrix()[:n]))
            todo = min(limit, n - ann.n)
            if todo > 0:
                ann.add(np.asarray(self._matrix()[ann.n : ann.n + todo]))
            return max(todo, 0)

    def build_index(self) -> None:
        """Index every committed row now (blocking), whatever the collection size."""
        with self._mutex:
            self._check_open()
            while self._index_some(1 << 30):
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
                if not self._index_some(INDEX_BATCH):
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
        try:
            arr = np.asarray(q, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{where} must be a list of numbers") from None
        if arr.ndim != 1:
            raise InvalidInputError(f"{where} must be one flat vector, got shape {arr.shape}")
        if self.dim and arr.shape[0] != self.dim:
            raise DimensionMismatchError(self.dim, arr.shape[0], where)
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"{where} contains NaN or infinity")
        if self.metric is Metric.COSINE:
            norm = float(np.linalg.norm(arr))
            if norm == 0:
                raise InvalidInputError(f"{where} is the zero vector; cosine similarity is undefined")
            arr = arr / norm
        return arr

    def _allowed(self, q: VectorStoreQuery) -> np.ndarray | None:
        """Mask of slots a query may return, or None when every live slot may be returned."""
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
        try:
            mode = QueryMode(query.mode)
        except ValueError:
            raise InvalidInputError(f"unknown query mode {query.mode!r}; use dense, sparse, hybrid or mmr") from None
        return self._read(lambda: self._query(query, k, mode))

    def _query(self, query: VectorStoreQuery, k: int, mode: QueryMode) -> VectorStoreQueryResult:
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
        self, embeddings: np.ndarray, similarity_top_k: int = 4, filters: FilterSpec = None
    ) -> list[VectorStoreQueryResult]:
        """Dense top-k for many query embeddings in one call (one matrix product / one ANN call)."""
        q = VectorStoreQuery(similarity_top_k=similarity_top_k, filters=filters)
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        return self._read(lambda: self._query_batch(embeddings, similarity_top_k, q))

    def _query_batch(
        self, embeddings: np.ndarray, similarity_top_k: int, q: VectorStoreQuery
    ) -> list[VectorStoreQueryResult]:
        qs = np.asarray(embeddings, dtype=np.float32)
        if qs.ndim != 2:
            raise InvalidInputError(f"embeddings must be a (queries, dim) matrix, got shape {qs.shape}")
        qs = np.stack([self._query_vector(v, f"query_embedding[{i}]") for i, v in enumerate(qs)]) if len(qs) else qs
        allowed = self._allowed(q)
        slots, scores, plan = self._dense(qs, similarity_top_k, allowed, q)
        return [self._result(s, sc, plan) for s, sc in zip(slots, scores)]

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
        return (1.0 / (1.0 + np.sqrt(dist2))).astype(np.float32)

    def _exact(self, qs: np.ndarray, k: int, allowed: np.ndarray | None, lo: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over slots >= lo that are allowed (or live). Returns (slots, sims), -1 padded."""
        mat = self._matrix()
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

    def _dense(
        self, qs: np.ndarray, k: int, allowed: np.ndarray | None, query: VectorStoreQuery
    ) -> tuple[np.ndarray, np.ndarray, str]:
        if not self._n_live or not self.dim:
            return np.full((len(qs), 0), -1), np.zeros((len(qs), 0), np.float32), "empty"
        planner.check_strategy(query.strategy)
        wants_ann = not query.exact and (query.strategy == "ann" or self._ann_wanted())
        # Never wait for the background indexer: while it holds the index, search exactly.
        got = wants_ann and self._ann_lock.acquire(blocking=query.strategy == "ann")
        try:
            plan = planner.EXACT
            if got:
                self._load_ann()
                plan = planner.choose_plan(
                    k=k,
                    n_slots=self._n,
                    n_live=self._n_live,
                    n_allowed=None if allowed is None else int(allowed.sum()),
                    indexed=self._ann.n if self._ann is not None else 0,
                    ef_search=self.ef_search,
                    ef_override=query.ef_search,
                    strategy="exact" if query.exact else query.strategy,
                )
            if plan.kind == "ann":
                ann = self._ann
                assert ann is not None
                indexed = ann.n
                mask = self._live.view if allowed is None else allowed
                restrict = allowed is not None or self._n_live < self._n
                # SQ8 distances are approximate: fetch more candidates and re-rank them exactly.
                k_cand = max(k, plan.ef) if ann.storage == "sq8" else k
                _, cand = ann.search(qs, k_cand, plan.ef, mask[:indexed] if restrict else None)
        finally:
            if got:
                self._ann_lock.release()
        if plan.kind == "exact":
            slots, sims = self._exact(qs, k, allowed)
            return slots, sims, "exact" if allowed is None else "exact-subset"
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
        plan_name = "ann" if allowed is None else "ann-filtered"
        return out_slots, out_sims, f"{plan_name}(ef={plan.ef})"

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

    def _result(self, slots: np.ndarray, scores: np.ndarray, plan: str) -> VectorStoreQueryResult:
        keep = (slots >= 0) & np.isfinite(scores)
        slots, scores = slots[keep], scores[keep]
        rows = self._records.rows_by_slots([int(s) for s in slots])
        nodes = [self._row_to_node(rows[int(s)]) for s in slots]
        return VectorStoreQueryResult(
            nodes=nodes, similarities=[float(x) for x in scores], ids=[n.id for n in nodes], plan=plan
        )

    # ------------------------------------------------------------------ maintenance

    def vacuum(self) -> dict[str, int]:
        """Rewrite the vector file without dead rows and drop everything derived from them.

        Deleted text and metadata are already gone from the records (secure delete); this
        purges their vectors, BM25 postings, metadata columns and HNSW entries.
        """
        with self._mutex, self._sqlite_errors():
            self._check_writable()
            self._stop_background()
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
        return {
            "path": str(self.path),
            "count": self._n_live,
            "dead_rows": self._n - self._n_live,
            "dim": self.dim,
            "metric": self.metric.value,
            "generation": self._gen,
            "ann_threshold": self.ann_threshold,
            "ann_indexed_rows": indexed,
            "ann_active": self._ann_wanted() and indexed >= 0.5 * self._n,
            "disk_bytes": disk,
            "read_only": self.read_only,
            "indexer_error": repr(self._indexer_error) if self._indexer_error else None,
        }
