"""Retrieval metrics at a cutoff k, over ranked passage-id lists: pure functions.

Conventions shared by every metric:

- ``ranked`` is a retriever's output, best first. Duplicate ids count once, at their best rank, and
  are removed *before* cutting at k, so "top k" means the first k distinct ids. (A chunk-level
  retriever mapped to passages returns the same passage several times; it should not be rewarded
  twice, nor lose its k slots to repeats.)
- ``relevant`` is the set of *all* gold ids (binary relevance); its order does not matter.
- An empty ``ranked`` list, or an empty ``relevant`` set, scores 0.0; nothing raises on them.
- ``k`` must be >= 1.

Definitions, with ``top = first k distinct ids of ranked`` and ``R = relevant``:

- hit rate@k: 1.0 if any id of ``top`` is in ``R``, else 0.0.
- reciprocal rank@k: ``1 / rank`` of the first relevant id in ``top`` (ranks start at 1), else 0.0;
  its mean over queries is MRR@k.
- recall@k: ``|top ∩ R| / |R|``, the fraction of *all* gold found. This is the multi-hop papers'
  passage recall (HippoRAG, IRCoT): a 2-hop question with one of its two passages found scores 0.5.
- precision@k: ``|top ∩ R| / k``. The denominator stays k when fewer than k ids were returned, so a
  retriever is not rewarded for returning less.
- nDCG@k: ``DCG / IDCG`` with ``DCG = sum over ranks i of top holding a relevant id of 1 / log2(i + 1)``
  and ``IDCG`` the DCG of an ideal ranking (``min(|R|, k)`` relevant ids at ranks 1, 2, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import EvalDataset

Metric = Callable[[Iterable[str], Collection[str], int], float]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")


def top_k(ranked: Iterable[str], k: int) -> list[str]:
    """The first ``k`` distinct ids of ``ranked``, in order (a repeated id keeps its best rank)."""
    _check_k(k)
    seen: set[str] = set()
    out: list[str] = []
    for pid in ranked:
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
            if len(out) == k:
                break
    return out


def _hits(ranked: Iterable[str], relevant: Collection[str], k: int) -> list[bool]:
    """For each rank of the top k (distinct ids), whether the id there is relevant."""
    gold = relevant if isinstance(relevant, set | frozenset) else set(relevant)
    return [pid in gold for pid in top_k(ranked, k)]


def _n_gold(relevant: Collection[str]) -> int:
    return len(relevant) if isinstance(relevant, set | frozenset) else len(set(relevant))


def hit_rate(ranked: Iterable[str], relevant: Collection[str], k: int) -> float:
    """1.0 if any of the first ``k`` distinct ranked ids is relevant, else 0.0."""
    return 1.0 if any(_hits(ranked, relevant, k)) else 0.0


def reciprocal_rank(ranked: Iterable[str], relevant: Collection[str], k: int) -> float:
    """``1 / rank`` of the first relevant id within the top ``k`` (1-based), else 0.0. Mean over queries = MRR@k."""
    for rank, hit in enumerate(_hits(ranked, relevant, k), 1):
        if hit:
            return 1.0 / rank
    return 0.0


def recall(ranked: Iterable[str], relevant: Collection[str], k: int) -> float:
    """Fraction of *all* gold ids found in the top ``k``: ``|top ∩ R| / |R|`` (0.0 when ``R`` is empty)."""
    n = _n_gold(relevant)
    return sum(_hits(ranked, relevant, k)) / n if n else 0.0


def precision(ranked: Iterable[str], relevant: Collection[str], k: int) -> float:
    """Fraction of the ``k`` slots holding a gold id: ``|top ∩ R| / k`` (k even if fewer were returned)."""
    return sum(_hits(ranked, relevant, k)) / k


def ndcg(ranked: Iterable[str], relevant: Collection[str], k: int) -> float:
    """Binary-relevance nDCG@k with a log2 discount: ``sum(1/log2(rank+1) over hits) / ideal`` (0.0 if no gold)."""
    hits = _hits(ranked, relevant, k)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(_n_gold(relevant), k) + 1))
    if ideal == 0.0:
        return 0.0
    return sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(hits, 1) if hit) / ideal


METRICS: dict[str, Metric] = {
    "hit_rate": hit_rate,
    "mrr": reciprocal_rank,
    "recall": recall,
    "precision": precision,
    "ndcg": ndcg,
}
"""Metric name (the prefix of ``"name@k"`` report keys) -> function."""


@dataclass
class QueryRow:
    """One query's outcome: the ranked ids as given, its gold ids, and ``{"recall@5": 0.5, ...}``."""

    qid: str
    ranked: list[str]
    relevant: list[str]
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"qid": self.qid, "ranked": list(self.ranked), "relevant": list(self.relevant), **self.scores}


