"""What the offline rerankers (``sentences``, ``tokens``) share: arrays kept per candidate chunk
across queries, and the min-max scaling they mix the first stage's score with."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

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


class ChunkArrays:
    """One array per chunk id, made by ``compute`` (for the chunks it lacks, in one call) and kept
    for the ``capacity`` most recently asked-for chunks."""

    def __init__(self, compute: Callable[[list[Node]], Sequence[np.ndarray]], capacity: int) -> None:
        self.compute = compute
        self.capacity = capacity
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def get(self, hits: Sequence[NodeWithScore]) -> list[np.ndarray]:
        """The arrays of ``hits``' chunks, in order."""
        todo = list({h.node.id: h.node for h in hits if h.node.id not in self._arrays}.values())
        if todo:
            for node, array in zip(todo, self.compute(todo)):
                self._arrays[node.id] = array
        out = []
        for h in hits:
            self._arrays.move_to_end(h.node.id)
            out.append(self._arrays[h.node.id])
        while len(self._arrays) > self.capacity:
            self._arrays.popitem(last=False)
        return out
