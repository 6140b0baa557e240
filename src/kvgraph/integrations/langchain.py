"""LangChain integration: a knowledge base, its store and its embedder, seen from LangChain.

* :class:`KvgraphVectorStore` is a LangChain ``VectorStore`` over a knowledge base's store, an
  open :class:`~kvgraph.store.EmbeddedVectorStore` or a store directory; ``as_retriever()``
  gives LangChain's retriever over it (similarity, MMR, score threshold, kvgraph filters).
* :class:`KvgraphEmbeddings` is a LangChain ``Embeddings`` backed by any kvgraph
  :class:`~kvgraph.embed.Embedder`.
* :class:`KvgraphRetriever` is a LangChain retriever that runs a knowledge base's own search
  pipeline (:meth:`~kvgraph.kb.KnowledgeBase.search`: node references, reranking, graph mode).
* :class:`~kvgraph.integrations.langchain_graph.KvgraphGraphStore` (re-exported here) is the
  read-only graph store protocol of ``GraphCypherQAChain`` over ``kb.graph``.

This module imports ``langchain_core``; ``import kvgraph`` never imports it. See docs/langchain.md.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError, MissingDependencyError
from kvgraph.filters import FilterSpec
from kvgraph.integrations.langchain_graph import KvgraphGraphStore
from kvgraph.integrations.metadata import flat_metadata
from kvgraph.integrations.store_binding import StoreBinding, declared_model_name
from kvgraph.schema import Node, validate_id
from kvgraph.store.base import QueryMode, VectorStoreQuery
from kvgraph.store.embedded import EmbeddedVectorStore

if TYPE_CHECKING:
    from kvgraph.kb.knowledge_base import KnowledgeBase

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.vectorstores import VectorStore
    from pydantic import ConfigDict, PrivateAttr
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise MissingDependencyError("langchain-core", "langchain") from e

__all__ = ["KvgraphEmbeddings", "KvgraphGraphStore", "KvgraphRetriever", "KvgraphVectorStore", "to_document"]

_MODES = {"dense": QueryMode.DENSE, "sparse": QueryMode.SPARSE, "hybrid": QueryMode.HYBRID}


def to_document(node: Node) -> Document:
    """A kvgraph node as a LangChain ``Document`` (``id``, text, a copy of the metadata)."""
    return Document(id=node.id, page_content=node.text, metadata=dict(node.metadata))


# ---------------------------------------------------------------------------- embeddings


class KvgraphEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` backed by a kvgraph :class:`~kvgraph.embed.Embedder`.

    Documents and queries are embedded alike (kvgraph's embedders are symmetric); the async
    methods are LangChain's, which run these in a worker thread.
    """

    def __init__(self, embedder: Embedder) -> None:
        # Not isinstance(embedder, Embedder): the protocol check reads .dim, which may load the model.
        if not callable(getattr(embedder, "embed", None)):
            raise InvalidInputError(
                f"KvgraphEmbeddings takes a kvgraph Embedder (with embed(texts)), got {type(embedder).__name__}"
            )
        self.embedder = embedder

    @property
    def model_name(self) -> str:
        """The kvgraph model name (what a knowledge base records as its ``embedding_model``)."""
        return str(self.embedder.model_name)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vecs = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise InvalidInputError(
                f"embedder {self.model_name!r} returned shape {vecs.shape} for {len(texts)} texts; "
                "expected (texts, dim)"
            )
        out: list[list[float]] = vecs.tolist()
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0]


# ---------------------------------------------------------------------------- the vector store


class KvgraphVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over a kvgraph store.

    ``KvgraphVectorStore(kb)`` uses a knowledge base's store and embeds with its embedder;
    ``KvgraphVectorStore(store, embedding)`` wraps an open :class:`EmbeddedVectorStore` (the
    caller closes it, as it does the knowledge base); ``KvgraphVectorStore(path, embedding,
    **open_kwargs)`` opens a store directory (``dim``, ``metric``, ``read_only``, ...) that
    :meth:`close` closes.

    The embedding model must be the store's (the ``embedding_model`` a knowledge base
    records); another one is refused with an error naming both. Its name is read from the
    ``embedding`` object (``model_name`` or ``model``); ``embedding_model=`` names it when the
    object does not. A store that records no model takes the first named one; a store that
    records one refuses additions from an unnamed model.

    Searches take ``filter`` (a kvgraph filter dict, docs/filters.md) and ``mode`` (``dense``,
    ``sparse`` BM25 or ``hybrid``; ``alpha`` weights hybrid). Scores are similarities, higher
    is closer: cosine for the default metric; relevance scores are the same, clipped to [0, 1].
    """

    def __init__(
        self,
        store: KnowledgeBase | EmbeddedVectorStore | str | os.PathLike[str],
        embedding: Embeddings | None = None,
        *,
        embedding_model: str | None = None,
        **open_kwargs: Any,
    ) -> None:
        from kvgraph.kb.knowledge_base import KnowledgeBase

        if embedding is None:
            if not isinstance(store, KnowledgeBase):
                raise InvalidInputError(
                    "KvgraphVectorStore needs an embedding (a LangChain Embeddings) unless it is given a KnowledgeBase"
                )
            embedding = KvgraphEmbeddings(store.embedder)
        if not isinstance(embedding, Embeddings):
            raise InvalidInputError(
                f"embedding must be a LangChain Embeddings (e.g. KvgraphEmbeddings(embedder)), "
                f"got {type(embedding).__name__}"
            )
        model = embedding_model or declared_model_name(embedding)
        binding = StoreBinding(store, model, adapter="KvgraphVectorStore", open_kwargs=open_kwargs)
        try:
            binding.check_model(writing=False)  # a model other than the store's is refused at once
        except BaseException:
            binding.close()
            raise
        self._binding = binding
        self._embedding = embedding

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def client(self) -> EmbeddedVectorStore:
        """The kvgraph store (a knowledge base's current one)."""
        return self._binding.store

    @property
    def embedding_model(self) -> str | None:
        """The name of the model this adapter embeds with (None when its embedding does not say)."""
        return self._binding.writer_model

    def close(self) -> None:
        """Close the store if this adapter opened it (from a path)."""
        self._binding.close()

    def __enter__(self) -> KvgraphVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: KnowledgeBase | EmbeddedVectorStore | str | os.PathLike[str] | None = None,
        embedding_model: str | None = None,
        **open_kwargs: Any,
    ) -> KvgraphVectorStore:
        """Open ``store`` (a path, an open store or a knowledge base; required), add the texts, return the adapter."""
        if store is None:
            raise InvalidInputError(
                "KvgraphVectorStore.from_texts needs store= (a store directory, store or KnowledgeBase)"
            )
        vs = cls(store, embedding, embedding_model=embedding_model, **open_kwargs)
        try:
            vs.add_texts(texts, metadatas, ids=ids)
        except BaseException:
            vs.close()
            raise
        return vs

    # ---- writing

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and store the texts in one all-or-nothing commit; an existing id is replaced.

        Missing ids (None) are new UUIDs. Metadata must be flat (str, int, float, bool, None or
        a list of those); anything else raises InvalidInputError, naming the id and key, before
        anything is embedded or written.
        """
        if kwargs:
            raise InvalidInputError(f"unknown options {sorted(kwargs)} for KvgraphVectorStore.add_texts")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"text {i} must be a string, got {type(text).__name__}")
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidInputError(f"got {len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise InvalidInputError(f"got {len(ids)} ids for {len(texts)} texts")
        # LangChain passes None for documents without an id, though it types ids as list[str]
        given: list[str | None] = list(ids) if ids is not None else [None] * len(texts)
        node_ids = [validate_id(i) if i is not None else str(uuid.uuid4()) for i in given]
        metas = [flat_metadata(dict(m or {}), node_id) for m, node_id in zip(metadatas or [{}] * len(texts), node_ids)]
        if not texts:
            return []
        self._binding.check_model(writing=True)
        vectors = self._embedding.embed_documents(texts)
        if len(vectors) != len(texts):
            raise InvalidInputError(f"the embedding returned {len(vectors)} vectors for {len(texts)} texts")
        nodes = [
            Node(id=node_id, text=text, metadata=meta, embedding=vector)
            for node_id, text, meta, vector in zip(node_ids, texts, metas, vectors)
        ]
        return self.client.add(nodes)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete the nodes with these ids (unknown ids are ignored); returns True.

        ``ids=None`` raises InvalidInputError rather than emptying a knowledge base: pass
        ``vector_store.client.ids()`` to delete everything.
        """
        if kwargs:
            raise InvalidInputError(f"unknown options {sorted(kwargs)} for KvgraphVectorStore.delete")
        if ids is None:
            raise InvalidInputError("delete() needs ids; to delete every node pass vector_store.client.ids()")
        ids = [validate_id(i) for i in ids]
        if ids:
            self.client.delete(ids)
        return True

    # ---- reading

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in that order; unknown ids are skipped."""
        return [to_document(n) for n in self.client.get([validate_id(i) for i in ids]) if n is not None]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: FilterSpec = None,  # LangChain's name
        *,
        mode: str = "dense",
        alpha: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """The ``k`` closest documents with their similarities (higher is closer).

        ``mode``: ``dense`` (the embedded query), ``sparse`` (BM25 over ``query``, nothing is
        embedded) or ``hybrid`` (both, fused; ``alpha`` 1 = dense only, 0 = BM25 only,
        reciprocal-rank fusion when unset). ``kwargs`` may carry ``ef_search``, ``exact``
        and ``strategy`` (kvgraph's ``VectorStoreQuery``).
        """
        if mode not in _MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}; use dense, sparse or hybrid")
        q = self._query(k, filter, kwargs, mode=_MODES[mode], query_str=query, alpha=alpha)
        if q.mode is not QueryMode.SPARSE:
            q.query_embedding = self._embedding.embed_query(query)
        return self._run(q)

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """The ``k`` documents closest to ``embedding`` (a vector of the store's model) with similarities."""
        q = self._query(k, filter, kwargs, mode=QueryMode.DENSE)
        q.query_embedding = embedding
        return self._run(q)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` of the ``fetch_k`` closest documents, picked for relevance and diversity (1 = relevance only)."""
        q = self._query(k, filter, kwargs, mode=QueryMode.MMR)
        q.query_embedding = embedding
        q.mmr_threshold = float(lambda_mult)
        q.mmr_fetch_k = max(int(fetch_k), k)
        return [doc for doc, _ in self._run(q)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # kvgraph already returns similarities (cosine; 1 / (1 + distance) for l2), higher is closer;
        # LangChain wants relevance in [0, 1], so a negative cosine counts as unrelated.
        return _clip_unit

    def _query(
        self,
        k: int,
        filters: FilterSpec,
        kwargs: dict[str, Any],
        *,
        mode: QueryMode,
        query_str: str | None = None,
        alpha: float | None = None,
    ) -> VectorStoreQuery:
        unknown = set(kwargs) - {"ef_search", "exact", "strategy"}
        if unknown:
            raise InvalidInputError(
                f"unknown search options {sorted(unknown)} for KvgraphVectorStore; "
                "accepted: filter, mode, alpha, ef_search, exact, strategy"
            )
        return VectorStoreQuery(
            similarity_top_k=k, filters=filters, mode=mode, query_str=query_str, alpha=alpha, **kwargs
        )

    def _run(self, q: VectorStoreQuery) -> list[tuple[Document, float]]:
        if q.mode is not QueryMode.SPARSE:
            self._binding.check_model(writing=False)  # a knowledge base may have switched models since
        result = self.client.query(q)
        return [(to_document(n), float(s)) for n, s in zip(result.nodes, result.similarities)]


def _clip_unit(score: float) -> float:
    return min(1.0, max(0.0, score))


# ---------------------------------------------------------------------------- the knowledge base's own search


class KvgraphRetriever(BaseRetriever):
    """A LangChain retriever that runs a knowledge base's search (``kb.search``).

    Unlike ``KvgraphVectorStore(kb).as_retriever()``, which searches the store's nodes as
    they are, this follows the knowledge base's settings: node references (small nodes found,
    their parent chunks returned), reranking, and the ``graph`` mode. ``k`` (default: the
    knowledge base's ``top_k``), ``filters`` and ``mode`` are those of ``kb.search``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    k: int | None = None
    filters: Any = None
    mode: str | None = None

    _kb: KnowledgeBase = PrivateAttr()

    def __init__(self, kb: KnowledgeBase, **kwargs: Any) -> None:
        from kvgraph.kb.knowledge_base import KnowledgeBase

        if not isinstance(kb, KnowledgeBase):
            raise InvalidInputError(f"KvgraphRetriever takes a KnowledgeBase, got {type(kb).__name__}")
        super().__init__(**kwargs)
        self._kb = kb

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self._kb.search(query, k=self.k, filters=self.filters, mode=self.mode)
        return [to_document(h.node) for h in hits]
