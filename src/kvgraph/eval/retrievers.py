"""The retrievers the evaluation runner can compare, by name, and the indexes they need.

:data:`RETRIEVERS` maps a name to a *factory*: a function that takes the run's
:class:`EvalContext` and returns a *ranker*, ``rank(query_texts) -> ranked passage ids per
query`` (at most ``ctx.k_max`` ids each, best first). Adding a retriever is one line::

    RETRIEVERS["kg"] = lambda ctx: my_ranker(ctx.passage_kb(), ctx.k_max)

Two families are built in:

* **Passage-KB retrievers** (``dense``, ``bm25``, ``hybrid``, ``hybrid_alpha``): the passages
  ingested into a knowledge base with its usual 254-token chunks; a passage ranks by its best
  chunk.
* **Node-reference retrievers** (``base``, ``chunk_refs``, ``metadata_refs`` and variants), after
  the LlamaIndex "recursive retriever + node references" study. Every passage is a document
  cut into parents of :data:`PARENT_SIZE` tokens (:func:`kvgraph.retrieve.chunk_references`):

  - ``base`` searches the parents themselves (dense; ``base_bm25``, ``base_hybrid``);
  - ``chunk_refs`` searches the parents' children of :data:`SUB_SIZES` tokens and follows each
    hit to its parent (:class:`~kvgraph.retrieve.RecursiveRetriever`);
  - ``metadata_refs`` searches an extractive summary and :data:`N_QUESTIONS` key sentences per
    parent (:func:`kvgraph.retrieve.metadata_references` without an LLM), following them to
    their parent;
  - ``*_hybrid`` variants fuse dense and BM25 on the same nodes (reciprocal ranks), and
    ``*_with_parents`` variants search the parents too, as the study did (their embeddings see
    only the first ~254 tokens; see :mod:`kvgraph.ingest.references`).

  **Gold for parents**: a retrieved parent counts as its passage (``ref_doc_id``), so a parent is
  relevant when its passage is gold; a passage longer than a parent has several parents, and
  the first one found ranks the passage. For the Llama 2 question set
  (:mod:`kvgraph.eval.page_questions`) the passages *are* the 1024-token parents of the pages,
  so passage and parent coincide and gold is the parent holding the question's source span.
  All retrievers return ``k`` *distinct* passages; the study's top 10 were 10 base hits, which
  can name one parent several times.

Each node-reference index lives in ``<work_dir>/refs/<index>/`` (an embedded vector store) and
is reused while the passages, sizes and embedding model are the same (a fingerprint in the
store's metadata); otherwise it is rebuilt. Building embeds with the uncached model, so the
index time of each index is its own.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kvgraph.eval.datasets import EvalDataset
from kvgraph.schema import Document, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.filters import FilterSpec
    from kvgraph.kb import KnowledgeBase

Ranker = Callable[[Sequence[str]], list[list[str]]]
RetrieverFactory = Callable[["EvalContext"], Ranker]

PARENT_SIZE = 1024
SUB_SIZES = (128, 256, 512)
OVERLAP = 20
N_QUESTIONS = 5
FETCH_FACTOR = 3  # nodes fetched per passage wanted, so that k distinct passages survive de-duplication
REF_INDEXES = ("parents", "chunk_refs", "metadata_refs")
_FINGERPRINT = "eval_fingerprint"


def passages_as_documents(dataset: EvalDataset) -> list[Document]:
    return [Document(id=p.id, text=p.full_text, metadata={"title": p.title}) for p in dataset.passages]


def ranked_passages(nodes: Sequence[Any], k: int) -> list[str]:
    """Passage ids in rank order of their best node, at most ``k``."""
    out: list[str] = []
    seen: set[str] = set()
    for n in nodes:
        pid = n.ref_doc_id or n.id
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
            if len(out) == k:
                break
    return out


@dataclass
class EvalContext:
    """What a retriever factory gets: the dataset, ``k_max``, the work folder and lazily built indexes.

    ``index_seconds`` records, per index, the time spent building (or reopening) it in this run.
    """

    dataset: EvalDataset
    k_max: int
    work_dir: Path
    kb: KnowledgeBase
    index_seconds: dict[str, float] = field(default_factory=dict)
    index_built: dict[str, bool] = field(default_factory=dict)
    _kb_ready: bool = False
    _vectors: dict[str, np.ndarray] = field(default_factory=dict)
    _stores: dict[str, Any] = field(default_factory=dict)

    @property
    def embedder(self) -> Any:
        """The knowledge base's embedding model (cached on disk in the work folder)."""
        return self.kb.embedder

    def passage_kb(self) -> KnowledgeBase:
        """The knowledge base with the dataset's passages ingested (re-adding unchanged passages embeds nothing)."""
        if not self._kb_ready:
            from kvgraph.progress import RichProgress

            t0 = time.perf_counter()
            self.kb.add_documents(
                passages_as_documents(self.dataset), progress=RichProgress(label="embedding passages")
            )
            self.index_seconds["kb"] = time.perf_counter() - t0
            self.index_built["kb"] = True  # ingested in this run (unchanged passages embed nothing)
            self._kb_ready = True
        return self.kb

    def query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, each text embedded once per run."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            self._vectors.update(zip(todo, self.embedder.embed(todo)))
        return np.asarray([self._vectors[t] for t in texts], dtype=np.float32)

    def vector(self, text: str) -> np.ndarray:
        return np.asarray(self.query_vectors([text])[0])

    def reference_store(self, index: str) -> Any:
        """The embedded store of one node-reference index (one of :data:`REF_INDEXES`), built on first use."""
        store = self._stores.get(index)
        if store is None:
            t0 = time.perf_counter()
            store, built = _open_reference_store(self, index)
            self._stores[index] = store
            self.index_seconds[index] = time.perf_counter() - t0
            self.index_built[index] = built
        return store

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


