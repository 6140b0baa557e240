"""The embedded store's engine: opening and creating a store, closing it, and every write.

A write appends vectors and fsyncs them, then commits the records in one SQLite transaction
(the commit point); a crash at any point leaves the last commit intact, and a full disk makes
the write fail with DiskFullError, leaving it intact too. Maintenance (vacuum, stats, user
settings) lives here as well: it takes the same locks as a write.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from kvgraph.errors import CorruptionError, DimensionMismatchError, InvalidInputError, KvgraphError
from kvgraph.fileio import disk_full_errors, is_disk_full
from kvgraph.locking import WriterLock
from kvgraph.schema import Node, metadata_to_json, validate_id, validate_metadata
from kvgraph.store.base import Metric
from kvgraph.store.integrity import IntegrityStore
from kvgraph.store.records import FORMAT_VERSION, NewRow, Records
from kvgraph.store.vectors import VectorFile

log = logging.getLogger(__name__)

INDEX_DEFAULTS: dict[str, Any] = {
    "ann_threshold": 50_000,
    "hnsw_m": 16,
    "ef_construction": 200,
    "ef_search": 128,
    "ann_storage": "vectors",
}


class StoreEngine(IntegrityStore):
    """Opening, closing, writing and maintenance: everything that changes the store."""

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
    ) -> Self:
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
        records = self.path / "records.sqlite"
        if not records.exists() or not records.stat().st_size:
            lost = self._lost_records()
            if lost is not None:
                raise lost
            if read_only:
                raise InvalidInputError(f"{self.path}: no kvgraph store here (records.sqlite missing or empty)")
        if not read_only:
            with disk_full_errors(self.path / "LOCK"):  # the lock file records its holder
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
            lost = self._lost_records()
            if lost is not None:
                raise lost
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

    def _lost_records(self) -> CorruptionError | None:
        """The error for a store whose records are missing or empty while vectors remain, else None.

        A store commits its settings before it writes any vector, so vector data without records
        means the records database was deleted or emptied: every id, text and metadata is gone.
        """
        for p in sorted(self.path.glob("vectors-*.f32")):
            size = p.stat().st_size
            if size:
                return CorruptionError(
                    self.path / "records.sqlite",
                    f"missing or empty, but {p.name} holds {size:,} bytes of vectors: the records (ids, text, "
                    "metadata) were lost; run kvgraph repair (a knowledge base: ingests its files again) "
                    "or restore the store from a backup",
                )
        return None

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
                    self._save_caches_if_possible()
            finally:
                self._closed = True
                self._vf.close()
                self._records.close()
                if self._lock:
                    self._lock.release()

    def _save_caches_if_possible(self) -> None:
        """Caches are shortcuts: closing a store whose data is committed must not fail for lack of one."""
        try:
            self._save_caches()
        except (KvgraphError, OSError) as e:
            log.warning("%s: derived caches not saved (%s); the next open rebuilds them", self.path, e)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            db_rows: list[NewRow] = [(start + i, ids[i], *rows[i], float(norms[i])) for i in range(m)]
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
            # only rows that are copied must be intact: damaged rows of deleted nodes are purged
            view = self._live.view
            self._vf.verify([seg for seg in self._segments if view[seg[0] : seg[0] + seg[1]].any()])
            mat = self._vf.matrix(self._n)
            segments: list[tuple[int, int, int]] = []
            try:
                new_vf.truncate(0)
                for s in range(0, len(live_slots), 65_536):
                    block = np.asarray(mat[live_slots[s : s + 65_536]])
                    segments += new_vf.append(s, block)
                if not len(live_slots):
                    new_vf.append(0, np.zeros((0, self.dim or 1), np.float32))
            except BaseException:
                new_vf.close()
                (self.path / new_epoch).unlink(missing_ok=True)
                raise
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
            self._load_state()
            self._ann_saved_n = 0
            try:
                db.db.execute("VACUUM")  # gives the pages of purged text back to the file system
            except sqlite3.OperationalError as e:
                if not is_disk_full(e):
                    raise
                log.warning("%s: records not compacted for lack of disk space (VACUUM); run vacuum again", self.path)
            self._kick_indexer()
            return {"removed_rows": dead, "rows": len(live_slots)}

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
