"""Hybrid search that adapts to each question: dense and BM25 fused by how well the words match.

:class:`FusionRetriever` asks the store for the ``pool`` best chunks by embedding and by BM25
and fuses the two lists. Its default, **confidence fusion**, weighs BM25 by how much of the
question its best chunk covers::

    score(c) = alpha * minmax(dense)(c) + (1 - alpha) * coverage * bm25(c) / max bm25

``coverage`` is the share of the question's terms (stemmed, stop words out:
:func:`kvgraph.store.analyzers.analyzer`) that occur in the top BM25 chunk. A question asked in
the document's own words (most SQuAD questions, an identifier, a number) keeps BM25 at full
weight; a paraphrase whose words the text never uses ("how did they check that raters agreed?")
matches a few common words somewhere, gets a low coverage and leaves the ranking to the
embedding. Equal-weight rank fusion treats both the same and is what the Llama 2 paraphrases
and the held-out multi-hop questions lost to (docs/eval.md). ``minmax`` (fixed weights over
min-max normalised scores) and ``rrf`` (weighted reciprocal ranks) are the fixed alternatives.

Weights chosen *per knowledge base* from pseudo-questions built from its own chunks were
measured and dropped: on the dev sets they chose the opposite of the weights the real
questions wanted (docs/retrieval.md, "Fusion").

Optional query-side steps, each a setting measured on the dev sets (docs/eval.md):

* ``feedback="rocchio"``: the query vector moves towards the mean vector of the first ``m``
  fused hits (pseudo-relevance feedback on the dense side), then the dense search runs again;
* ``feedback="rm3"``: the ``terms`` most frequent informative terms of the first hits run as a
  second BM25 query whose scores are added at ``rm3_weight`` (RM3-style expansion).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.retrieve.base import check_query
from kvgraph.schema import Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder
    from kvgraph.filters import FilterSpec
    from kvgraph.store.base import VectorStore, VectorStoreQueryResult

__all__ = [
    "FEEDBACK",
    "FUSION_METHODS",
    "FusionRetriever",
    "Ranked",
    "confidence_fusion",
    "minmax_fusion",
    "query_coverage",
    "rrf_fusion",
]

FUSION_METHODS = ("confidence", "minmax", "rrf")
FEEDBACK = ("none", "rocchio", "rm3")
DEFAULT_ALPHA = 0.4  # the dense weight of confidence fusion, chosen by cross-validation (docs/eval.md)
# Candidates taken from each side before fusing: chosen like the other hybrid defaults, by
# leave-one-dataset-out over the dev sets (bench/retrieval_tuning.py: 150 picked for every held-out
# set over 50 and 100; +0.5 points on HotpotQA and SQuAD, -0.2 on Llama 2, within noise).
DEFAULT_POOL = 150
RRF_K = 60


@dataclass(frozen=True)
class Ranked:
    """One retriever's list: ids best first and their scores (higher is better)."""

    ids: Sequence[str]
    scores: Sequence[float]


def _minmax(scores: Sequence[float]) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if not len(s):
        return s
    span = float(s.max() - s.min())
    return (s - s.min()) / span if span > 1e-12 else np.ones_like(s)


def _ordered(total: Mapping[str, float], first_seen: Mapping[str, int]) -> list[tuple[str, float]]:
    # ties keep the order in which the ids were first seen (dense list first)
    return sorted(total.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))


def _accumulate(parts: Sequence[tuple[Sequence[str], np.ndarray]]) -> list[tuple[str, float]]:
    total: dict[str, float] = {}
    seen: dict[str, int] = {}
    for ids, contrib in parts:
        for i, v in zip(ids, contrib):
            seen.setdefault(i, len(seen))
            total[i] = total.get(i, 0.0) + float(v)
    return _ordered(total, seen)


