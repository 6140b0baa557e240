"""Recursive retrieval: search small nodes, return the nodes they refer to.

Small nodes (128-token child chunks, a summary, questions) match a query more sharply
than a 1024-token chunk, and a 1024-token chunk does not even fit the default embedder's
256-token window; but the answerer wants the big chunk's context. So the index holds
*references*: a node whose relationship ``ref`` names another node id stands for that
node. :class:`RecursiveRetriever` asks its base retriever for ``k * fetch_factor``
small nodes, follows references (to any depth: a question may refer to a child which
refers to its parent), and returns the final targets, each once, with the best score
of the hits that led to it.

Following stops at the last node that resolves: at a node without a reference, at a
reference to an id that is not in the store (deleted, or never added), at a reference
back to a node already on the path (a cycle), or after ``max_depth`` steps. All nodes
one step further are fetched with one ``store.get`` call per step, whatever the number
of hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvgraph.errors import InvalidInputError
from kvgraph.retrieve.base import RetrievedNode, Retriever, check_query
from kvgraph.schema import Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.store.base import VectorStore

REF = "ref"


@dataclass
class _Chain:
    """One base hit being followed: where it is now and how it got there."""

    hit: NodeWithScore
    node: Node
    path: list[str]
    done: bool = False


def _next_id(node: Node, follow: Sequence[str]) -> str | None:
    """The first single-id relationship of ``follow`` that ``node`` has (lists are not followed)."""
    for key in follow:
        target = node.relationships.get(key)
        if isinstance(target, str) and target:
            return target
    return None


class RecursiveRetriever:
    """Retrieve with ``base``, then follow ``follow`` relationships to the nodes they name.

    ``follow`` lists relationship keys in order of preference; the first one a node has
    is followed. Results are :class:`RetrievedNode` (a ``NodeWithScore`` with ``path`` and
    ``hit``), at most ``k``, best score first; ties keep the base retriever's order.
    Nodes returned from a reference carry no embedding, like query results. When the
    ``k * fetch_factor`` hits merge into fewer than ``k`` results, the base is asked again
    for twice as many, up to ``refetch_rounds`` times.
    """

    def __init__(
        self,
        base: Retriever,
        store: VectorStore,
        follow: Sequence[str] = (REF,),
        max_depth: int = 8,
        fetch_factor: int = 3,
        refetch_rounds: int = 3,
    ) -> None:
        if isinstance(follow, str):  # a common slip: ("ref") is a string, not a tuple
            follow = (follow,)
        if not follow or not all(isinstance(key, str) and key for key in follow):
            raise InvalidInputError(f"follow must name at least one relationship key, got {follow!r}")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
            raise InvalidInputError(f"max_depth must be an int >= 0, got {max_depth!r}")
        if isinstance(fetch_factor, bool) or not isinstance(fetch_factor, int) or fetch_factor < 1:
            raise InvalidInputError(f"fetch_factor must be an int >= 1, got {fetch_factor!r}")
        if isinstance(refetch_rounds, bool) or not isinstance(refetch_rounds, int) or refetch_rounds < 0:
            raise InvalidInputError(f"refetch_rounds must be an int >= 0, got {refetch_rounds!r}")
        self.base = base
        self.store = store
        self.follow = tuple(follow)
        self.max_depth = max_depth
        self.fetch_factor = fetch_factor
        self.refetch_rounds = refetch_rounds

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        fetch = k * self.fetch_factor
        fetched: dict[str, Node | None] = {}
        for _ in range(self.refetch_rounds + 1):
            hits = self.base.retrieve(query, fetch)
            results = self.resolve(hits, fetched)
            # Many hits can lead to one parent (a 1024-token parent has ~14 children): when the
            # hits merged into fewer than k results and the base has more, ask it for twice as many.
            if len(results) >= k or len(hits) < fetch:
                break
            fetch *= 2
        return list(results[:k])

    def resolve(
        self, hits: Sequence[NodeWithScore], fetched: dict[str, Node | None] | None = None
    ) -> list[RetrievedNode]:
        """Follow the references of ``hits`` and merge hits that reach the same node (all of them, best first).

        ``fetched`` caches store lookups (id -> node or None) between calls.
        """
        chains = [_Chain(hit, hit.node, [hit.node.id]) for hit in hits]
        fetched = {} if fetched is None else fetched  # ids looked up so far; shared targets are fetched once
        for _ in range(self.max_depth):
            wanted: dict[str, None] = {}  # ordered set of ids this step needs
            for chain in chains:
                if chain.done:
                    continue
                target = _next_id(chain.node, self.follow)
                # A node without a reference, or a reference back onto its own path, ends here.
                if target is None or target in chain.path:
                    chain.done = True
                elif target not in fetched:
                    wanted[target] = None
            if wanted:
                ids = list(wanted)
                fetched.update(zip(ids, self.store.get(ids)))
            active = False
            for chain in chains:
                if chain.done:
                    continue
                target = _next_id(chain.node, self.follow)
                node = fetched.get(target) if target is not None else None
                if node is None:  # dangling reference: stay at the last node that resolved
                    chain.done = True
                    continue
                chain.node = node
                chain.path.append(node.id)
                active = True
            if not active:
                break
        return self._merge(chains)

    @staticmethod
    def _merge(chains: Sequence[_Chain]) -> list[RetrievedNode]:
        best: dict[str, tuple[int, _Chain]] = {}
        for order, chain in enumerate(chains):
            seen = best.get(chain.node.id)
            if seen is None or chain.hit.score > seen[1].hit.score:
                # Keep the first appearance's position so ties keep the base order.
                best[chain.node.id] = (order if seen is None else seen[0], chain)
        ranked = sorted(best.values(), key=lambda item: (-item[1].hit.score, item[0]))
        out: list[RetrievedNode] = []
        for _, chain in ranked:
            node = chain.node
            if len(chain.path) > 1:
                # store.get returns embeddings; results elsewhere carry none (and they are large).
                node.embedding = None
            out.append(RetrievedNode(node, chain.hit.score, list(chain.path), chain.hit.node))
        return out
