"""The file registry: which files a knowledge base has ingested, and what came from each.

It makes ingestion incremental: a file whose size and modification time are unchanged is
not even read; one whose content hash is unchanged is not re-split or re-embedded; a
changed file's documents are swapped atomically in the store; a file that disappeared has
every document derived from it deleted by ``sync``. Documents added through the API
(``KnowledgeBase.add_documents``) are listed too, so that the registry knows every
document the store should hold.

The store commits first, then the registry. A crash in between leaves the registry
describing the old content, so the next run re-ingests that file, which is idempotent
because node ids are deterministic; chunks of a file the registry never learned about
(the file vanished before that run) are orphans, which ``sync`` deletes.

:func:`cross_check` compares the registry with the store: files whose chunks are missing
from the store (it was deleted, emptied or repaired) are ingested again by the next ingest
or sync; orphaned documents are deleted by ``sync``. A damaged registry file raises
CorruptionError naming it (``kvgraph repair`` rebuilds it from the store).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kvgraph.errors import CorruptionError
from kvgraph.fileio import disk_full_error, is_disk_full, is_sqlite_damage

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    doc_ids TEXT NOT NULL,      -- JSON list of the ref_doc_ids the file produced
    n_nodes INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS roots (
    path TEXT PRIMARY KEY,
    include TEXT NOT NULL,
    exclude TEXT NOT NULL
);
"""
# Added later: a registry without it was written by an older version (see Registry.upgraded).
DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,    -- a document added through the API, not from a file
    n_nodes INTEGER NOT NULL,
    added_at TEXT NOT NULL
);
"""
# A file record with this hash is ingested again by the next ingest or sync, whatever its size.
NOT_INGESTED = ""


@dataclass
class FileRecord:
    path: str
    sha256: str
    size: int
    mtime_ns: int
    doc_ids: list[str]
    n_nodes: int
    n_tokens: int
    ingested_at: str


class Registry:
    """``created``: no registry was there before this open (no file, or an empty one);
    ``upgraded``: it lacked the documents table (written by an older version)."""

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        self.upgraded = False
        self._lock = threading.RLock()
        with self._errors():
            if read_only:
                if self.created:
                    self.db = sqlite3.connect(":memory:", isolation_level=None)
                    self.db.executescript(SCHEMA + DOCUMENTS_SCHEMA)
                else:
                    self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
                    self.created = not self._has_table("files")  # a damaged file fails here
                return
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            had_files = self._has_table("files")
            self.created = self.created or not had_files  # an empty file (or a new one) held no registry
            self.upgraded = had_files and not self._has_table("documents")
            self.db.executescript(SCHEMA + DOCUMENTS_SCHEMA)

    def _has_table(self, name: str) -> bool:
        q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.db.execute(q, (name,)).fetchone() is not None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A damaged file as CorruptionError naming it, a full disk as DiskFullError.

        Also serialises the threads of a process on the one connection: Python's sqlite3 can
        crash when threads use one connection at the same time (tests/embed/test_cache_threads.py).
        """
        try:
            with self._lock:
                yield
        except sqlite3.DatabaseError as e:
            if is_disk_full(e):
                raise disk_full_error(self.path, e) from e
            if is_sqlite_damage(e):
                raise CorruptionError(
                    self.path, f"file registry damaged ({e}); run kvgraph repair to rebuild it from the store"
                ) from e
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction."""
        with self._errors(), self.db:
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def get(self, path: str) -> FileRecord | None:
        with self._errors():
            row = self.db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[FileRecord]:
        try:
            with self._errors():
                return [_record(r) for r in self.db.execute("SELECT * FROM files ORDER BY path")]
        except sqlite3.OperationalError:  # read-only view of a KB that never ingested
            return []

    def put(self, rec: FileRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                (
                    rec.path,
                    rec.sha256,
                    rec.size,
                    rec.mtime_ns,
                    json.dumps(rec.doc_ids),
                    rec.n_nodes,
                    rec.n_tokens,
                    rec.ingested_at,
                ),
            )
            # a document that now comes from a file is the file's, not an API document any more
            db.executemany("DELETE FROM documents WHERE doc_id = ?", [(d,) for d in rec.doc_ids])

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        with self._write() as db:
            db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def invalidate(self, path: str) -> None:
        """Make the next ingest or sync ingest this file again (its chunks went missing)."""
        with self._write() as db:
            db.execute("UPDATE files SET sha256 = ?, size = -1 WHERE path = ?", (NOT_INGESTED, path))

    def remove(self, path: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM files WHERE path = ?", (path,))

    def add_root(self, path: str, include: list[str], exclude: list[str]) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO roots VALUES (?,?,?)", (path, json.dumps(include), json.dumps(exclude)))

    def remove_root(self, path: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM roots WHERE path = ?", (path,))

    def roots(self) -> list[tuple[str, list[str], list[str]]]:
        try:
            with self._errors():
                rows = self.db.execute("SELECT path, include, exclude FROM roots ORDER BY path").fetchall()
        except sqlite3.OperationalError:
            return []
        try:
            return [(p, json.loads(i), json.loads(e)) for p, i, e in rows]
        except ValueError:
            raise CorruptionError(self.path, "a root folder's record is damaged; run kvgraph repair") from None

    # ---- documents added through the API --------------------------------------------

    def documents(self) -> dict[str, int]:
        """Documents added through the API (not from a file), with their node counts."""
        try:
            with self._errors():
                return dict(self.db.execute("SELECT doc_id, n_nodes FROM documents"))
        except sqlite3.OperationalError:  # read-only view of a registry from before the table
            return {}

    def put_documents(self, counts: Mapping[str, int]) -> None:
        """Record documents added through the API (a document some file produced stays the file's)."""
        owned = self.file_documents()
        at = _now()
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?,?,?)",
                [(d, n, at) for d, n in counts.items() if d not in owned],
            )

    def forget_document(self, doc_id: str, removed: int) -> None:
        """A document was deleted by id (``removed`` of its nodes): drop it from its file or the API list."""
        with self._write() as db:
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            for path, doc_ids, n_nodes in db.execute("SELECT path, doc_ids, n_nodes FROM files").fetchall():
                ids = json.loads(doc_ids)
                if doc_id in ids:
                    ids.remove(doc_id)
                    db.execute(
                        "UPDATE files SET doc_ids = ?, n_nodes = ? WHERE path = ?",
                        (json.dumps(ids), max(0, n_nodes - removed), path),
                    )

    def file_documents(self) -> dict[str, str]:
        """Document id -> the path of the file that produced it."""
        return {d: r.path for r in self.all() for d in r.doc_ids}

    def node_total(self) -> int:
        """The number of nodes the store should hold, by the registry's count."""
        total = 0
        for table in ("files", "documents"):  # summed by SQLite: 100k API documents took 0.1 s as a dict
            try:
                with self._errors():
                    total += int(self.db.execute(f"SELECT coalesce(sum(n_nodes), 0) FROM {table}").fetchone()[0])
            except sqlite3.OperationalError:  # a read-only view of a file without the table
                pass
        return total

    def quick_check(self) -> list[str]:
        """SQLite's structural check of the file: empty when it finds nothing wrong."""
        with self._errors():
            problems = [str(r[0]) for r in self.db.execute("PRAGMA quick_check")]
        return [] if problems == ["ok"] else problems


