"""Neighbour expansion: give the answerer the chunks next to the ones retrieval found.

A chunk that introduces a topic ("we use the following techniques:") is often what the
embedding ranks high, while the chunk right after it holds the details. Retrieval scores
each chunk alone, so the details can rank far lower (the Llama 2 safety fine-tuning
techniques rank 16th by cosine while the chunks on both sides of them rank 3rd and 4th).
Adding the previous/next chunks of the top hits, first those sandwiched between two hits,
lets the answerer quote the details. Added neighbours inherit a score just below the hit
they came from and are marked ``expanded_from`` so displays can tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kvgraph.schema import NodeWithScore


def _links(node: Any) -> list[str]:
    rel = node.relationships or {}
    out = []
    for key in ("previous", "next"):
        v = rel.get(key)
        if isinstance(v, str):
            out.append(v)
    return out


def expand_neighbors(
    hits: Sequence[NodeWithScore], store: Any, max_extra: int | None = None, seeds: int | None = None
) -> list[NodeWithScore]:
    """``hits`` followed by up to ``max_extra`` (default ``len(hits)``) adjacent chunks not already present.

    Neighbours of ``seeds`` (default: all) top hits are considered; a chunk adjacent to two
    hits comes first, then by the score of the hit it is adjacent to.
    """
    if not hits:
        return []
    max_extra = len(hits) if max_extra is None else max_extra
    have = {h.node.id for h in hits}
    votes: dict[str, list[float]] = {}
    for h in list(hits)[: seeds or len(hits)]:
        for nid in _links(h.node):
            if nid not in have:
                votes.setdefault(nid, []).append(h.score)
    if not votes or max_extra <= 0:
        return list(hits)
    ranked = sorted(votes, key=lambda nid: (-len(votes[nid]), -max(votes[nid])))[:max_extra]
    found = {n.id: n for n in store.get(ranked) if n is not None}
    extra = []
    for nid in ranked:
        node = found.get(nid)
        if node is None:
            continue
        node.embedding = None
        node.metadata = {**node.metadata, "expanded_from_neighbor": True}
        extra.append(NodeWithScore(node, max(votes[nid]) - 1e-3))
    return [*hits, *extra]
