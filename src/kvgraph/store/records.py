"""The records database (SQLite in WAL mode): the store's source of truth and commit point.

Tables:

* ``nodes(slot INTEGER PRIMARY KEY, id TEXT UNIQUE, text, metadata JSON, ref_doc_id,
  relationships JSON, norm REAL, crc INTEGER)`` — one row per live node; ``slot`` is its
  vector row; ``crc`` is :func:`row_checksum` of the rest (NULL in rows written before
  checksums existed), verified whenever a row becomes a node and by ``verify()``.
* ``dead(slot INTEGER PRIMARY KEY)`` — vector rows whose node was deleted or replaced,
  until ``vacuum`` rewrites the vector file without them.
* ``segments(start INTEGER PRIMARY KEY, count, crc)`` — checksums of the vector file.
* ``meta(key PRIMARY KEY, value)`` — dim, metric, committed slot count, vector file name,
  and ``generation``, bumped by every commit so readers can tell that something changed.

All SQL is parameterized; values never reach the query text.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kvgraph.errors import CorruptionError
from kvgraph.fileio import disk_full_error, is_disk_full

FORMAT_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(
    slot INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    ref_doc_id TEXT,
    relationships TEXT NOT NULL,
    norm REAL NOT NULL,
    crc INTEGER
);
CREATE INDEX IF NOT EXISTS nodes_ref_doc ON nodes(ref_doc_id);
CREATE TABLE IF NOT EXISTS dead(slot INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS segments(start INTEGER PRIMARY KEY, count INTEGER NOT NULL, crc INTEGER NOT NULL);
"""

NewRow = tuple[int, str, str, str, str | None, str, float]  # slot, id, text, metadata, ref_doc_id, rels, norm
NodeRow = tuple[int, str, str, str, str | None, str, float, int | None]  # a NewRow and its checksum
_IN_CHUNK = 900  # stay below SQLite's bound-parameter limit
_COLUMNS = "slot, id, text, metadata, ref_doc_id, relationships, norm"


def row_checksum(
    node_id: str, text: str, metadata: str, ref_doc_id: str | None, relationships: str, norm: float
) -> int:
    """crc32 of a node's stored fields (not its slot, which vacuum renumbers)."""
    ref = "\x00" if ref_doc_id is None else ref_doc_id  # None and "" differ
    fields = "\x1f".join((node_id, text, metadata, ref, relationships)).encode("utf-8", "surrogatepass")
    return zlib.crc32(struct.pack("<d", norm), zlib.crc32(fields)) & 0xFFFFFFFF


def row_intact(row: NodeRow) -> bool:
    """False when a row's fields no longer match its checksum (rows without one pass)."""
    crc = row[7]
    return crc is None or row_checksum(*row[1:7]) == crc


