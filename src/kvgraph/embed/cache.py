"""A persistent embedding cache keyed by (model, sha256 of the text).

Re-ingesting a changed file re-embeds only the chunks whose text changed; everything else
comes from here. The cache is a plain SQLite file (WAL), safe to delete at any time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kvgraph.embed.base import Embedder


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a lost cache entry only costs a re-embed
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, key BLOB NOT NULL, vec BLOB NOT NULL,"
            " PRIMARY KEY (model, key)) WITHOUT ROWID"
        )

    def get_many(self, model: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            part = list(keys[i : i + 500])
            marks = ",".join("?" * len(part))
            for key, blob in self.db.execute(
                f"SELECT key, vec FROM embeddings WHERE model = ? AND key IN ({marks})", [model, *part]
            ):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[key] = vec
        return found

    def put_many(self, model: str, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        if not items:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, key, vec) VALUES (?, ?, ?)",
                [(model, k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items],
            )

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
        return int(self.db.execute("SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()[0])

    def close(self) -> None:
        self.db.close()


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