def _record(row: tuple[Any, ...]) -> FileRecord:
    path, sha, size, mtime_ns, doc_ids, n_nodes, n_tokens, at = row
    try:
        ids = json.loads(doc_ids)
    except ValueError:
        ids = None
    if not isinstance(ids, list):  # a flipped byte in the file; the registry can be rebuilt
        raise CorruptionError(path, "its file registry record is damaged; run kvgraph repair to rebuild the registry")
    return FileRecord(path, sha, size, mtime_ns, ids, n_nodes, n_tokens, at)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- the store and the registry


class DocumentStore(Protocol):
    """What the cross-check needs of a vector store (kvgraph's EmbeddedVectorStore has it)."""

    def count(self) -> int: ...
    def doc_counts(self) -> dict[str, int]: ...
    def documents(self) -> dict[str, tuple[int, str | None]]: ...


@dataclass
class CrossCheck:
    """Where the registry and the store disagree.

    ``missing_files``: file -> nodes the registry expects and the store lacks (the file is
    ingested again); ``missing_documents``: API document -> nodes missing (they cannot be
    restored: add the document again); ``orphans``: document -> nodes of a document the
    registry does not know (``sync`` deletes them).
    """

    expected: int = 0
    stored: int = 0
    detailed: bool = False  # False: the totals agreed, nothing was compared document by document
    missing_files: dict[str, int] = field(default_factory=dict)
    missing_documents: dict[str, int] = field(default_factory=dict)
    orphans: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.missing_documents or self.orphans)

    @property
    def complete(self) -> bool:
        """Nothing the registry lists is missing from the store (orphans may remain)."""
        return not (self.missing_files or self.missing_documents)

    def problems(self, registry: str, store: str) -> list[str]:
        out = []
        if self.missing_files:
            n = len(self.missing_files)
            out.append(
                f"{store}: {sum(self.missing_files.values())} chunk(s) of {n} ingested file(s) missing "
                f"(the registry {registry} lists them): the next ingest or sync ingests "
                f"{_some(self.missing_files)} again"
            )
        if self.missing_documents:
            out.append(
                f"{store}: {sum(self.missing_documents.values())} chunk(s) of {len(self.missing_documents)} "
                f"document(s) added through the API missing: add {_some(self.missing_documents)} again"
            )
        return out

    def orphan_note(self, store: str) -> str | None:
        """Orphans are not damage (nothing is missing), only chunks to delete: a note, not a problem."""
        if not self.orphans:
            return None
        return (
            f"{store}: {sum(self.orphans.values())} chunk(s) of {len(self.orphans)} document(s) the registry "
            f"does not know (orphans of an interrupted ingest): kvgraph sync deletes {_some(self.orphans)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected_chunks": self.expected,
            "stored_chunks": self.stored,
            "missing_files": self.missing_files,
            "missing_documents": self.missing_documents,
            "orphans": self.orphans,
        }