# ---------------------------------------------------------------------- reference indexes


def _inner_embedder(ctx: EvalContext) -> Any:
    """The model without the on-disk cache, so that each index's build time counts its own embedding."""
    return getattr(ctx.embedder, "inner", ctx.embedder)


def _fingerprint(ctx: EvalContext, index: str) -> str:
    h = hashlib.sha256()
    params = f"{index}|{PARENT_SIZE}|{SUB_SIZES}|{OVERLAP}|{N_QUESTIONS}|{ctx.embedder.model_name}|v1"
    h.update(params.encode())
    for doc in passages_as_documents(ctx.dataset):
        h.update(b"\0" + doc.id.encode() + b"\0" + doc.text.encode())
    return h.hexdigest()


def reference_nodes(docs: Sequence[Document], index: str, embedder: Any) -> list[Any]:
    """The embedded nodes of one node-reference index over ``docs`` (see the module docstring)."""
    from kvgraph.ingest.references import chunk_references, embed_nodes, metadata_references, parent_nodes

    refs = chunk_references(docs, embedder.token_counter(), PARENT_SIZE, SUB_SIZES, OVERLAP)
    if index == "parents":
        nodes = parent_nodes(refs)
    elif index == "chunk_refs":
        nodes = refs
    elif index == "metadata_refs":
        parents = parent_nodes(refs)
        nodes = parents + metadata_references(parents, embedder, N_QUESTIONS)
    else:
        raise ValueError(f"unknown reference index {index!r}")
    embed_nodes(nodes, embedder)
    return nodes


def _open_reference_store(ctx: EvalContext, index: str) -> tuple[Any, bool]:
    from kvgraph.store import EmbeddedVectorStore

    path = ctx.work_dir / "refs" / index
    fingerprint = _fingerprint(ctx, index)
    if path.exists():
        store = EmbeddedVectorStore.open(path)
        if store.get_meta(_FINGERPRINT) == fingerprint:
            return store, False
        store.close()
        shutil.rmtree(path)  # built from other passages or settings: this folder is ours to rebuild
    nodes = reference_nodes(passages_as_documents(ctx.dataset), index, _inner_embedder(ctx))
    store = EmbeddedVectorStore.open(path)
    store.add(nodes)
    store.set_meta(_FINGERPRINT, fingerprint)  # last: an interrupted build is rebuilt next time
    return store, True


