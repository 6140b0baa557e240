"""Query-time retrieval: the store's dense, sparse and hybrid top-k (:mod:`~kvgraph.retrieve.base`),
hybrid search fused per question (:mod:`~kvgraph.retrieve.fusion`), LLM query expansion
(:mod:`~kvgraph.retrieve.expansion`), the offline sentence reranker (:mod:`~kvgraph.retrieve.sentences`),
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
from kvgraph.retrieve.expansion import ExpandedRetriever
from kvgraph.retrieve.fusion import FusionRetriever
from kvgraph.retrieve.neighbors import expand_neighbors
from kvgraph.retrieve.recursive import RecursiveRetriever
from kvgraph.retrieve.rerank import CrossEncoderReranker, MMRReranker, Reranker, RerankingRetriever
from kvgraph.retrieve.sentences import SentenceReranker
from kvgraph.retrieve.tokens import TokenReranker

__all__ = [
    "BM25Retriever",
    "CrossEncoderReranker",
    "ExpandedRetriever",
    "FusionRetriever",
    "HybridRetriever",
    "MMRReranker",
    "RecursiveRetriever",
    "Reranker",
    "RerankingRetriever",
    "RetrievedNode",
    "Retriever",
    "SentenceReranker",
    "StoreRetriever",
    "TokenReranker",
    "VectorRetriever",
    "expand_neighbors",
]
