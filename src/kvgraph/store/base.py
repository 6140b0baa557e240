"""The vector store interface every backend implements, and its query/result types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

from kvgraph.filters import FilterSpec
from kvgraph.schema import Node


class QueryMode(str, Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"
    MMR = "mmr"


class Metric(str, Enum):
    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"


@dataclass
class VectorStoreQuery:
    """What to look for.

    ``similarity_top_k`` results are returned. ``node_ids`` / ``doc_ids`` restrict the
    search to those nodes / documents, ``filters`` to nodes whose metadata match.
    ``mode`` picks dense (needs ``query_embedding``), sparse BM25 (needs ``query_str``),
    hybrid (needs both) or MMR (dense candidates re-ranked for diversity).
    Hybrid fuses with reciprocal ranks unless ``alpha`` is given, in which case it
    weights min-max normalised scores: ``alpha * dense + (1 - alpha) * sparse``.
    ``mmr_threshold`` is MMR's lambda: 1.0 is pure relevance, 0.0 pure diversity.
    """

    query_embedding: Sequence[float] | np.ndarray | None = None
    similarity_top_k: int = 4
    node_ids: Sequence[str] | None = None
    doc_ids: Sequence[str] | None = None
    filters: FilterSpec = None
    mode: QueryMode | str = QueryMode.DENSE
    query_str: str | None = None
    alpha: float | None = None
    sparse_top_k: int | None = None
    mmr_threshold: float = 0.5
    mmr_fetch_k: int | None = None
    ef_search: int | None = None  # ANN search depth override (higher: better recall, slower)
    exact: bool = False  # force exact search even when an ANN index exists
    # "auto": the planner picks exact or ANN by filter selectivity; "exact" / "ann" force one
    # (ann falls back to exact while no index exists).
    strategy: str = "auto"


@dataclass
class VectorStoreQueryResult:
    nodes: list[Node] = field(default_factory=list)
    similarities: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    plan: str = ""  # how the query was executed, for explain/debugging


@runtime_checkable
class VectorStore(Protocol):
    """What kvgraph needs from a vector database (embedded or remote)."""

    def add(self, nodes: Sequence[Node]) -> list[str]: ...

    def get(self, ids: Sequence[str]) -> list[Node | None]: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def delete_ref_doc(self, ref_doc_id: str) -> int: ...

    def count(self) -> int: ...

    def query(self, query: VectorStoreQuery) -> VectorStoreQueryResult: ...

    def query_batch(
        self, embeddings: np.ndarray, similarity_top_k: int = 4, filters: FilterSpec = None
    ) -> list[VectorStoreQueryResult]: ...

    def close(self) -> None: ...