def _some(items: Mapping[str, int]) -> str:
    names = sorted(items)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def cross_check(store: DocumentStore, registry: Registry, full: bool = False) -> CrossCheck:
    """Compare the registry with the store: node totals, then (if they differ, or ``full``) per document.

    The totals cost one SQL sum and the store's in-memory count, so this runs on every open.
    """
    check = CrossCheck(expected=registry.node_total(), stored=store.count())
    if check.expected == check.stored and not full:
        return check
    check.detailed = True
    counts = store.doc_counts()
    known: set[str] = set()
    for rec in registry.all():
        known.update(rec.doc_ids)
        have = sum(counts.get(d, 0) for d in rec.doc_ids)
        if have < rec.n_nodes:
            check.missing_files[rec.path] = rec.n_nodes - have
    for doc_id, n in registry.documents().items():
        known.add(doc_id)
        if counts.get(doc_id, 0) < n:
            check.missing_documents[doc_id] = n - counts.get(doc_id, 0)
    check.orphans = {d: n for d, n in counts.items() if d not in known}
    return check


def adopt_store_documents(store: DocumentStore, registry: Registry) -> dict[str, int]:
    """Make a new or older registry know every document in the store; returns what was recorded.

    A registry created now beside a store that holds documents was lost: each document that
    came from a file (its ``file_path`` metadata) gets a file record marked not ingested, so
    the next ingest or sync hashes that file and ingests it again (or, when it is gone, sync
    deletes its chunks). Documents without a file, and every document an older registry does
    not know, are recorded as added through the API: nothing in the store is deleted for
    want of a registry entry.
    """
    known = set(registry.file_documents()) | set(registry.documents())
    files: dict[str, list[tuple[str, int]]] = {}
    api: dict[str, int] = {}
    for doc_id, (count, file_path) in store.documents().items():
        if doc_id in known:
            continue
        if registry.created and file_path:
            files.setdefault(file_path, []).append((doc_id, count))
        else:
            api[doc_id] = count
    for path, docs in files.items():
        registry.put(
            FileRecord(
                path=path,
                sha256=NOT_INGESTED,
                size=-1,
                mtime_ns=-1,
                doc_ids=[d for d, _ in docs],
                n_nodes=sum(n for _, n in docs),
                n_tokens=0,
                ingested_at=_now(),
            )
        )
    if api:
        registry.put_documents(api)
    return {"files": len(files), "documents": len(api)}
