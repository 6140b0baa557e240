"""The Retriever protocol, the scored result with its reference path, and thin store retrievers.

A retriever turns a query string into the ``k`` best :class:`~kvgraph.schema.NodeWithScore`.
The three retrievers here are thin wrappers over :meth:`VectorStore.query` in its dense,
sparse (BM25) and hybrid modes; the composing retrievers (recursive, reranking) take any
object with a ``retrieve(query, k)`` method as their base.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Node, NodeWithScore
from kvgraph.text import replace_surrogates

if TYPE_CHECKING:  # kept out of the import: kvgraph.store loads the whole embedded store
    from collections.abc import Sequence

    import numpy as np

    from kvgraph.embed.base import Embedder
    from kvgraph.filters import FilterSpec
    from kvgraph.store.base import VectorStore


@runtime_checkable
class Retriever(Protocol):
    """Anything that returns the ``k`` best nodes for a query, best first."""

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]: ...


@dataclass
class RetrievedNode(NodeWithScore):
    """A result reached by following references from the node retrieval actually matched.

    It *is* a :class:`NodeWithScore` (code reading ``.node`` and ``.score`` needs no change).
    ``path`` lists the node ids from the matched node to ``node`` (both included; a node
    returned as itself has the path ``[node.id]``), and ``hit`` is the matched node itself,
    so a display can say "found through the question ...".
    """

    path: list[str] = field(default_factory=list)
    hit: Node | None = None


def check_query(query: object, k: object) -> tuple[str, int]:
    """Validate a retrieve() call's arguments; raise InvalidInputError naming the bad one."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"query must be a non-empty string, got {query!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    return replace_surrogates(query), k


def _results(store: VectorStore, **query: Any) -> list[NodeWithScore]:
    from kvgraph.store.base import VectorStoreQuery

    res = store.query(VectorStoreQuery(**query))
    return [NodeWithScore(node, float(score)) for node, score in zip(res.nodes, res.similarities)]


class StoreRetriever:
    """Any of the store's query modes (dense, sparse, hybrid, mmr) as a retriever.

    The knowledge base composes its search from this: the embedder is touched only for
    modes that need a query vector, so sparse search never loads the model.
    """

    MODES = ("dense", "sparse", "hybrid", "mmr")

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder | None,
        mode: str = "dense",
        filters: FilterSpec = None,
        alpha: float | None = None,
        sparse_top_k: int | None = None,
    ) -> None:
        if mode not in self.MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        if mode != "sparse" and embedder is None:
            raise InvalidInputError(f"mode {mode!r} needs an embedder")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(f"alpha must be between 0 and 1 (or None for rank fusion), got {alpha!r}")
        self.store = store
        self.embedder = embedder
        self.mode = mode
        self.filters = filters
        self.alpha = alpha
        self.sparse_top_k = sparse_top_k

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        emb = self.embedder.embed([query])[0] if self.mode != "sparse" and self.embedder is not None else None
        return self.search(query, emb, k)

    def search(
        self, query: str, vector: Sequence[float] | np.ndarray | Callable[[], np.ndarray] | None, k: int
    ) -> list[NodeWithScore]:
        """:meth:`retrieve` with the query's embedding given (by a caller that embedded it along with
        other texts), or a function that computes it; ``vector`` is ignored in sparse mode."""
        if callable(vector):
            vector = vector()
        emb = vector if self.mode != "sparse" else None
        return _results(
            self.store,
            query_embedding=emb,
            query_str=query,
            similarity_top_k=k,
            filters=self.filters,
            mode=self.mode,
            alpha=self.alpha,
            sparse_top_k=self.sparse_top_k,
        )


class VectorRetriever(StoreRetriever):
    """Dense (embedding) search: cosine, dot or l2 similarity as the store is configured."""

    def __init__(self, store: VectorStore, embedder: Embedder, filters: FilterSpec = None) -> None:
        super().__init__(store, embedder, mode="dense", filters=filters)


class BM25Retriever(StoreRetriever):
    """Sparse keyword search (the store's BM25 index); scores are BM25 scores."""

    def __init__(self, store: VectorStore, filters: FilterSpec = None) -> None:
        super().__init__(store, None, mode="sparse", filters=filters)


class HybridRetriever(StoreRetriever):
    """Dense and BM25 candidates fused: reciprocal-rank fusion when ``alpha`` is None, else
    ``alpha * dense + (1 - alpha) * bm25`` over min-max normalised scores (see docs/store.md).
    """

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        filters: FilterSpec = None,
        alpha: float | None = None,
        sparse_top_k: int | None = None,
    ) -> None:
        super().__init__(store, embedder, mode="hybrid", filters=filters, alpha=alpha, sparse_top_k=sparse_top_k)
