"""kvgraph's embedded vector store: a directory that behaves like a small database.

Layout of a store directory::

    records.sqlite      nodes, dead slots, vector checksums, settings (the commit point)
    vectors-<g>.f32     float32 rows, slot i at row i (unit vectors for the cosine metric)
    cache/*.kvg         derived structures (metadata columns, BM25, HNSW), checksummed,
                        each valid for the slots it covers; rebuilt when absent or stale
    LOCK                the writer lock (holder's pid and command inside)

A write appends vectors and fsyncs them, then commits the records in one SQLite
transaction; a crash at any point leaves the last commit intact (see docs/store.md).

The class is built in layers, one module each, every layer on top of the one before:

    core        the committed state in memory, read snapshots, vectors and rows
    indexing    derived structures (metadata columns, BM25, slot ids, HNSW) and filter masks
    results     lazily built query results, reads by id and by document
    search      query execution: dense (exact or HNSW), sparse, hybrid, MMR
    engine      open, close, writes and maintenance (vacuum, verify, stats)
"""

from __future__ import annotations

from kvgraph.store.core import READ_RETRIES, SqliteErrors, StoreCore
from kvgraph.store.engine import INDEX_DEFAULTS, StoreEngine
from kvgraph.store.indexing import INDEX_BATCH, TAIL_ROWS
from kvgraph.store.results import PENDING_SWEEP, LazyNodesResult


class EmbeddedVectorStore(StoreEngine):
    """A persistent vector store in a directory. Open with :meth:`open`."""

    def __init__(self) -> None:  # use open()
        raise TypeError("use EmbeddedVectorStore.open(path)")


__all__ = [
    "INDEX_BATCH",
    "INDEX_DEFAULTS",
    "PENDING_SWEEP",
    "READ_RETRIES",
    "TAIL_ROWS",
    "EmbeddedVectorStore",
    "LazyNodesResult",
    "SqliteErrors",
    "StoreCore",
]
