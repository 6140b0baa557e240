"""Query-time retrieval: the store's dense, sparse and hybrid top-k (:mod:`~kvgraph.retrieve.base`),
node references followed back to their parents (:mod:`~kvgraph.retrieve.recursive`), reranking
(:mod:`~kvgraph.retrieve.rerank`), neighbour expansion (:mod:`~kvgraph.retrieve.neighbors`) and the
knowledge-vector-graph walk (:mod:`~kvgraph.retrieve.graph`). What is built at ingest time
(node references) lives in :mod:`kvgraph.ingest`.
"""

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
from kvgraph.retrieve.rerank import CrossEncoderReranker, MMRReranker, Reranker, RerankingRetriever

__all__ = [
    "BM25Retriever",
    "CrossEncoderReranker",
    "HybridRetriever",
    "MMRReranker",
    "RecursiveRetriever",
    "Reranker",
    "RerankingRetriever",
    "RetrievedNode",
    "Retriever",
    "StoreRetriever",
    "VectorRetriever",
    "expand_neighbors",
]
