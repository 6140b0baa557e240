"""An offline second stage: late interaction over the embedder's token vectors.

A chunk's single (mean-pooled) vector blurs the words a question asks about. :class:`TokenReranker`
compares the question's token vectors with each candidate's (the local model's last layer, the
same model that embeds the knowledge base; no other weights): each question token takes its best
match among the chunk's tokens and the matches are averaged (MaxSim, as ColBERT scores, here with
a model that was not trained for it). Candidates are ordered by
``(1 - weight) * minmax(first-stage score) + weight * minmax(MaxSim)``, and that mix is reported
on the span of the candidates' first-stage scores (:func:`~kvgraph.retrieve.per_chunk.reordered`),
so a score reads as the first stage's do.

It is the default second stage (``rerank = "auto"`` with the local model) over the first
:data:`FETCH_K` = 5 hits of a dense or hybrid search. Reordering only the first five keeps every
question's top five as the first stage found it, and it is where the reranker helps: measured on
the dev sets (docs/eval.md, "Reranking by token vectors"), SQuAD hit@1 +3.3 points [+2.4, +4.2],
Llama 2 MRR@10 +0.037 [+0.007, +0.068] with hit@5 unchanged, HotpotQA R@2 -2.5 [-5.5, 0.0] (a
multi-hop question's second passage shares few words with it; graph mode, which multi-hop
questions should use, does not rerank). Over the first 20 it also moved answering chunks out of
the top five (Llama 2 hit@5 -1.4, HotpotQA R@5 -2.0). ``weight`` 0.5 is the one 5-fold CV chose on
SQuAD.

It runs the model over each candidate the first time it is one (5 chunks of ~250 tokens take
about 40 ms on two cores, the question a few ms); the token vectors are kept in memory, as
float16, for the ``cache_chunks`` most recent candidates (~190 KB for a full 254-token chunk, so
the default 256 hold at most ~50 MB per open knowledge base).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.retrieve.base import check_query
from kvgraph.retrieve.per_chunk import ChunkArrays, check_weight, min_max, reordered
from kvgraph.schema import Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder

__all__ = ["FETCH_K", "TokenReranker", "maxsim", "mix"]

FETCH_K = 5  # how many of the first stage's hits it reorders when rerank_fetch_k is 0 (the default)


def maxsim(query: np.ndarray, chunk: np.ndarray) -> float:
    """The mean over the query's token vectors of their best cosine among the chunk's (unit rows)."""
    if not len(query) or not len(chunk):
        return 0.0
    return float((query @ chunk.T.astype(np.float32)).max(axis=1).mean())


def mix(first: np.ndarray, sims: np.ndarray, weight: float) -> np.ndarray:
    """The order of the candidates (0..1): ``(1 - weight) * min_max(first) + weight * min_max(sims)``."""
    return (1.0 - weight) * min_max(first) + weight * min_max(sims)


class TokenReranker:
    """Reorders candidates by ``(1 - weight)`` * first stage + ``weight`` * MaxSim (see above).

    ``text_of`` gives the text whose tokens stand for a chunk (default: its own text; the
    knowledge base passes the text it embedded, with the chunk's title and headings).
    """

    def __init__(
        self,
        embedder: Embedder,
        weight: float = 0.5,
        cache_chunks: int = 256,
        text_of: Callable[[Node], str] | None = None,
    ) -> None:
        vectors = getattr(embedder, "token_vectors", None)
        if not callable(vectors):
            raise InvalidInputError(
                f"rerank = tokens needs the token vectors of a local ONNX embedder; {type(embedder).__name__} has none"
            )
        self._token_vectors: Callable[[Sequence[str]], list[np.ndarray]] = vectors
        self.weight = check_weight(weight)
        self.cache_chunks = cache_chunks
        self.text_of = text_of or (lambda node: node.text)
        self._chunks = ChunkArrays(self._chunk_tokens, cache_chunks, key=lambda n: f"{n.id}:{hash(self.text_of(n))}")

    def _chunk_tokens(self, nodes: list[Node]) -> list[np.ndarray]:
        return [v.astype(np.float16) for v in self._token_vectors([self.text_of(n) for n in nodes])]

    def rerank(self, query: str, nodes: Sequence[NodeWithScore], k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        if not nodes:
            return []
        q = self._token_vectors([query])[0]
        sims = np.array([maxsim(q, c) for c in self._chunks.get(nodes)])
        first = np.array([h.score for h in nodes], dtype=np.float64)
        return reordered(nodes, mix(first, sims, self.weight), k)
