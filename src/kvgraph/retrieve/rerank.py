"""Rerankers: reorder a retriever's candidates, and a retriever that composes the two.

* :class:`MMRReranker` trades relevance for diversity (maximal marginal relevance over
  embeddings), so that five near-identical chunks do not fill the context.
* :class:`CrossEncoderReranker` scores each (query, text) pair with a sentence-transformers
  cross-encoder read from a local directory; nothing is ever downloaded.
* :class:`RerankingRetriever` lets a reranker reorder the first ``fetch_k`` of a base
  retriever's hits; hits past ``fetch_k`` (when ``k`` asks for more) follow in their own order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from kvgraph.errors import InvalidInputError, MissingDependencyError
from kvgraph.retrieve.base import Retriever, check_query
from kvgraph.schema import NodeWithScore

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidate nodes for a query and keeps the best ``k``."""

    def rerank(self, query: str, nodes: Sequence[NodeWithScore], k: int) -> list[NodeWithScore]: ...


def _unit(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    return np.asarray(vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-12))


class MMRReranker:
    """Maximal marginal relevance: each pick maximises ``lambda_ * cos(query, c) - (1 - lambda_) * max cos(c, picked)``.

    ``lambda_ = 1`` is pure relevance, ``0`` pure diversity. Nodes that carry an embedding of
    the embedder's dimension use it; the others are embedded from their text. Results keep
    their incoming scores (and type, e.g. a RetrievedNode's path); only the order changes.
    """

    def __init__(self, embedder: Embedder, lambda_: float = 0.5) -> None:
        if not 0.0 <= lambda_ <= 1.0:
            raise InvalidInputError(f"lambda_ must be between 0 and 1, got {lambda_!r}")
        self.embedder = embedder
        self.lambda_ = lambda_

    def _vectors(self, nodes: Sequence[NodeWithScore]) -> np.ndarray:
        dim = self.embedder.dim
        vecs: list[np.ndarray | None] = []
        for hit in nodes:
            emb = hit.node.embedding_array()
            vecs.append(emb if emb is not None and emb.shape == (dim,) else None)
        missing = [i for i, v in enumerate(vecs) if v is None]
        if missing:
            embedded = self.embedder.embed([nodes[i].node.text for i in missing])
            for i, vec in zip(missing, embedded):
                vecs[i] = vec
        return _unit(np.stack([v for v in vecs if v is not None]))

    def rerank(self, query: str, nodes: Sequence[NodeWithScore], k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        if not nodes:
            return []
        from kvgraph.store.mmr import mmr  # here: importing kvgraph.store loads the whole store

        qv = _unit(self.embedder.embed([query])[0])
        order = mmr(qv, self._vectors(nodes), k, self.lambda_)
        return [nodes[int(i)] for i in order]


class CrossEncoderReranker:
    """Scores (query, node text) pairs with a local sentence-transformers CrossEncoder.

    ``model_path`` must be a model directory on disk (``config.json`` and weights); a hub
    name is refused rather than downloaded. The result's ``score`` is the cross-encoder
    score (a logit or probability, as the model defines it).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        batch_size: int = 32,
        device: str | None = None,
        max_length: int | None = None,
    ) -> None:
        path = Path(model_path).expanduser()
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InvalidInputError(
                f"{model_path}: not a local cross-encoder model directory (needs config.json and weights); "
                "kvgraph never downloads models, so pass the path of one on disk"
            )
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as e:
            raise MissingDependencyError("sentence-transformers (for CrossEncoderReranker)", "local") from e
        self.model_path = path
        self.batch_size = batch_size
        self.model: Any = CrossEncoder(str(path), device=device, local_files_only=True, max_length=max_length)

    def rerank(self, query: str, nodes: Sequence[NodeWithScore], k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        if not nodes:
            return []
        pairs = [(query, hit.node.text) for hit in nodes]
        scores = np.asarray(
            self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), dtype=np.float64
        ).reshape(len(nodes), -1)[:, -1]  # a two-label model: the last column is "relevant"
        order = np.argsort(-scores, kind="stable")[:k]
        return [replace(nodes[int(i)], score=float(scores[int(i)])) for i in order]


DEFAULT_FETCH_K = 20  # hits a reranker reorders unless it has its own depth (tokens: 5)


class RerankingRetriever:
    """``reranker`` reorders the first ``fetch_k`` of ``base``'s hits and keeps the best ``k``.

    When ``k`` is larger than ``fetch_k`` the hits past ``fetch_k`` follow the reordered ones in
    the first stage's order: a reranker that only looks at the first five (``tokens``) cannot push
    the sixth hit out of a top ten. Their scores are shifted down, where needed, to stay below the
    last reranked one, so that a reranker whose scores fall with its ranks (tokens, sentences,
    cross-encoder) keeps score order and rank order the same: neighbour expansion and the
    extractive answerer read ranks from scores.
    """

    def __init__(self, base: Retriever, reranker: Reranker, fetch_k: int = DEFAULT_FETCH_K) -> None:
        if isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1:
            raise InvalidInputError(f"fetch_k must be a positive integer, got {fetch_k!r}")
        self.base = base
        self.reranker = reranker
        self.fetch_k = fetch_k

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        hits = self.base.retrieve(query, max(self.fetch_k, k))
        head = self.reranker.rerank(query, hits[: self.fetch_k], min(k, self.fetch_k))
        tail = hits[self.fetch_k : k]
        if head and tail and tail[0].score >= head[-1].score:
            shift = tail[0].score - head[-1].score + 1e-6
            tail = [replace(h, score=h.score - shift) for h in tail]
        return head + tail
