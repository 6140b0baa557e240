"""The embedding cache's page size: rows of a 384-d vector stay in their page, not in overflow pages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from kvgraph.embed.cache import PAGE_SIZE, EmbeddingCache, text_key

MODEL = "test-model"


def fill(cache: EmbeddingCache, n: int, seed: int = 0) -> dict[bytes, np.ndarray]:
    vectors = np.random.default_rng(seed).random((n, 384)).astype(np.float32)
    keys = [text_key(f"text {seed} {i}") for i in range(n)]
    cache.put_many(MODEL, list(zip(keys, vectors)))
    return dict(zip(keys, vectors))


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_cache_uses_large_pages_and_stays_near_the_vectors_size(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    cache = EmbeddingCache(path)
    stored = fill(cache, 2_000)
    assert cache.db is not None
    cache.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert page_size(path) == PAGE_SIZE
    # 4 KB pages put every 1.5 KB row in an overflow page of its own (about 4.7 KB per vector)
    assert path.stat().st_size / len(stored) < 2.5 * 1024
    found = cache.get_many(MODEL, list(stored), 384)
    assert all(np.array_equal(found[k], v) for k, v in stored.items())


def test_a_cache_made_with_small_pages_keeps_them_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # what kvgraph wrote before: default 4 KB pages
        db.execute("PRAGMA page_size=4096")
        db.execute(
            "CREATE TABLE embeddings (model TEXT NOT NULL, key BLOB NOT NULL, vec BLOB NOT NULL,"
            " crc INTEGER, PRIMARY KEY (model, key)) WITHOUT ROWID"
        )
    cache = EmbeddingCache(path)
    stored = fill(cache, 50, seed=1)
    assert page_size(path) == 4096
    reopened = EmbeddingCache(path)
    found = reopened.get_many(MODEL, list(stored), 384)
    assert all(np.array_equal(found[k], v) for k, v in stored.items())
