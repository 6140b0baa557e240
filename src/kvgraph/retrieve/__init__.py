"""Retrieval stages that sit between the store's top-k and the answerer."""

from kvgraph.retrieve.base import (
    BM25Retriever,
    HybridRetriever,
    RetrievedNode,
    Retriever,
    StoreRetriever,
    VectorRetriever,
)
from kvgraph.retrieve.neighbors import expand_neighbors
from kvgraph.retrieve.recursive import RecursiveRetriever
from kvgraph.retrieve.references import (
    MetadataProgress,
    chunk_references,
    embed_nodes,
    metadata_references,
    parent_nodes,
    search_filter,
)
from kvgraph.retrieve.rerank import CrossEncoderReranker, MMRReranker, Reranker, RerankingRetriever

__all__ = [
    "BM25Retriever",
    "CrossEncoderReranker",
    "HybridRetriever",
    "MMRReranker",
    "MetadataProgress",
    "RecursiveRetriever",
    "Reranker",
    "RerankingRetriever",
    "RetrievedNode",
    "Retriever",
    "StoreRetriever",
    "VectorRetriever",
    "chunk_references",
    "embed_nodes",
    "expand_neighbors",
    "metadata_references",
    "parent_nodes",
    "search_filter",
]