# ---------------------------------------------------------------------- rankers


class _StoreSearch:
    """A base retriever over one store whose query vectors come from the run's cache."""

    def __init__(self, ctx: EvalContext, store: Any, mode: str, filters: FilterSpec, alpha: float | None = None):
        self.ctx = ctx
        self.store = store
        self.mode = mode
        self.filters = filters
        self.alpha = alpha

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        from kvgraph.store import VectorStoreQuery

        res = self.store.query(
            VectorStoreQuery(
                query_embedding=None if self.mode == "sparse" else self.ctx.vector(query),
                query_str=query,
                similarity_top_k=k,
                filters=self.filters,
                mode=self.mode,
                alpha=self.alpha,
            )
        )
        return [NodeWithScore(node, float(score)) for node, score in zip(res.nodes, res.similarities)]


def kb_retriever(mode: str, alpha: float | None = None) -> RetrieverFactory:
    """A passage-KB retriever: the store's ``mode`` search over the KB's chunks."""

    def factory(ctx: EvalContext) -> Ranker:
        search = _StoreSearch(ctx, ctx.passage_kb().store, mode, None, alpha)
        fetch = ctx.k_max * FETCH_FACTOR
        return lambda texts: [ranked_passages([h.node for h in search.retrieve(t, fetch)], ctx.k_max) for t in texts]

    return factory


def base_retriever(mode: str) -> RetrieverFactory:
    """``base``: the 1024-token parents searched directly."""

    def factory(ctx: EvalContext) -> Ranker:
        search = _StoreSearch(ctx, ctx.reference_store("parents"), mode, None)
        fetch = ctx.k_max * FETCH_FACTOR
        return lambda texts: [ranked_passages([h.node for h in search.retrieve(t, fetch)], ctx.k_max) for t in texts]

    return factory


def recursive_retriever(index: str, mode: str, include_parents: bool = False) -> RetrieverFactory:
    """Search the reference nodes of ``index`` and return the parents they refer to."""

    def factory(ctx: EvalContext) -> Ranker:
        from kvgraph.ingest.references import search_filter
        from kvgraph.retrieve import RecursiveRetriever

        store = ctx.reference_store(index)
        recursive = RecursiveRetriever(_StoreSearch(ctx, store, mode, search_filter(include_parents)), store)
        fetch = ctx.k_max * FETCH_FACTOR
        return lambda texts: [ranked_passages([h.node for h in recursive.retrieve(t, fetch)], ctx.k_max) for t in texts]

    return factory


RETRIEVERS: dict[str, RetrieverFactory] = {
    "dense": kb_retriever("dense"),
    "bm25": kb_retriever("sparse"),
    "hybrid": kb_retriever("hybrid"),  # reciprocal-rank fusion
    "hybrid_alpha": kb_retriever("hybrid", 0.5),  # min-max normalised scores, equal weights
    "base": base_retriever("dense"),
    "base_bm25": base_retriever("sparse"),
    "base_hybrid": base_retriever("hybrid"),
    "chunk_refs": recursive_retriever("chunk_refs", "dense"),
    "chunk_refs_hybrid": recursive_retriever("chunk_refs", "hybrid"),
    "chunk_refs_with_parents": recursive_retriever("chunk_refs", "dense", include_parents=True),
    "metadata_refs": recursive_retriever("metadata_refs", "dense"),
    "metadata_refs_hybrid": recursive_retriever("metadata_refs", "hybrid"),
    "metadata_refs_with_parents": recursive_retriever("metadata_refs", "dense", include_parents=True),
}
# Retrievers that never embed a query: with only these, the run skips embedding the queries.
LEXICAL = {"bm25", "base_bm25"}
