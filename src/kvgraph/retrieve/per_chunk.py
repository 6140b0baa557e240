"""What the offline rerankers (``sentences``, ``tokens``) share: arrays kept per candidate chunk
across queries, and the min-max scaling they mix the first stage's score with."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Node, NodeWithScore


def check_weight(weight: object) -> float:
    """A mixing weight in 0..1 as a float; InvalidInputError otherwise."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise InvalidInputError(f"weight must be between 0 and 1, got {weight!r}")
    return float(weight)


def min_max(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to 0..1 (all ones when its values are equal)."""
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 1e-12 else np.ones_like(x)


def reordered(nodes: Sequence[NodeWithScore], mixed: np.ndarray, k: int) -> list[NodeWithScore]:
    """The best ``k`` of ``nodes`` by ``mixed`` (0..1, ties in their order), each score reported on
    the span of the first stage's scores: a score still reads as the first stage's do (a hybrid
    search's 0.89 stays comparable with ``rerank = "none"``, rather than every first hit reading 1.0)."""
    first = np.array([h.score for h in nodes], dtype=np.float64)
    low = float(first.min()) if len(first) else 0.0
    shown = low + mixed * (float(first.max()) - low) if len(first) else mixed
    order = np.argsort(-mixed, kind="stable")[:k]
    return [replace(nodes[int(i)], score=float(shown[int(i)])) for i in order]


class ChunkArrays:
    """One array per chunk, made by ``compute`` (for the chunks it lacks, in one call) and kept
    for the ``capacity`` most recently asked-for chunks.

    A chunk is known by ``key`` (default: its id). The knowledge base keeps one reranker for many
    questions, so a reranker whose arrays depend on more than the chunk's own text (its title and
    headings) passes a key that includes what they depend on.
    """

    def __init__(
        self,
        compute: Callable[[list[Node]], Sequence[np.ndarray]],
        capacity: int,
        key: Callable[[Node], str] | None = None,
    ) -> None:
        self.compute = compute
        self.capacity = capacity
        self.key = key or (lambda node: node.id)
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def get(self, hits: Sequence[NodeWithScore]) -> list[np.ndarray]:
        """The arrays of ``hits``' chunks, in order. Safe from several threads sharing one knowledge
        base handle: the model runs outside the lock, and a chunk two questions compute at once is kept once."""
        keys = [self.key(h.node) for h in hits]
        with self._lock:
            todo = list({k: h.node for k, h in zip(keys, hits) if k not in self._arrays}.items())
        made = dict(zip([k for k, _ in todo], self.compute([n for _, n in todo]))) if todo else {}
        with self._lock:
            for k, array in made.items():
                self._arrays.setdefault(k, array)
            out = []
            for k, h in zip(keys, hits):
                kept = self._arrays.get(k)
                if kept is None:  # evicted by another thread between the two locks
                    kept = made[k] if k in made else self.compute([h.node])[0]
                    self._arrays[k] = kept
                self._arrays.move_to_end(k)
                out.append(kept)
            while len(self._arrays) > self.capacity:
                self._arrays.popitem(last=False)
        return out
