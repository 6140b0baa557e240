"""kvgraph: a self-hosted knowledge engine.

Importing kvgraph is cheap: heavy parts (faiss, embedding models) load on first use.
"""

from kvgraph.errors import (
    CorruptionError,
    DimensionMismatchError,
    InvalidFilterError,
    InvalidInputError,
    KvgraphError,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
)
from kvgraph.filters import FilterOperator, MetadataFilter, MetadataFilters
from kvgraph.schema import Answer, Citation, Document, Node, NodeRelationship, NodeWithScore

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # KnowledgeBase pulls in ingestion and storage; load it only when asked for.
    if name == "KnowledgeBase":
        from kvgraph.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'kvgraph' has no attribute {name!r}")


__all__ = [
    "Answer",
    "Citation",
    "CorruptionError",
    "DimensionMismatchError",
    "Document",
    "FilterOperator",
    "InvalidFilterError",
    "InvalidInputError",
    "KnowledgeBase",
    "KvgraphError",
    "MetadataFilter",
    "MetadataFilters",
    "Node",
    "NodeRelationship",
    "NodeWithScore",
    "ReadOnlyError",
    "StoreClosedError",
    "StoreLockedError",
    "__version__",
]
