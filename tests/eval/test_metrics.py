"""Retrieval metrics against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import EvalDataset, Passage, Query
from kvgraph.eval.metrics import (
    METRICS,
    evaluate_retrieval,
    hit_rate,
    ndcg,
    precision,
    recall,
    reciprocal_rank,
    top_k,
)

RANKED = ["a", "b", "c", "d", "e"]
GOLD = {"a", "c"}  # relevant at ranks 1 and 3


def test_hit_rate_at_several_k() -> None:
    assert hit_rate(["x", "y", "a"], {"a"}, 1) == 0.0
    assert hit_rate(["x", "y", "a"], {"a"}, 2) == 0.0
    assert hit_rate(["x", "y", "a"], {"a"}, 3) == 1.0
    assert hit_rate(["x", "y", "a"], {"a"}, 10) == 1.0


def test_reciprocal_rank_at_several_k() -> None:
    assert reciprocal_rank(["x", "y", "a", "c"], GOLD, 1) == 0.0
    assert reciprocal_rank(["x", "y", "a", "c"], GOLD, 2) == 0.0
    assert reciprocal_rank(["x", "y", "a", "c"], GOLD, 3) == pytest.approx(1 / 3)  # first hit at rank 3
    assert reciprocal_rank(["x", "y", "a", "c"], GOLD, 10) == pytest.approx(1 / 3)
    assert reciprocal_rank(RANKED, GOLD, 5) == 1.0


def test_recall_counts_all_gold() -> None:
    # two gold passages, one found: 0.5 (the multi-hop definition, not a hit)
    assert recall(["a", "b"], {"a", "z"}, 2) == 0.5
    assert recall(RANKED, GOLD, 1) == 0.5
    assert recall(RANKED, GOLD, 2) == 0.5
    assert recall(RANKED, GOLD, 3) == 1.0
    assert recall(RANKED, GOLD, 10) == 1.0


def test_precision_divides_by_k() -> None:
    assert precision(RANKED, GOLD, 1) == 1.0
    assert precision(RANKED, GOLD, 2) == 0.5
    assert precision(RANKED, GOLD, 3) == pytest.approx(2 / 3)
    assert precision(RANKED, GOLD, 5) == pytest.approx(2 / 5)
    # only 5 returned, but the denominator stays 10
    assert precision(RANKED, GOLD, 10) == pytest.approx(2 / 10)


def test_ndcg_two_relevant_at_ranks_1_and_3() -> None:
    # DCG@3  = 1/log2(1+1) + 1/log2(3+1) = 1 + 1/2            = 1.5
    # IDCG@3 = 1/log2(1+1) + 1/log2(2+1) = 1 + 0.6309297536    = 1.6309297536  (both gold at ranks 1, 2)
    # nDCG@3 = 1.5 / 1.6309297536                              = 0.9197207891
    assert ndcg(RANKED, GOLD, 3) == pytest.approx(0.9197207891)
    assert ndcg(RANKED, GOLD, 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # @5 and @10: no more hits and no more ideal gain (only 2 gold), so the same value
    assert ndcg(RANKED, GOLD, 5) == pytest.approx(0.9197207891)
    assert ndcg(RANKED, GOLD, 10) == pytest.approx(0.9197207891)
    # @2: DCG = 1 (rank 3 is cut), IDCG = 1.6309297536 -> 0.6131471928
    assert ndcg(RANKED, GOLD, 2) == pytest.approx(0.6131471928)
    # @1: DCG = IDCG = 1
    assert ndcg(RANKED, GOLD, 1) == 1.0
    # a single gold at rank 2: 1/log2(3) / 1 = 0.6309297536
    assert ndcg(["x", "a"], {"a"}, 5) == pytest.approx(0.6309297536)
    assert ndcg(["a", "c"], GOLD, 2) == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("k", [1, 5, 10])
def test_empty_ranked_list_and_empty_gold_score_zero(name: str, k: int) -> None:
    fn = METRICS[name]
    assert fn([], {"a"}, k) == 0.0
    assert fn(["a"], set(), k) == 0.0


def test_duplicates_count_once() -> None:
    assert top_k(["b", "b", "a", "b", "c"], 2) == ["b", "a"]
    # duplicates do not take k slots: the top 2 distinct ids are b, a
    assert hit_rate(["b", "b", "a"], {"a"}, 2) == 1.0
    assert reciprocal_rank(["b", "b", "a"], {"a"}, 2) == 0.5
    # nor are they counted twice
    assert recall(["a", "a"], {"a", "b"}, 2) == 0.5
    assert precision(["a", "a", "a"], {"a"}, 3) == pytest.approx(1 / 3)
    assert ndcg(["a", "a"], {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # gold given as a list with repeats is a set
    assert recall(["a"], ["a", "a", "b"], 1) == 0.5


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k_raises(k: object) -> None:
    with pytest.raises(InvalidInputError, match="k must be"):
        recall(["a"], {"a"}, k)  # type: ignore[arg-type]


def test_evaluate_retrieval_rows_means_and_edge_cases() -> None:
    gold = {"q1": ["a", "c"], "q2": ["x"], "q3": ["y"], "q5": []}
    results = {"q1": ["a", "b", "c"], "q2": [], "q4": ["z"]}
    report = evaluate_retrieval(results, gold, ks=(5, 1, 5))
    assert report.ks == (1, 5)
    assert [row.qid for row in report.rows] == ["q1", "q2", "q3"]
    assert report.missing_results == ["q2", "q3"]  # empty and absent both score 0
    assert report.extra_results == ["q4"]
    assert report.skipped_no_gold == ["q5"]
    q1 = report.rows[0]
    assert q1.ranked == ["a", "b", "c"] and q1.relevant == ["a", "c"]
    assert q1.scores["recall@1"] == 0.5 and q1.scores["recall@5"] == 1.0
    assert q1.scores["ndcg@5"] == pytest.approx(0.9197207891)
    assert q1.scores["precision@5"] == pytest.approx(0.4)
    assert all(v == 0.0 for v in report.rows[1].scores.values())
    assert report.means["recall@5"] == pytest.approx(1 / 3)
    assert report.means["hit_rate@1"] == pytest.approx(1 / 3)
    assert report.means["mrr@5"] == pytest.approx(1 / 3)
    assert set(report.means) == {f"{m}@{k}" for m in METRICS for k in (1, 5)}
    np.testing.assert_allclose(report.column("recall@1"), [0.5, 0.0, 0.0])
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["n_queries"] == 3 and d["rows"][0]["qid"] == "q1" and d["rows"][0]["recall@1"] == 0.5


def test_evaluate_retrieval_takes_a_dataset() -> None:
    ds = EvalDataset(
        name="t",
        passages=[Passage("p1", "one"), Passage("p2", "two")],
        queries=[Query("q1", "?", ["p1", "p2"]), Query("q2", "?", ["p2"])],
        meta={},
    )
    report = evaluate_retrieval({"q1": ["p2", "p2", "p9"], "q2": ["p2"]}, ds, ks=[2])
    assert report.means["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert report.means["mrr@2"] == 1.0


def test_evaluate_retrieval_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="ks"):
        evaluate_retrieval({}, {"q": ["a"]}, ks=())
    with pytest.raises(InvalidInputError, match="nothing to evaluate"):
        evaluate_retrieval({}, {"q": []})
    with pytest.raises(InvalidInputError, match="string"):
        evaluate_retrieval({}, {"q": "abc"})
    with pytest.raises(InvalidInputError, match="unknown metric"):
        evaluate_retrieval({}, {"q": ["a"]}).column("recall@3")


def test_subset_recomputes_means_over_the_chosen_queries() -> None:
    report = evaluate_retrieval(
        {"a": ["x"], "b": ["y"], "c": ["z", "x"]}, {"a": ["x"], "b": ["x"], "c": ["x"]}, ks=(1, 2)
    )
    part = report.subset(["b", "c"])
    assert [row.qid for row in part.rows] == ["b", "c"]
    assert part.means["hit_rate@1"] == 0.0 and part.means["hit_rate@2"] == 0.5 and part.means["mrr@2"] == 0.25
    assert report.means["hit_rate@1"] == pytest.approx(1 / 3)  # the full report is untouched
    with pytest.raises(InvalidInputError, match="none of the given query ids"):
        report.subset(["nope"])