def confidence_fusion(dense: Ranked, sparse: Ranked, coverage: float, alpha: float) -> list[tuple[str, float]]:
    """``alpha * minmax(dense) + (1 - alpha) * coverage * sparse / max(sparse)``, best first."""
    parts: list[tuple[Sequence[str], np.ndarray]] = [(dense.ids, alpha * _minmax(dense.scores))]
    s = np.asarray(sparse.scores, dtype=np.float64)
    if len(s) and float(s.max()) > 0:
        parts.append((sparse.ids, (1 - alpha) * min(max(coverage, 0.0), 1.0) * s / float(s.max())))
    return _accumulate(parts)


def minmax_fusion(dense: Ranked, sparse: Ranked, alpha: float) -> list[tuple[str, float]]:
    """``alpha * minmax(dense) + (1 - alpha) * minmax(sparse)``; absent from a list counts 0."""
    return _accumulate([(dense.ids, alpha * _minmax(dense.scores)), (sparse.ids, (1 - alpha) * _minmax(sparse.scores))])


def rrf_fusion(
    lists: Sequence[Ranked], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[str, float]]:
    """Weighted reciprocal-rank fusion: ``sum_l w_l / (k + rank_l)``, ranks from 1."""
    weights = [1.0] * len(lists) if weights is None else list(weights)
    return _accumulate(
        [(r.ids, w / (k + np.arange(1, len(r.ids) + 1, dtype=np.float64))) for r, w in zip(lists, weights)]
    )


def query_coverage(query: str, text: str, analyzer_name: str | None = None) -> float:
    """The share of ``query``'s distinct analyzed terms that occur in ``text`` (0 when it has none)."""
    from kvgraph.store.analyzers import DEFAULT_ANALYZER, analyzer, query_analyzer

    analyze = analyzer(analyzer_name or DEFAULT_ANALYZER)
    terms = set(query_analyzer(analyzer_name or DEFAULT_ANALYZER)(query))
    if not terms:
        return 0.0
    return len(terms & set(analyze(text))) / len(terms)


