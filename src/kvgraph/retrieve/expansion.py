"""Query expansion with an LLM: HyDE and multi-query, each on top of :class:`FusionRetriever`.

* ``hyde`` (hypothetical document embeddings): the LLM writes a short passage that would answer
  the question; the dense side searches with the mean of the question's and the passage's
  vectors (the passage speaks the documents' language, the question keeps its intent), while
  BM25 keeps the question's own words.
* ``multi``: the LLM rewrites the question ``n_queries`` ways; the question and each rewrite
  are searched, and the lists are fused by reciprocal ranks (the question counts double).

Both cost one LLM call per search and need ``llm_base_url``; without an LLM there is no
offline fallback here on purpose (the knowledge base refuses the setting with a clear error).
An LLM failure is not hidden: it raises the client's error.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.retrieve.base import check_query
from kvgraph.retrieve.fusion import FusionRetriever, Ranked, rrf_fusion
from kvgraph.schema import Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.llm.base import LLM

__all__ = ["EXPANSIONS", "ExpandedRetriever", "hyde_prompt", "parse_rewrites", "rewrite_prompt"]

EXPANSIONS = ("none", "hyde", "multi")
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def hyde_prompt(question: str) -> str:
    return (
        "Write a short passage (3-5 sentences) from a document that answers the question below. "
        "Write only the passage, in the document's style, without saying you are guessing.\n\n"
        f"Question: {question}"
    )


def rewrite_prompt(question: str, n: int) -> str:
    return (
        f"Rewrite the search question below in {n} different ways that a document answering it might use "
        "(other words, the technical terms, a more specific or more general form). "
        f"Answer with exactly {n} lines, one rewrite per line, nothing else.\n\nQuestion: {question}"
    )


def parse_rewrites(reply: str, question: str, n: int) -> list[str]:
    """Up to ``n`` distinct non-empty lines of ``reply`` (list marks removed), the question itself left out."""
    out: list[str] = []
    seen = {question.strip().lower()}
    for line in reply.splitlines():
        text = _LIST_MARK.sub("", line).strip().strip('"').strip()
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
        if len(out) == n:
            break
    return out


class ExpandedRetriever:
    """``base`` searched with the help of ``llm`` (``mode`` hyde or multi; see the module docstring)."""

    def __init__(self, base: FusionRetriever, llm: LLM, mode: str = "hyde", n_queries: int = 3) -> None:
        if mode not in ("hyde", "multi"):
            raise InvalidInputError(f"query_expansion must be hyde or multi here, got {mode!r}")
        if isinstance(n_queries, bool) or not isinstance(n_queries, int) or not 1 <= n_queries <= 10:
            raise InvalidInputError(f"n_queries must be an int between 1 and 10, got {n_queries!r}")
        self.base = base
        self.llm = llm
        self.mode = mode
        self.n_queries = n_queries
        self.last_expansion: list[str] = []  # what the LLM wrote for the last query (for displays and tests)

    def _ask(self, prompt: str) -> str:
        from kvgraph.llm.base import ChatMessage

        return self.llm.complete([ChatMessage("user", prompt)], temperature=0.0, max_tokens=300)

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        if self.mode == "hyde":
            passage = self._ask(hyde_prompt(query)).strip()
            self.last_expansion = [passage] if passage else []
            vector = self.base.vector(query)
            if passage:
                both = vector + self.base.vector(passage)
                vector = np.asarray(both / max(float(np.linalg.norm(both)), 1e-12), dtype=np.float32)
            return self.base.search(query, vector, k)
        rewrites = parse_rewrites(self._ask(rewrite_prompt(query, self.n_queries)), query, self.n_queries)
        self.last_expansion = rewrites
        depth = max(self.base.pool, k)
        nodes: dict[str, Node] = {}
        lists: list[Ranked] = []
        for text in [query, *rewrites]:
            hits = self.base.search(text, self.base.vector(text), depth)
            for h in hits:
                nodes.setdefault(h.node.id, h.node)
            lists.append(Ranked([h.node.id for h in hits], [h.score for h in hits]))
        fused = rrf_fusion(lists, [2.0] + [1.0] * len(rewrites))
        return [NodeWithScore(nodes[i], s) for i, s in fused[:k]]
