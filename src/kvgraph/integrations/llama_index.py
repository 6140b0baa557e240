"""LlamaIndex integration: kvgraph's embedded store and embedders, seen from LlamaIndex.

* :class:`KvgraphVectorStore` is a LlamaIndex vector store backed by an
  :class:`~kvgraph.store.EmbeddedVectorStore`, so ``VectorStoreIndex.from_vector_store``,
  its retrievers and query engines read and write a kvgraph store directory.
* :class:`KvgraphEmbedding` is a LlamaIndex embedding model backed by any kvgraph
  :class:`~kvgraph.embed.Embedder`, so LlamaIndex embeds with the same local model as kvgraph.
* :func:`to_kvgraph_filters` translates LlamaIndex ``MetadataFilters`` into kvgraph's filter dict.

This module imports ``llama_index.core``; ``import kvgraph`` never imports it. See docs/llama_index.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidFilterError, InvalidInputError, MissingDependencyError
from kvgraph.integrations.metadata import flat_metadata
from kvgraph.integrations.store_binding import StoreBinding, declared_model_name
from kvgraph.schema import Metadata, Node
from kvgraph.store.base import QueryMode
from kvgraph.store.base import VectorStoreQuery as KvgraphQuery
from kvgraph.store.embedded import EmbeddedVectorStore

if TYPE_CHECKING:
    from kvgraph.kb.knowledge_base import KnowledgeBase

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import (
        BaseNode,
        MetadataMode,
        NodeRelationship,
        RelatedNodeInfo,
        RelatedNodeType,
        TextNode,
    )
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise MissingDependencyError("llama-index-core", "llama-index") from e

__all__ = ["KvgraphEmbedding", "KvgraphVectorStore", "to_kvgraph_filters"]

# LlamaIndex node fields kvgraph's Node has no place for are stored under reserved metadata keys
# (only when set), and are taken out of the metadata again when nodes are read back.
EXCLUDED_EMBED_KEY = "_excluded_embed_metadata_keys"
EXCLUDED_LLM_KEY = "_excluded_llm_metadata_keys"
START_CHAR_KEY = "_start_char_idx"
END_CHAR_KEY = "_end_char_idx"
RESERVED_METADATA_KEYS = frozenset({EXCLUDED_EMBED_KEY, EXCLUDED_LLM_KEY, START_CHAR_KEY, END_CHAR_KEY})

# vector_store_kwargs a query accepts (VectorIndexRetriever(..., vector_store_kwargs={...}))
_QUERY_KWARGS = frozenset({"mmr_threshold", "mmr_prefetch_k", "mmr_prefetch_factor", "ef_search", "exact", "strategy"})

_SIMPLE_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
    FilterOperator.TEXT_MATCH: "$text_match",
}


# ---------------------------------------------------------------------------- filters


def _filter_to_dict(f: MetadataFilter) -> dict[str, Any]:
    op = FilterOperator(f.operator)
    key, value = f.key, f.value
    if op in _SIMPLE_OPERATORS:
        return {key: {_SIMPLE_OPERATORS[op]: value}}
    if op is FilterOperator.IS_EMPTY:  # LlamaIndex: missing, null, "" or []
        return {"$or": [{key: {"$exists": False}}, {key: {"$eq": None}}, {key: {"$eq": ""}}, {key: {"$eq": []}}]}
    if op in (FilterOperator.ANY, FilterOperator.ALL):
        if not isinstance(value, list):
            raise InvalidFilterError(f"filter on {key!r} with {op.value!r}: operand must be a list, got {value!r}")
        if not value:  # any of nothing matches nothing; all of nothing: any value is there
            return {key: {"$in": []}} if op is FilterOperator.ANY else {key: {"$exists": True}}
        parts = [{key: {"$contains": v}} for v in value]
        return {"$or": parts} if op is FilterOperator.ANY else {"$and": parts}
    raise InvalidFilterError(
        f"filter on {key!r}: LlamaIndex operator {op.name} ({op.value!r}) has no kvgraph equivalent; "
        "kvgraph's text_match is case-sensitive"
    )


def to_kvgraph_filters(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` (nested to any depth) into a kvgraph filter dict.

    Conditions: ``and`` -> ``$and``, ``or`` -> ``$or``, ``not`` (none of the filters) ->
    ``$not`` of ``$or``. Operators map one to one (``==`` -> ``$eq``, ``in`` -> ``$in``, ...);
    ``any`` / ``all`` become ``$or`` / ``$and`` of ``$contains``; ``is_empty`` matches a missing
    key, null, ``""`` or ``[]``. ``text_match_insensitive`` raises :class:`InvalidFilterError`.
    ``None`` or an empty filter list matches everything (returns ``None``).
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise InvalidFilterError(
            f"filters must be llama_index MetadataFilters, got {type(filters).__name__}; "
            "for kvgraph's own filter dicts use kvgraph.store directly"
        )
    out = _filters_to_dict(filters)
    return out or None


def _filters_to_dict(filters: MetadataFilters) -> dict[str, Any]:
    children = [_filters_to_dict(f) if isinstance(f, MetadataFilters) else _filter_to_dict(f) for f in filters.filters]
    children = [c for c in children if c]  # an empty nested MetadataFilters matches everything
    if not children:
        return {}
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition is FilterCondition.AND:
        return children[0] if len(children) == 1 else {"$and": children}
    if condition is FilterCondition.OR:
        return children[0] if len(children) == 1 else {"$or": children}
    return {"$not": children[0] if len(children) == 1 else {"$or": children}}


# ---------------------------------------------------------------------------- nodes


def _flat_metadata(metadata: dict[str, Any], node_id: str) -> Metadata:
    return flat_metadata(metadata, node_id, reserved=RESERVED_METADATA_KEYS)


def _relationship_name(rel: NodeRelationship) -> str:
    return NodeRelationship(rel).name.lower()  # SOURCE -> "source", kvgraph's vocabulary


def _llama_relationship(name: str) -> NodeRelationship | None:
    try:
        return NodeRelationship[name.upper()]
    except KeyError:
        pass
    try:
        return NodeRelationship(name)  # LlamaIndex's own values ("1" .. "5")
    except ValueError:
        return None  # a relationship LlamaIndex has no name for


def to_kvgraph_node(node: BaseNode) -> Node:
    """Convert a LlamaIndex node (with its embedding) into a kvgraph :class:`~kvgraph.schema.Node`."""
    node_id = node.node_id
    if node.embedding is None:
        raise InvalidInputError(
            f"node {node_id!r} has no embedding; let VectorStoreIndex embed it (pass embed_model) "
            "or set node.embedding before adding"
        )
    metadata = _flat_metadata(dict(node.metadata), node_id)
    if node.excluded_embed_metadata_keys:
        metadata[EXCLUDED_EMBED_KEY] = [str(k) for k in node.excluded_embed_metadata_keys]
    if node.excluded_llm_metadata_keys:
        metadata[EXCLUDED_LLM_KEY] = [str(k) for k in node.excluded_llm_metadata_keys]
    if isinstance(node, TextNode):
        if node.start_char_idx is not None:
            metadata[START_CHAR_KEY] = node.start_char_idx
        if node.end_char_idx is not None:
            metadata[END_CHAR_KEY] = node.end_char_idx
    relationships: dict[str, str | list[str]] = {}
    for rel, info in node.relationships.items():
        name = _relationship_name(rel)
        relationships[name] = [i.node_id for i in info] if isinstance(info, list) else info.node_id
    return Node(
        id=node_id,
        text=node.get_content(metadata_mode=MetadataMode.NONE),
        metadata=metadata,
        embedding=node.embedding,
        ref_doc_id=node.ref_doc_id,
        relationships=relationships,
    )


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def to_llama_node(node: Node) -> TextNode:
    """Convert a kvgraph node back into a LlamaIndex ``TextNode`` (relationships as ``RelatedNodeInfo``)."""
    metadata = dict(node.metadata)
    excluded_embed = _str_list(metadata.pop(EXCLUDED_EMBED_KEY, None)) or []
    excluded_llm = _str_list(metadata.pop(EXCLUDED_LLM_KEY, None)) or []
    start = _int_or_none(metadata.pop(START_CHAR_KEY, None))
    end = _int_or_none(metadata.pop(END_CHAR_KEY, None))
    relationships: dict[NodeRelationship, RelatedNodeType] = {}
    for name, target in node.relationships.items():
        rel = _llama_relationship(str(name))
        if rel is None:
            continue
        if isinstance(target, list):
            if rel is not NodeRelationship.SOURCE:  # LlamaIndex requires a single source
                relationships[rel] = [RelatedNodeInfo(node_id=str(t)) for t in target]
        else:
            relationships[rel] = RelatedNodeInfo(node_id=str(target))
    if node.ref_doc_id is not None and NodeRelationship.SOURCE not in relationships:
        relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=node.ref_doc_id)
    embedding = node.embedding_array()
    return TextNode(
        id_=node.id,
        text=node.text,
        metadata=metadata,
        relationships=relationships,
        excluded_embed_metadata_keys=excluded_embed,
        excluded_llm_metadata_keys=excluded_llm,
        start_char_idx=start,
        end_char_idx=end,
        embedding=None if embedding is None else embedding.tolist(),
    )


# ---------------------------------------------------------------------------- the vector store


class KvgraphVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store backed by kvgraph's :class:`~kvgraph.store.EmbeddedVectorStore`.

    ``KvgraphVectorStore(kb, embed_model)`` writes into a knowledge base's store;
    ``KvgraphVectorStore(store)`` wraps an open store (the caller closes both);
    ``KvgraphVectorStore(path, **open_kwargs)`` opens one with ``EmbeddedVectorStore.open``
    (``dim``, ``metric``, ``read_only``, ...) and :meth:`close` closes it.

    ``embed_model`` (or ``embedding_model``, its name) says which model made the vectors that
    will be added; it must be the model the store records (a knowledge base's embedder), else
    InvalidInputError names both. A store that records a model refuses additions from an
    adapter that was not told its model; a store that records none takes the first named one.

    The store keeps text, metadata and relationships, so ``VectorStoreIndex.from_vector_store``
    works and LlamaIndex needs no docstore. Every write is committed durably when it returns.
    Query modes: ``default`` (dense; with no query embedding, the nodes that match the filters),
    ``sparse`` / ``text_search`` (BM25 on ``query_str``),
    ``hybrid`` (``alpha``: 1 = dense only, 0 = BM25 only; reciprocal-rank fusion when unset),
    ``mmr`` (``mmr_threshold`` from the query or ``vector_store_kwargs``; 1 = relevance only).
    ``vector_store_kwargs`` may also carry ``mmr_prefetch_k`` / ``mmr_prefetch_factor``,
    ``ef_search``, ``exact`` and ``strategy`` (see kvgraph's ``VectorStoreQuery``).
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = True
    path: str = ""
    embedding_model: str | None = None

    _binding: StoreBinding = PrivateAttr()

    def __init__(
        self,
        store: KnowledgeBase | EmbeddedVectorStore | str | os.PathLike[str],
        embed_model: BaseEmbedding | None = None,
        *,
        embedding_model: str | None = None,
        **open_kwargs: Any,
    ) -> None:
        model = embedding_model or (declared_model_name(embed_model) if embed_model is not None else None)
        binding = StoreBinding(store, model, adapter="KvgraphVectorStore", open_kwargs=open_kwargs)
        try:
            binding.check_model(writing=False)  # a model other than the store's is refused at once
            super().__init__(path=str(binding.store.path), embedding_model=model)  # type: ignore[call-arg]  # pydantic field, untyped __init__
        except BaseException:
            binding.close()
            raise
        self._binding = binding

    @classmethod
    def class_name(cls) -> str:
        return "KvgraphVectorStore"

    @property
    def client(self) -> EmbeddedVectorStore:
        """The wrapped kvgraph store (a knowledge base's current one)."""
        return self._binding.store

    def close(self) -> None:
        """Close the store if this adapter opened it (from a path); a store or knowledge base passed in is left open."""
        self._binding.close()

    def __enter__(self) -> KvgraphVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Insert or replace (same id) the nodes in one all-or-nothing commit; returns their ids.

        Raises InvalidInputError, writing nothing, when the store's embedding model is not the
        adapter's (see the class docstring).
        """
        converted = [to_kvgraph_node(n) for n in nodes]  # validate every node before writing any
        if not converted:
            return []
        self._binding.check_model(writing=True)
        return self.client.add(converted)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of document ``ref_doc_id``."""
        self.client.delete_ref_doc(ref_doc_id)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes that are in ``node_ids`` (if given) and match ``filters`` (if given).

        With neither, nothing is deleted and :class:`InvalidInputError` is raised: use :meth:`clear`.
        """
        if node_ids is None and filters is None:
            raise InvalidInputError("delete_nodes() needs node_ids or filters; use clear() to delete every node")
        ids = list(node_ids) if filters is None and node_ids is not None else self._matching_ids(node_ids, filters)
        if ids:
            self.client.delete(ids)

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    def clear(self) -> None:
        """Delete every node (space is reclaimed by ``client.vacuum()``)."""
        ids = self._matching_ids(None, None)
        if ids:
            self.client.delete(ids)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    def persist(self, persist_path: str, fs: Any = None) -> None:
        """Nothing to do: every add/delete is committed to the store directory before it returns.

        ``StorageContext.persist`` calls this with its own directory, which kvgraph does not use;
        the data lives at :attr:`path`. (``client.checkpoint()`` writes kvgraph's derived caches
        early, which only makes the next open faster.)
        """
        return None

    # ---- reading

    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Nodes (with embeddings) in ``node_ids`` and matching ``filters``; every node when both are None.

        Nodes come in the order of ``node_ids`` (unknown ids are skipped), otherwise sorted by id.
        """
        if filters is None and node_ids is not None:
            ids = list(node_ids)
        else:
            ids = self._matching_ids(node_ids, filters)
            if node_ids is not None:
                position = {node_id: i for i, node_id in enumerate(node_ids)}
                ids.sort(key=position.__getitem__)
            else:
                ids.sort()
        return [to_llama_node(n) for n in self.client.get(ids) if n is not None]

    async def aget_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    def _matching_ids(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[str]:
        """Ids of every live node in ``node_ids`` (if given) that matches ``filters``."""
        if node_ids is not None and not node_ids:
            return []
        ids = self.client.ids(filters=to_kvgraph_filters(filters))
        if node_ids is None:
            return list(ids)
        wanted = set(node_ids)
        return [i for i in ids if i in wanted]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Run a LlamaIndex query on the kvgraph store; results are ``TextNode`` with scores.

        A ``default`` or ``mmr`` query without ``query_embedding`` is a filter-only query: the
        first ``similarity_top_k`` nodes (in insertion order) that match ``filters`` and are in
        ``node_ids`` / ``doc_ids``, without similarities. With none of those either it raises
        InvalidInputError.
        """
        q = self._kvgraph_query(query, kwargs)
        if q.query_embedding is None and q.mode in (QueryMode.DENSE, QueryMode.MMR):
            return self._filter_only(query, q)
        if q.query_embedding is not None:
            self._binding.check_model(writing=False)  # a knowledge base may have switched models since
        result = self.client.query(q)
        return VectorStoreQueryResult(
            nodes=[to_llama_node(n) for n in result.nodes],
            similarities=list(result.similarities),
            ids=list(result.ids),
        )

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    def _filter_only(self, query: VectorStoreQuery, q: KvgraphQuery) -> VectorStoreQueryResult:
        if query.filters is None and q.node_ids is None and q.doc_ids is None:
            raise InvalidInputError(
                "query has no query_embedding and nothing to filter by; give an embedding (or query_str in "
                "sparse mode), or filters / node_ids / doc_ids to list the nodes that match"
            )
        k = q.similarity_top_k
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {k!r}")
        ids = self.client.ids(filters=q.filters, doc_ids=q.doc_ids)
        if q.node_ids is not None:
            wanted = set(q.node_ids)
            ids = [i for i in ids if i in wanted]
        nodes = [to_llama_node(n) for n in self.client.get(ids[:k]) if n is not None]
        return VectorStoreQueryResult(nodes=nodes, similarities=None, ids=[n.node_id for n in nodes])

    def _kvgraph_query(self, query: VectorStoreQuery, kwargs: dict[str, Any]) -> KvgraphQuery:
        unknown = set(kwargs) - _QUERY_KWARGS
        if unknown:
            raise InvalidInputError(
                f"unknown vector_store_kwargs {sorted(unknown)} for KvgraphVectorStore; "
                f"accepted: {sorted(_QUERY_KWARGS)}"
            )
        mode = VectorStoreQueryMode(query.mode)
        k = query.similarity_top_k
        q = KvgraphQuery(
            query_embedding=query.query_embedding,
            similarity_top_k=k,
            # LlamaIndex passes an empty node_ids list when it means "no restriction"
            # (VectorStoreIndex.as_retriever with a store that keeps text).
            node_ids=query.node_ids or None,
            doc_ids=query.doc_ids or None,
            filters=to_kvgraph_filters(query.filters),
            query_str=query.query_str,
        )
        for name in ("ef_search", "exact", "strategy"):
            if name in kwargs:
                setattr(q, name, kwargs[name])
        if mode is VectorStoreQueryMode.DEFAULT:
            q.mode = QueryMode.DENSE
        elif mode in (VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.TEXT_SEARCH):
            q.mode = QueryMode.SPARSE
            q.query_embedding = None
        elif mode is VectorStoreQueryMode.HYBRID:
            q.mode = QueryMode.HYBRID
            q.similarity_top_k = query.hybrid_top_k or k
            q.alpha = query.alpha
            q.sparse_top_k = query.sparse_top_k
        elif mode is VectorStoreQueryMode.MMR:
            q.mode = QueryMode.MMR
            threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
            if threshold is not None:
                q.mmr_threshold = float(threshold)
            if kwargs.get("mmr_prefetch_k") is not None:
                q.mmr_fetch_k = int(kwargs["mmr_prefetch_k"])
            elif kwargs.get("mmr_prefetch_factor") is not None:
                q.mmr_fetch_k = int(k * float(kwargs["mmr_prefetch_factor"]))
        else:
            raise InvalidInputError(
                f"query mode {mode.value!r} is not supported by KvgraphVectorStore; "
                "use default, sparse, text_search, hybrid or mmr"
            )
        return q


# ---------------------------------------------------------------------------- the embedding model


class KvgraphEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model backed by a kvgraph :class:`~kvgraph.embed.Embedder`.

    Queries and texts are embedded alike (kvgraph's embedders are symmetric). The async
    methods run the embedder in a worker thread.
    """

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, embed_batch_size: int = 32, **kwargs: Any) -> None:
        # Not isinstance(embedder, Embedder): the protocol check reads .dim, which loads the model.
        if not callable(getattr(embedder, "embed", None)):
            raise InvalidInputError(
                f"KvgraphEmbedding takes a kvgraph Embedder (with embed(texts)), got {type(embedder).__name__}"
            )
        kwargs.setdefault("model_name", str(getattr(embedder, "model_name", type(embedder).__name__)))
        super().__init__(embed_batch_size=embed_batch_size, **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "KvgraphEmbedding"

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def _embed(self, texts: list[str]) -> list[Embedding]:
        if not texts:
            return []
        vecs = np.asarray(self._embedder.embed(texts), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise InvalidInputError(
                f"embedder {self.model_name!r} returned shape {vecs.shape} for {len(texts)} texts; "
                "expected (texts, dim)"
            )
        out: list[Embedding] = vecs.tolist()
        return out

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(list(texts))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