@dataclass
class RetrievalReport:
    """Per-query rows and their means, for every metric of :data:`METRICS` at every k.

    ``means`` maps ``"metric@k"`` to the mean over ``rows``. Queries of the gold without results are
    scored 0 and listed in ``missing_results``; results for ids not in the gold are ignored and listed in
    ``extra_results``; gold queries with no relevant ids are left out of the means (they cannot score)
    and listed in ``skipped_no_gold``.
    """

    ks: tuple[int, ...]
    rows: list[QueryRow]
    means: dict[str, float]
    missing_results: list[str] = field(default_factory=list)
    extra_results: list[str] = field(default_factory=list)
    skipped_no_gold: list[str] = field(default_factory=list)

    @property
    def n_queries(self) -> int:
        return len(self.rows)

    def column(self, key: str) -> np.ndarray:
        """Per-query values of one ``"metric@k"`` as a float64 array, in row order."""
        if key not in self.means:
            raise InvalidInputError(f"unknown metric {key!r}; have {', '.join(self.means)}")
        return np.fromiter((row.scores[key] for row in self.rows), dtype=np.float64, count=len(self.rows))

    def subset(self, qids: Collection[str]) -> RetrievalReport:
        """The report restricted to the rows of ``qids`` (means recomputed; e.g. the paraphrased questions)."""
        wanted = set(qids)
        rows = [row for row in self.rows if row.qid in wanted]
        if not rows:
            raise InvalidInputError("none of the given query ids is in this report")
        keys = list(self.means)
        means = {key: float(np.mean([row.scores[key] for row in rows])) for key in keys}
        return RetrievalReport(ks=self.ks, rows=rows, means=means)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ks, counts, means, the id lists above, and one dict per row."""
        return {
            "ks": list(self.ks),
            "n_queries": self.n_queries,
            "means": dict(self.means),
            "missing_results": list(self.missing_results),
            "extra_results": list(self.extra_results),
            "skipped_no_gold": list(self.skipped_no_gold),
            "rows": [row.to_dict() for row in self.rows],
        }


def evaluate_retrieval(
    results: Mapping[str, Sequence[str]],
    dataset_or_gold: EvalDataset | Mapping[str, Collection[str]],
    ks: Iterable[int] = (1, 5, 10),
) -> RetrievalReport:
    """Score ranked results (query id -> passage ids, best first) against gold passage ids.

    ``dataset_or_gold`` is an :class:`~kvgraph.eval.datasets.EvalDataset` or a mapping query id ->
    gold ids. Every gold query with at least one relevant id is evaluated, in gold order; one with no
    results (absent or empty) scores 0 everywhere. See the module docstring for the definitions.
    """
    ks_sorted = tuple(sorted(set(ks)))
    if not ks_sorted:
        raise InvalidInputError("ks must name at least one cutoff")
    for k in ks_sorted:
        _check_k(k)
    gold = dataset_or_gold.gold() if isinstance(dataset_or_gold, EvalDataset) else dataset_or_gold

    rows: list[QueryRow] = []
    missing: list[str] = []
    skipped: list[str] = []
    for qid, relevant in gold.items():
        if isinstance(relevant, str):  # a bare id would otherwise be read as a set of characters
            raise InvalidInputError(
                f"gold for query {qid!r} should be a collection of ids, not the string {relevant!r}"
            )
        gold_set = set(relevant)
        if not gold_set:
            skipped.append(qid)
            continue
        ranked = list(results.get(qid) or [])
        if not ranked:
            missing.append(qid)
        scores = {f"{name}@{k}": fn(ranked, gold_set, k) for name, fn in METRICS.items() for k in ks_sorted}
        rows.append(QueryRow(qid=qid, ranked=ranked, relevant=list(dict.fromkeys(relevant)), scores=scores))
    if not rows:
        raise InvalidInputError("no query has gold passages: nothing to evaluate")
    keys = [f"{name}@{k}" for name in METRICS for k in ks_sorted]
    table = np.array([[row.scores[key] for key in keys] for row in rows], dtype=np.float64)
    means = {key: float(m) for key, m in zip(keys, table.mean(axis=0))}
    extra = [qid for qid in results if qid not in gold]
    return RetrievalReport(
        ks=ks_sorted, rows=rows, means=means, missing_results=missing, extra_results=extra, skipped_no_gold=skipped
    )
