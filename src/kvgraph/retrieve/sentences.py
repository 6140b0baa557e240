"""An offline second stage: rerank candidates by their best-matching sentence.

A 254-token chunk's single vector averages everything in it, so a chunk whose one sentence
answers the question can rank below a chunk that is vaguely about the topic throughout.
:class:`SentenceReranker` embeds each candidate's sentences (with the local model, no
cross-encoder weights needed) and orders candidates by
``weight * minmax(first-stage score) + (1 - weight) * minmax(max cosine(question, sentence))``,
reported on the span of their first-stage scores.

It costs one embedding per sentence of the candidates (about ten per chunk) the first time a
chunk is a candidate; the vectors are kept in memory for later queries (up to ``cache_chunks``
chunks) and go through the knowledge base's embedding cache when it is writable. On the dev
sets it helps single-document questions at hit@1 and hurts multi-hop recall (docs/eval.md),
so it is a setting (``rerank = "sentences"``), not a default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kvgraph.retrieve.base import check_query
from kvgraph.retrieve.per_chunk import ChunkArrays, check_weight, min_max, reordered
from kvgraph.schema import Node, NodeWithScore
from kvgraph.text import split_sentences

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder

__all__ = ["SentenceReranker", "chunk_sentences"]

MIN_WORDS = 4  # shorter "sentences" (a table cell, a heading) say too little to match on


def chunk_sentences(text: str) -> list[str]:
    """The sentences of ``text`` worth matching (at least MIN_WORDS words); the whole text if none is."""
    found = [text[a:b].strip() for a, b in split_sentences(text)]
    return [s for s in found if len(s.split()) >= MIN_WORDS] or [text]


class SentenceReranker:
    """Reorders candidates by ``weight`` * first stage + (1 - ``weight``) * best sentence (see above)."""

    def __init__(self, embedder: Embedder, weight: float = 0.7, cache_chunks: int = 10_000) -> None:
        self.embedder = embedder
        self.weight = check_weight(weight)
        self.cache_chunks = cache_chunks
        # keyed by the text too: the knowledge base keeps this reranker while nodes are replaced under their ids
        self._vectors = ChunkArrays(self._sentence_vectors, cache_chunks, key=lambda n: f"{n.id}:{hash(n.text)}")

    def _sentence_vectors(self, nodes: list[Node]) -> list[np.ndarray]:
        parts = [chunk_sentences(n.text) for n in nodes]
        vecs = np.asarray(self.embedder.embed([s for p in parts for s in p]), dtype=np.float32)
        out, at = [], 0
        for p in parts:
            v = vecs[at : at + len(p)]
            at += len(p)
            out.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
        return out

    def rerank(self, query: str, nodes: Sequence[NodeWithScore], k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        if not nodes:
            return []
        q = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        best = np.array([float((v @ q).max()) for v in self._vectors.get(nodes)])
        first = np.array([h.score for h in nodes], dtype=np.float64)
        return reordered(nodes, self.weight * min_max(first) + (1.0 - self.weight) * min_max(best), k)
