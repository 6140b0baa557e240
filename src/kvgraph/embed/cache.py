"""A persistent embedding cache keyed by (model, sha256 of the text), for vectors the store does not hold.

A knowledge base keeps chunk vectors once, in its store (an ingest takes an unchanged chunk's
vector from there). This cache holds what the store does not: a re-embed's new vectors until its
switch (so a re-run after a crash embeds only what is new), and the candidate sentences that node
references are chosen from. The cache is a plain SQLite file (WAL), safe to delete at any time.
Files written by this version carry ``PRAGMA user_version = CACHE_FORMAT``; one without it is an
older version's cache of every chunk and question, which the next ingest deletes.

A cached vector is only reused when it is intact: each row carries the crc32 of its model,
key and vector bytes, checked on every read; a row that fails it (bit rot) or has none (written
by an older version) is treated as absent, so the text is embedded again and the row replaced.
A cache file that cannot be opened or read at all is reported once as a warning and bypassed
for the rest of the session: a cache never makes an ingest fail (``kvgraph check`` reports it,
``kvgraph repair`` removes what is damaged).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import CorruptionError
from kvgraph.fileio import is_disk_full, is_sqlite_damage

log = logging.getLogger(__name__)
PAGE_SIZE = 16_384
CACHE_FORMAT = 2  # user_version: only vectors the store does not hold (1 and 0: every chunk and question)


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def row_crc(model: str, key: bytes, blob: bytes) -> int:
    """The checksum stored with a cached vector."""
    return zlib.crc32(blob, zlib.crc32(key, zlib.crc32(model.encode("utf-8", "surrogatepass")))) & 0xFFFFFFFF


class EmbeddingCache:
    """``rejected``: rows found damaged (or unchecked) on read this session; ``unusable``: why the file is bypassed."""

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        self.path = Path(path)
        self.rejected = 0
        self.unusable: str | None = None
        self._full_warned = False
        self.db: sqlite3.Connection | None = None
        # one connection, shared by the threads of a process (server readers, parallel asks): its
        # transactions must not interleave ("cannot start a transaction within a transaction")
        self._lock = threading.RLock()
        try:
            if read_only:  # for checks: nothing is created or changed
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                self.db.execute("SELECT count(*) FROM embeddings").fetchone()
                return
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db = db
            # A 1.5 KB vector does not fit a 4 KB page's local payload in a WITHOUT ROWID table, so
            # each row spilled into an overflow page of its own: 4.7 KB on disk per 1.5 KB vector.
            # In 16 KB pages rows stay local: 1.9 KB per vector (bench/README.md, "Graph mode at
            # scale"). Only a new file takes the size; an older cache keeps its pages (delete it
            # to shrink it: it is only a cache).
            new = not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a lost cache entry only costs a re-embed
            db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, key BLOB NOT NULL, vec BLOB NOT NULL,"
                " crc INTEGER, PRIMARY KEY (model, key)) WITHOUT ROWID"
            )
            if new:  # written after the page size, which only a file's first write sets
                db.execute(f"PRAGMA user_version={CACHE_FORMAT}")  # this version's kind of cache
            if "crc" not in {r[1] for r in db.execute("PRAGMA table_info(embeddings)")}:
                db.execute("ALTER TABLE embeddings ADD COLUMN crc INTEGER")  # a cache from before checksums
        except sqlite3.DatabaseError as e:
            self._give_up(e)

    def _give_up(self, e: sqlite3.DatabaseError) -> None:
        """A damaged file is bypassed for the rest of the session; a full disk or a busy file only skip this call."""
        if is_disk_full(e):
            if not self._full_warned:
                log.warning("%s: not caching embeddings, the disk is full (%s)", self.path, e)
                self._full_warned = True
            return
        if not is_sqlite_damage(e) and self.db is not None:
            log.warning("%s: embedding cache not used for this batch (%s)", self.path, e)
            return
        self.unusable = str(e)
        log.warning(
            "%s: embedding cache unusable (%s); embedding without it. Run kvgraph repair (or delete the file)",
            self.path,
            e,
        )
        if self.db is not None:
            self.db.close()
            self.db = None

    def get_many(self, model: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The intact cached vectors of ``keys`` (damaged, unchecked and wrong-sized rows are left out)."""
        with self._lock:
            return self._get_many(model, keys, dim)

    def _get_many(self, model: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        rejected = 0
        try:
            for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                if self.db is None:
                    break
                part = list(keys[i : i + 500])
                marks = ",".join("?" * len(part))
                for key, blob, crc in self.db.execute(
                    f"SELECT key, vec, crc FROM embeddings WHERE model = ? AND key IN ({marks})", [model, *part]
                ):
                    if crc is None or row_crc(model, key, blob) != crc or len(blob) != 4 * dim:
                        rejected += 1
                        continue
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        except sqlite3.DatabaseError as e:
            self._give_up(e)
            return {}
        if rejected:
            self.rejected += rejected
            log.warning("%s: %d cached embedding(s) failed their checksum; embedding them again", self.path, rejected)
        return found

    def put_many(self, model: str, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        if not items or self.db is None:
            return
        rows = []
        for k, v in items:
            blob = np.ascontiguousarray(v, dtype=np.float32).tobytes()
            rows.append((model, k, blob, row_crc(model, k, blob)))
        with self._lock:
            if self.db is None:
                return
            try:
                with self.db:
                    self.db.execute("BEGIN")
                    self.db.executemany(
                        "INSERT OR REPLACE INTO embeddings (model, key, vec, crc) VALUES (?, ?, ?, ?)", rows
                    )
            except sqlite3.DatabaseError as e:
                self._give_up(e)

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if self.db is None:
                return 0
            if model is None:
                return int(self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
            return int(self.db.execute("SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()[0])

    def check(self, drop_damaged: bool = False) -> dict[str, Any]:
        """Check every row: counts of rows, damaged rows and rows without a checksum.

        ``drop_damaged`` deletes the damaged and unchecked rows (they are never reused anyway).
        Raises CorruptionError naming the file when it cannot be read at all.
        """
        with self._lock:
            return self._check(drop_damaged)

    def _check(self, drop_damaged: bool) -> dict[str, Any]:
        if self.db is None:
            raise CorruptionError(
                self.path, f"embedding cache unusable ({self.unusable}); delete it or run kvgraph repair"
            )
        try:
            problems = [str(r[0]) for r in self.db.execute("PRAGMA quick_check")]
            rows = damaged = unchecked = 0
            bad: list[tuple[str, bytes]] = []
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(embeddings)")}
            select = f"SELECT model, key, vec, {'crc' if 'crc' in columns else 'NULL'} FROM embeddings"
            for model, key, blob, crc in self.db.execute(select):
                rows += 1
                if crc is None:
                    unchecked += 1
                elif row_crc(model, key, blob) != crc:
                    damaged += 1
                else:
                    continue
                bad.append((model, key))
            if drop_damaged and bad:
                with self.db:
                    self.db.execute("BEGIN")
                    self.db.executemany("DELETE FROM embeddings WHERE model = ? AND key = ?", bad)
        except sqlite3.DatabaseError as e:
            raise CorruptionError(self.path, f"embedding cache damaged ({e}); delete it or run kvgraph repair") from e
        return {
            "rows": rows,
            "damaged": damaged,
            "unchecked": unchecked,
            "sqlite": [] if problems == ["ok"] else problems,
            "dropped": len(bad) if drop_damaged else 0,
        }

    def close(self) -> None:
        with self._lock:
            if self.db is not None:
                self.db.close()
                self.db = None


def remove_cache_file(path: Path) -> None:
    """Delete a cache file with its SQLite side files (WAL, shared memory)."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def cache_format(path: Path) -> int | None:
    """The ``user_version`` of the cache file at ``path`` (None when it cannot be read as SQLite)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None


class CachedEmbedder:
    """Wraps an embedder: texts already embedded by the same model come from the cache."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.model_name = inner.model_name
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        dim = self.inner.dim
        found = self.cache.get_many(self.model_name, list(dict.fromkeys(keys)), dim)
        out = np.zeros((len(texts), dim), dtype=np.float32)
        todo: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            if k in found:
                out[i] = found[k]
            else:
                todo.setdefault(k, []).append(i)
        self.hits += len(texts) - sum(len(v) for v in todo.values())
        if todo:
            firsts = [idx[0] for idx in todo.values()]
            vecs = self.inner.embed([texts[i] for i in firsts])
            for (_key, idx), vec in zip(todo.items(), vecs):
                out[idx] = vec
            self.misses += len(firsts)
            self.cache.put_many(self.model_name, list(zip(todo.keys(), vecs)))
        return out

    def __getattr__(self, name: str) -> object:  # token_counter() and friends of the inner embedder
        return getattr(self.inner, name)