def _check(name: str, value: Any, lo: float, hi: float, kind: type = float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        raise InvalidInputError(f"{name} must be a {kind.__name__} between {lo} and {hi}, got {value!r}")


_BESIDE: tuple[ThreadPoolExecutor, threading.BoundedSemaphore] | None = None
_BESIDE_LOCK = threading.Lock()
T = TypeVar("T")


def _beside(fn: Callable[..., T], *args: Any) -> Future[T] | None:
    """``fn(*args)`` on one of a few threads that run BM25 searches while their callers embed the
    question; None when all are busy (a loaded server: the caller runs it itself rather than queue)."""
    global _BESIDE
    with _BESIDE_LOCK:
        if _BESIDE is None:
            n = min(4, os.cpu_count() or 1)
            _BESIDE = (ThreadPoolExecutor(n, thread_name_prefix="kvgraph-bm25"), threading.BoundedSemaphore(n))
        pool, free = _BESIDE
    if not free.acquire(blocking=False):
        return None

    def run() -> T:
        try:
            return fn(*args)
        finally:
            free.release()

    return pool.submit(run)


class Hits(Mapping[str, Node]):
    """The nodes of a query's store results by id, each built when first looked up.

    A hybrid query fuses a few hundred hits and returns a handful; building every hit's node
    (reading and decoding its row) cost ~7 ms a query at 100k chunks, more than the searches.
    """

    def __init__(self) -> None:
        self._where: dict[str, tuple[VectorStoreQueryResult, int]] = {}
        self._built: dict[str, Node] = {}

    def add(self, node_id: str, result: VectorStoreQueryResult, position: int) -> None:
        self._where.setdefault(node_id, (result, position))

    def __getitem__(self, node_id: str) -> Node:
        node = self._built.get(node_id)
        if node is None:
            result, position = self._where[node_id]
            node_at = getattr(result, "node_at", None)  # the embedded store's lazy results
            node = node_at(position) if node_at is not None else result.nodes[position]
            self._built[node_id] = node
        return node

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class FusionRetriever:
    """Dense + BM25 over one store, fused per question (see the module docstring).

    ``pool`` chunks are taken from each side (at least ``k``). Results carry the fused score.
    """

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        filters: FilterSpec = None,
        *,
        method: str = "confidence",
        alpha: float = DEFAULT_ALPHA,
        pool: int = DEFAULT_POOL,
        feedback: str = "none",
        feedback_docs: int = 3,
        rocchio_beta: float = 0.3,
        rm3_terms: int = 10,
        rm3_weight: float = 0.3,
        analyzer_name: str | None = None,
    ) -> None:
        if method not in FUSION_METHODS:
            raise InvalidInputError(f"fusion must be one of {', '.join(FUSION_METHODS)}, got {method!r}")
        if feedback not in FEEDBACK:
            raise InvalidInputError(f"query_feedback must be one of {', '.join(FEEDBACK)}, got {feedback!r}")
        _check("alpha", alpha, 0.0, 1.0)
        _check("pool", pool, 1, 10_000, int)
        _check("feedback_docs", feedback_docs, 1, 100, int)
        _check("rocchio_beta", rocchio_beta, 0.0, 10.0)
        _check("rm3_terms", rm3_terms, 1, 100, int)
        _check("rm3_weight", rm3_weight, 0.0, 10.0)
        self.store = store
        self.embedder = embedder
        self.filters = filters
        self.method = method
        self.alpha = float(alpha)
        self.pool = pool
        self.feedback = feedback
        self.feedback_docs = feedback_docs
        self.rocchio_beta = float(rocchio_beta)
        self.rm3_terms = rm3_terms
        self.rm3_weight = float(rm3_weight)
        self.analyzer_name = analyzer_name

    # -- the two lists ----------------------------------------------------------------------

    def _query(self, nodes: Hits, k: int, **query: Any) -> Ranked:
        from kvgraph.store.base import VectorStoreQuery

        res = self.store.query(VectorStoreQuery(similarity_top_k=k, filters=self.filters, **query))
        ids: list[str] = []
        for i, (node_id, score) in enumerate(zip(res.ids, res.similarities)):
            if not np.isfinite(score):
                continue
            nodes.add(node_id, res, i)
            ids.append(node_id)
        return Ranked(ids, [float(s) for s in res.similarities if np.isfinite(s)])

    def _dense(self, vector: np.ndarray, nodes: Hits, k: int) -> Ranked:
        return self._query(nodes, k, query_embedding=vector, mode="dense")

    def _sparse(self, text: str, nodes: Hits, k: int) -> Ranked:
        return self._query(nodes, k, query_str=text, mode="sparse")

    def _fuse(self, query: str, dense: Ranked, sparse: Ranked, nodes: Mapping[str, Node]) -> list[tuple[str, float]]:
        if self.method == "rrf":
            return rrf_fusion([dense, sparse], [self.alpha, 1.0 - self.alpha])
        if self.method == "minmax":
            return minmax_fusion(dense, sparse, self.alpha)
        coverage = query_coverage(query, nodes[sparse.ids[0]].text, self.analyzer_name) if sparse.ids else 0.0
        return confidence_fusion(dense, sparse, coverage, self.alpha)

    # -- feedback ---------------------------------------------------------------------------

    def _rocchio(self, vector: np.ndarray, fused: Sequence[tuple[str, float]]) -> np.ndarray:
        top = [i for i, _ in fused[: self.feedback_docs]]
        found = [n.embedding_array() for n in self.store.get(top) if n is not None]
        vecs = [v for v in found if v is not None and v.shape == vector.shape]
        if not vecs:
            return vector
        moved = vector + self.rocchio_beta * np.mean(np.stack(vecs), axis=0)
        return np.asarray(moved / max(float(np.linalg.norm(moved)), 1e-12), dtype=np.float32)

    def expansion_terms(self, query: str, texts: Sequence[str]) -> list[str]:
        """RM3-style expansion: the most frequent terms of ``texts`` (the first hits) not in ``query``.

        Terms are analyzed (stemmed); numbers and one-letter terms are left out; ties keep the
        order of first occurrence. Frequent-but-everywhere terms are tempered by counting each
        term at most once per text plus its log frequency.
        """
        from kvgraph.store.analyzers import DEFAULT_ANALYZER, analyzer, query_analyzer

        analyze = analyzer(self.analyzer_name or DEFAULT_ANALYZER)
        asked = set(query_analyzer(self.analyzer_name or DEFAULT_ANALYZER)(query))
        weight: dict[str, float] = {}
        for text in texts:
            counts: dict[str, int] = {}
            for term in analyze(text):
                counts[term] = counts.get(term, 0) + 1
            for term, c in counts.items():
                if term in asked or term.isdigit() or len(term) < 2:
                    continue
                weight[term] = weight.get(term, 0.0) + 1.0 + float(np.log(c))
        order = {t: i for i, t in enumerate(weight)}
        return sorted(weight, key=lambda t: (-weight[t], order[t]))[: self.rm3_terms]

    def _rm3(self, query: str, sparse: Ranked, fused: Sequence[tuple[str, float]], nodes: Hits, k: int) -> Ranked:
        texts = [nodes[i].text for i, _ in fused[: self.feedback_docs] if i in nodes]
        terms = self.expansion_terms(query, texts)
        if not terms:
            return sparse
        extra = self._sparse(" ".join(terms), nodes, k)
        total: dict[str, float] = dict(zip(sparse.ids, sparse.scores))
        for i, s in zip(extra.ids, extra.scores):
            total[i] = total.get(i, 0.0) + self.rm3_weight * s
        best = sorted(total.items(), key=lambda kv: -kv[1])[:k]
        return Ranked([i for i, _ in best], [s for _, s in best])

    # -- the retriever ----------------------------------------------------------------------

    def vector(self, query: str) -> np.ndarray:
        """The query's embedding (a hook for query expansion, which may replace it)."""
        return np.asarray(self.embedder.embed([query])[0], dtype=np.float32)

    def _head(self, ranked: Ranked) -> Ranked:
        return Ranked(ranked.ids[: self.pool], ranked.scores[: self.pool])

    def search(self, query: str, vector: np.ndarray | Callable[[], np.ndarray], k: int) -> list[NodeWithScore]:
        """The fused top ``k`` for ``query`` (BM25 side) and ``vector`` (dense side).

        ``vector`` may be a function that embeds the query: the BM25 side, which needs only the
        text, is then searched on another thread while this one embeds (the ONNX run releases
        the GIL and uses one core), instead of after it.

        The first ``pool`` hits of each side are fused on their own, so the first results and
        their scores do not depend on ``k``. Min-max normalisation over a longer list would
        shift every score, and a caller that asks again for more (``RecursiveRetriever``
        does when hits merge into fewer parents) would get another order at the top. When
        ``k`` asks for more than that fusion holds, the rest of the longer lists follows,
        with scores capped at the last score before them.
        """
        nodes = Hits()
        fetch = max(self.pool, k)
        pending = _beside(self._sparse, query, nodes, fetch) if callable(vector) else None
        try:
            qv: np.ndarray = vector() if callable(vector) else vector
        finally:
            if pending is not None:
                sparse = pending.result()  # the BM25 side's error, if any, before the embedder's
        dense = self._dense(qv, nodes, fetch)  # after the join: one thread adds to `nodes` at a time
        if pending is None:
            sparse = self._sparse(query, nodes, fetch)
        fused = self._fuse(query, self._head(dense), self._head(sparse), nodes)
        if self.feedback != "none" and fused:
            if self.feedback == "rocchio":
                dense = self._dense(self._rocchio(qv, fused), nodes, fetch)
            else:
                sparse = self._rm3(query, sparse, fused, nodes, fetch)
            fused = self._fuse(query, self._head(dense), self._head(sparse), nodes)
        if len(fused) < k:
            seen = {i for i, _ in fused}
            floor = fused[-1][1] if fused else float("inf")
            rest = [(i, min(s, floor)) for i, s in self._fuse(query, dense, sparse, nodes) if i not in seen]
            fused = [*fused, *rest]
        return [NodeWithScore(nodes[i], s) for i, s in fused[:k]]

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        return self.search(query, lambda: self.vector(query), k)