def _chunks(seq: Sequence[Any], n: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class Records:
    def __init__(self, path: Path, read_only: bool) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is durable once it returns, also across power loss.
            self.db.execute("PRAGMA synchronous=FULL")
            # Deleted text and metadata are overwritten on disk, not left in free pages.
            self.db.execute("PRAGMA secure_delete=ON")
            if read_only:
                self.db.execute("PRAGMA query_only=ON")
            else:
                self.db.executescript(_SCHEMA)
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(nodes)")}
            if columns and "crc" not in columns and not read_only:
                self.db.execute("ALTER TABLE nodes ADD COLUMN crc INTEGER")  # a store made before checksums
                columns.add("crc")
        except sqlite3.DatabaseError as e:
            if is_disk_full(e):
                raise disk_full_error(path, e) from e
            raise CorruptionError(path, f"records database unreadable: {e}") from e
        # a reader of a store written before checksums reads NULL in their place
        self._select = f"SELECT {_COLUMNS}, {'crc' if 'crc' in columns else 'NULL'} FROM nodes"

    # ---- meta -------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        try:
            return dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise CorruptionError(self.path, f"records database unreadable: {e}") from e

    def set_meta(self, values: dict[str, object]) -> None:
        self.db.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # ---- transactions -----------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # ---- nodes ------------------------------------------------------------------------

    def slots_of(self, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in _chunks(ids):
            q = f"SELECT id, slot FROM nodes WHERE id IN ({','.join('?' * len(part))})"
            out.update(self.db.execute(q, list(part)).fetchall())
        return out

    def slots_of_docs(self, doc_ids: Sequence[str]) -> list[int]:
        out: list[int] = []
        for part in _chunks(doc_ids):
            q = f"SELECT slot FROM nodes WHERE ref_doc_id IN ({','.join('?' * len(part))})"
            out.extend(r[0] for r in self.db.execute(q, list(part)))
        return out

    def insert_nodes(self, rows: Sequence[NewRow]) -> None:
        self.db.executemany(
            f"INSERT INTO nodes({_COLUMNS}, crc) VALUES(?,?,?,?,?,?,?,?)",
            [(*r, row_checksum(*r[1:])) for r in rows],
        )

    def kill_slots(self, slots: Sequence[int]) -> None:
        """Delete the nodes in these slots and remember the slots as dead."""
        for part in _chunks(slots):
            marks = ",".join("?" * len(part))
            self.db.execute(f"DELETE FROM nodes WHERE slot IN ({marks})", list(part))
        self.db.executemany("INSERT OR IGNORE INTO dead(slot) VALUES(?)", [(s,) for s in slots])

    def ids_by_slots(self, slots: Sequence[int] | None) -> list[str]:
        """Node ids in slot order: of the given slots, or of every live node when None."""
        if slots is None:
            return [r[0] for r in self.db.execute("SELECT id FROM nodes ORDER BY slot")]
        out: dict[int, str] = {}
        for part in _chunks(slots):
            q = f"SELECT slot, id FROM nodes WHERE slot IN ({','.join('?' * len(part))})"
            out.update(self.db.execute(q, list(part)).fetchall())
        return [out[s] for s in sorted(out)]

    def rows_by_slots(self, slots: Sequence[int]) -> dict[int, NodeRow]:
        out: dict[int, NodeRow] = {}
        for part in _chunks(slots):
            q = f"{self._select} WHERE slot IN ({','.join('?' * len(part))})"
            out.update((r[0], r) for r in self.db.execute(q, list(part)))
        return out

    def all_rows(self) -> Iterator[NodeRow]:
        """Every live node's row, in slot order (for checks; streams)."""
        return iter(self.db.execute(f"{self._select} ORDER BY slot"))

    def doc_counts(self) -> dict[str, int]:
        """Live nodes per document id (nodes without one are not counted)."""
        q = "SELECT ref_doc_id, count(*) FROM nodes WHERE ref_doc_id IS NOT NULL GROUP BY ref_doc_id"
        return {str(d): int(c) for d, c in self.db.execute(q)}

    def doc_sources(self) -> Iterable[tuple[str, int, str]]:
        """(document id, live nodes, one node's metadata JSON) per document."""
        return self.db.execute(
            "SELECT ref_doc_id, count(*), min(metadata) FROM nodes WHERE ref_doc_id IS NOT NULL GROUP BY ref_doc_id"
        )

    def quick_check(self) -> list[str]:
        """SQLite's own structural check of the file: empty when it finds nothing wrong."""
        problems = [str(r[0]) for r in self.db.execute("PRAGMA quick_check")]
        return [] if problems == ["ok"] else problems

    def rows_from(self, start_slot: int) -> Iterable[tuple[int, str, str]]:
        """(slot, text, metadata) of live nodes with slot >= start_slot, in slot order."""
        return self.db.execute("SELECT slot, text, metadata FROM nodes WHERE slot >= ? ORDER BY slot", (start_slot,))

    def ids_from(self, start_slot: int) -> Iterable[tuple[int, str]]:
        """(slot, id) of live nodes with slot >= start_slot, in slot order."""
        return self.db.execute("SELECT slot, id FROM nodes WHERE slot >= ? ORDER BY slot", (start_slot,))

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM nodes").fetchone()[0])

    def dead_slots(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT slot FROM dead")]

    def segments(self, start_from: int = 0) -> list[tuple[int, int, int]]:
        return [
            (int(a), int(b), int(c))
            for a, b, c in self.db.execute(
                "SELECT start, count, crc FROM segments WHERE start + count > ? ORDER BY start", (start_from,)
            )
        ]

    def add_segments(self, segments: Sequence[tuple[int, int, int]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO segments(start, count, crc) VALUES(?,?,?)", segments)

    def close(self) -> None:
        self.db.close()
