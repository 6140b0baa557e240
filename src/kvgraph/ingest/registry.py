"""The file registry: which files a knowledge base has ingested, and what came from each.

It makes ingestion incremental: a file whose size and modification time are unchanged is
not even read; one whose content hash is unchanged is not re-split or re-embedded; a
changed file's documents are swapped atomically in the store; a file that disappeared has
every document derived from it deleted by ``sync``.

The store commits first, then the registry. A crash in between leaves the registry
describing the old content, so the next run re-ingests that file, which is idempotent
because node ids are deterministic.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only:
            if not self.path.exists():
                self.db = sqlite3.connect(":memory:", isolation_level=None)
            else:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
                return
        else:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get(self, path: str) -> FileRecord | None:
        row = self.db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[FileRecord]:
        try:
            return [_record(r) for r in self.db.execute("SELECT * FROM files ORDER BY path")]
        except sqlite3.OperationalError:  # read-only view of a KB that never ingested
            return []

    def put(self, rec: FileRecord) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
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

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def remove(self, path: str) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM files WHERE path = ?", (path,))

    def add_root(self, path: str, include: list[str], exclude: list[str]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO roots VALUES (?,?,?)", (path, json.dumps(include), json.dumps(exclude))
            )

    def remove_root(self, path: str) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM roots WHERE path = ?", (path,))

    def roots(self) -> list[tuple[str, list[str], list[str]]]:
        try:
            rows = self.db.execute("SELECT path, include, exclude FROM roots ORDER BY path").fetchall()
        except sqlite3.OperationalError:
            return []
        return [(p, json.loads(i), json.loads(e)) for p, i, e in rows]


def _record(row: tuple[Any, ...]) -> FileRecord:
    path, sha, size, mtime_ns, doc_ids, n_nodes, n_tokens, at = row
    return FileRecord(path, sha, size, mtime_ns, json.loads(doc_ids), n_nodes, n_tokens, at)
