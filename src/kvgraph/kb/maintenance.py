"""Maintenance of one vector store directory (``kvgraph store ...``): stats, checksums, vacuum.

These work on any kvgraph store, a knowledge base's ``store/`` or ``graph-index/`` included.
"""

from __future__ import annotations

import os
from typing import Any

from kvgraph.store import EmbeddedVectorStore


def store_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, dimension, metric, index state and disk use of the store at ``path``."""
    with EmbeddedVectorStore.open(path, read_only=True) as s:
        return s.stats()


def verify_store(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify every checksum of the store at ``path``; CorruptionError naming the damaged file if any."""
    with EmbeddedVectorStore.open(path, read_only=True) as s:
        return s.verify()


def vacuum_store(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Purge deleted rows and reclaim disk space (takes the writer lock)."""
    with EmbeddedVectorStore.open(path, read_only=False) as s:
        return s.vacuum()
