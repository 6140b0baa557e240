"""kvgraph's vector stores: the embedded store and the protocol other backends implement."""

from kvgraph.store.base import Metric, QueryMode, VectorStore, VectorStoreQuery, VectorStoreQueryResult
from kvgraph.store.embedded import EmbeddedVectorStore

__all__ = [
    "EmbeddedVectorStore",
    "Metric",
    "QueryMode",
    "VectorStore",
    "VectorStoreQuery",
    "VectorStoreQueryResult",
]
