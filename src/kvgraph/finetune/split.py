"""Train/test splits that cannot leak: no question (up to normalisation) on both sides, and by default no document.

Pairs are first joined into groups that must stay together: pairs with the same normalised
question (:func:`~kvgraph.finetune.pairs.normalize_query`: case, accents, punctuation and
spacing ignored) always, and with ``by="document"`` also pairs from the same source document.
Whole groups are then dealt to the test side in a seeded random order until it holds
``test_ratio`` of the pairs. :func:`leaks` checks a split after the fact.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.finetune.pairs import TrainingPair, normalize_query, pair_stats

SPLIT_MODES = ("document", "shuffle")


@dataclass
class Split:
    train: list[TrainingPair]
    test: list[TrainingPair]
    by: str
    seed: int

    def stats(self) -> dict[str, Any]:
        """Counts per side, and what :func:`leaks` finds (always zero for a split made here)."""
        return {
            "by": self.by,
            "seed": self.seed,
            "train": pair_stats(self.train),
            "test": pair_stats(self.test),
            "leaks": {k: len(v) for k, v in leaks(self.train, self.test).items()},
        }


class _Groups:
    """Union-find over pair indexes."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def split_pairs(pairs: Sequence[TrainingPair], test_ratio: float = 0.3, by: str = "document", seed: int = 0) -> Split:
    """Split ``pairs`` into train and test (``test_ratio`` of the pairs, as near as whole groups allow)."""
    if by not in SPLIT_MODES:
        raise InvalidInputError(f"split mode must be one of {', '.join(SPLIT_MODES)}, got {by!r}")
    if not 0.0 < test_ratio < 1.0:
        raise InvalidInputError(f"test ratio must be between 0 and 1 (exclusive), got {test_ratio}")
    n = len(pairs)
    groups = _Groups(n)
    first: dict[tuple[str, str], int] = {}
    for i, pair in enumerate(pairs):
        keys = [("q", normalize_query(pair.query))]
        if by == "document" and pair.doc_id:
            keys.append(("d", pair.doc_id))
        for key in keys:
            if key in first:
                groups.union(first[key], i)
            else:
                first[key] = i
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(groups.find(i), []).append(i)
    order = sorted(members)  # deterministic before the seeded shuffle
    random.Random(seed).shuffle(order)
    want = max(1, round(test_ratio * n))
    limit = math.ceil(1.25 * want)  # a group that would overshoot this is left for a smaller one
    test_idx: set[int] = set()
    for root in order:
        if len(test_idx) >= want:
            break
        group = members[root]
        if len(test_idx) + len(group) <= limit:
            test_idx.update(group)
    if not test_idx and len(members) > 1:  # every group is too big: the smallest one is the test side
        test_idx.update(members[min(order, key=lambda r: len(members[r]))])
    train = [p for i, p in enumerate(pairs) if i not in test_idx]
    test = [p for i, p in enumerate(pairs) if i in test_idx]
    return Split(train, test, by, seed)


def leaks(train: Sequence[TrainingPair], test: Sequence[TrainingPair]) -> dict[str, set[str]]:
    """What the two sides share: normalised questions, and documents (empty sets when nothing leaks)."""
    train_q = {normalize_query(p.query) for p in train}
    test_q = {normalize_query(p.query) for p in test}
    train_d = {p.doc_id for p in train if p.doc_id}
    test_d = {p.doc_id for p in test if p.doc_id}
    return {"questions": train_q & test_q, "documents": train_d & test_d}
