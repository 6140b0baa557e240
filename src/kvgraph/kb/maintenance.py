"""Maintenance of one vector store directory (``kvgraph store ...``): stats, checksums, vacuum.

These work on any kvgraph store, a knowledge base's ``store/`` or ``graph-index/`` included.
A knowledge base's ``store/`` is also checked against the knowledge base's file registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kvgraph.errors import CorruptionError
from kvgraph.ingest.registry import Registry, cross_check
from kvgraph.kb.layout import REGISTRY_FILE, STORE_DIR
from kvgraph.store import EmbeddedVectorStore


def store_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, dimension, metric, index state and disk use of the store at ``path``."""
    with EmbeddedVectorStore.open(path, read_only=True) as s:
        return s.stats()


def verify_store(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify every checksum of the store at ``path``; CorruptionError naming the damaged file if any.

    For a knowledge base's ``store/``, the registry beside it must agree: every ingested file's
    chunks present (orphaned chunks are only counted; ``kvgraph sync`` deletes them).
    """
    store_dir = Path(path)
    with EmbeddedVectorStore.open(store_dir, read_only=True) as s:
        result = s.verify()
        registry_file = store_dir.parent / REGISTRY_FILE
        if store_dir.name == STORE_DIR and registry_file.exists():
            registry = Registry(registry_file, read_only=True)
            try:
                check = cross_check(s, registry, full=True)
            finally:
                registry.close()
            if not check.complete:
                problems = check.problems(str(registry_file), str(store_dir))
                raise CorruptionError(store_dir, "; ".join(p.removeprefix(f"{store_dir}: ") for p in problems))
            result["registry_chunks"] = check.expected
            result["orphan_chunks"] = sum(check.orphans.values())
    return result


def vacuum_store(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Purge deleted rows and reclaim disk space (takes the writer lock)."""
    with EmbeddedVectorStore.open(path, read_only=False) as s:
        return s.vacuum()
