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
from kvgraph.schema import Document, Node, NodeRelationship, NodeWithScore

__version__ = "0.1.0"

__all__ = [
    "CorruptionError",
    "DimensionMismatchError",
    "Document",
    "FilterOperator",
    "InvalidFilterError",
    "InvalidInputError",
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
