"""Rank fusion, MMR and dense top-k: hand-computed examples and independent references."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery, dense, fusion
from kvgraph.store.mmr import mmr

# ---- reciprocal-rank fusion -------------------------------------------------------------------


def test_rrf_hand_computed_k1() -> None:
    # k = 1, so an item at rank r contributes 1 / (1 + r):
    #   item 1: rank 1 in list A, rank 2 in list B -> 1/2 + 1/3 = 5/6
    #   item 2: rank 2 in list A only              -> 1/3
    #   item 3: rank 3 in list A, rank 1 in list B -> 1/4 + 1/2 = 3/4
    ids, scores = fusion.rrf([np.array([1, 2, 3]), np.array([3, 1])], k=1)
    assert ids.tolist() == [1, 3, 2]
    assert np.allclose(scores, [5 / 6, 3 / 4, 1 / 3])


def test_rrf_hand_computed_default_k() -> None:
    # k = 60:
    #   10: 1/61 + 1/62 = 0.032522   (rank 1 in A, rank 2 in B)
    #   30: 1/63 + 1/61 = 0.032266   (rank 3 in A, rank 1 in B)
    #   20: 1/62        = 0.016129
    #   40: 1/63        = 0.015873
    ids, scores = fusion.rrf([np.array([10, 20, 30]), np.array([30, 10, 40])])
    assert ids.tolist() == [10, 30, 20, 40]
    assert np.allclose(scores, [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 63])


def test_rrf_three_lists_and_single_list() -> None:
    # 7: 1/61 + 1/61 + 1/63; 8: 1/62 + 1/62; 9: 1/63 + 1/62 + 1/61 (rank 1 in list C)
    ids, scores = fusion.rrf([np.array([7, 8, 9]), np.array([7, 8]), np.array([9, 5, 7])])
    expected = {7: 2 / 61 + 1 / 63, 8: 2 / 62, 9: 1 / 63 + 1 / 61, 5: 1 / 62}
    assert dict(zip(ids.tolist(), scores.tolist())) == pytest.approx(expected)
    assert ids.tolist() == sorted(expected, key=lambda i: -expected[i])
    # one list: its order is kept
    ids, _ = fusion.rrf([np.array([4, 2, 9, 1])])
    assert ids.tolist() == [4, 2, 9, 1]


def test_rrf_ties_are_deterministic_and_empty_input() -> None:
    a, sa = fusion.rrf([np.array([5, 7]), np.array([7, 5])])
    b, _ = fusion.rrf([np.array([7, 5]), np.array([5, 7])])
    assert sa[0] == pytest.approx(sa[1])  # 1/61 + 1/62 each
    assert a.tolist() == b.tolist()  # the same tie order whichever list comes first
    ids, scores = fusion.rrf([])
    assert len(ids) == 0 and len(scores) == 0
    ids, scores = fusion.rrf([np.array([], dtype=np.int64), np.array([3])])
    assert ids.tolist() == [3]
    assert scores.tolist() == pytest.approx([1 / 61])


# ---- min-max and alpha fusion ----------------------------------------------------------------


def test_min_max_edge_cases() -> None:
    assert fusion.min_max(np.array([])).shape == (0,)
    assert fusion.min_max(np.array([3.0, 3.0, 3.0])).tolist() == [1.0, 1.0, 1.0]  # constant: all best
    assert fusion.min_max(np.array([5.0])).tolist() == [1.0]
    assert fusion.min_max(np.array([2.0, 4.0, 6.0])).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert fusion.min_max(np.array([-1.0, 1.0, 0.0])).tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert fusion.min_max(np.array([1.0, 1.0 + 1e-15])).tolist() == [1.0, 1.0]  # below resolution: constant
    out = fusion.min_max(np.array([0.25, 0.75], dtype=np.float32))
    assert out.tolist() == pytest.approx([0.0, 1.0])


DENSE_IDS, DENSE_SCORES = np.array([1, 2, 3]), np.array([0.9, 0.5, 0.1])  # normalised: 1, 0.5, 0
SPARSE_IDS, SPARSE_SCORES = np.array([3, 4, 1]), np.array([10.0, 6.0, 2.0])  # normalised: 1, 0.5, 0


def test_alpha_one_is_dense_order_and_zero_is_sparse_order() -> None:
    ids, scores = fusion.alpha_fusion(DENSE_IDS, DENSE_SCORES, SPARSE_IDS, SPARSE_SCORES, 1.0)
    assert ids[:3].tolist() == [1, 2, 3]
    assert dict(zip(ids.tolist(), scores.tolist())) == pytest.approx({1: 1.0, 2: 0.5, 3: 0.0, 4: 0.0})
    ids, scores = fusion.alpha_fusion(DENSE_IDS, DENSE_SCORES, SPARSE_IDS, SPARSE_SCORES, 0.0)
    assert ids[:3].tolist() == [3, 4, 1]
    assert dict(zip(ids.tolist(), scores.tolist())) == pytest.approx({3: 1.0, 4: 0.5, 1: 0.0, 2: 0.0})


def test_alpha_hand_computed_with_items_missing_from_one_list() -> None:
    # alpha = 0.6: 0.6 * dense_norm + 0.4 * sparse_norm, absent = 0
    #   1: 0.6*1   + 0.4*0   = 0.6
    #   2: 0.6*0.5 + (absent) = 0.3
    #   3: 0.6*0   + 0.4*1   = 0.4
    #   4: (absent) + 0.4*0.5 = 0.2
    ids, scores = fusion.alpha_fusion(DENSE_IDS, DENSE_SCORES, SPARSE_IDS, SPARSE_SCORES, 0.6)
    assert ids.tolist() == [1, 3, 2, 4]
    assert scores.tolist() == pytest.approx([0.6, 0.4, 0.3, 0.2])


def test_alpha_with_an_empty_list() -> None:
    ids, scores = fusion.alpha_fusion(DENSE_IDS, DENSE_SCORES, np.array([], dtype=np.int64), np.array([]), 0.5)
    assert ids.tolist() == [1, 2, 3]
    assert scores.tolist() == pytest.approx([0.5, 0.25, 0.0])


# ---- MMR ------------------------------------------------------------------------------------


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def ref_mmr(q: np.ndarray, c: np.ndarray, k: int, lam: float) -> list[int]:
    """Greedy MMR written out plainly: the first pick is the most relevant (no redundancy yet)."""
    picked: list[int] = []
    for _ in range(min(k, len(c))):
        best, best_score = -1, -np.inf
        for i in range(len(c)):
            if i in picked:
                continue
            redundancy = max((float(c[i] @ c[j]) for j in picked), default=0.0)
            score = lam * float(c[i] @ q) - (1 - lam) * redundancy
            if score > best_score:
                best, best_score = i, score
        picked.append(best)
    return picked


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 25),
    k=st.integers(1, 30),
    lam=st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]),
)
def test_mmr_matches_reference(seed: int, n: int, k: int, lam: float) -> None:
    rng = np.random.default_rng(seed)
    q = unit(rng.normal(size=6))
    c = unit(rng.normal(size=(n, 6)))
    got = mmr(q, c, k, lam).tolist()
    assert got == ref_mmr(q, c, k, lam)
    assert len(got) == min(k, n) and len(set(got)) == len(got)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), k=st.integers(1, 30))
def test_mmr_lambda_one_is_relevance_order(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    q = unit(rng.normal(size=5))
    c = unit(rng.normal(size=(n, 5)))
    assert mmr(q, c, k, 1.0).tolist() == np.argsort(-(c @ q), kind="stable")[:k].tolist()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 20))
def test_mmr_lambda_zero_picks_least_similar_after_first(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    q = unit(rng.normal(size=5))
    c = unit(rng.normal(size=(n, 5)))
    picks = mmr(q, c, n, 0.0).tolist()
    assert sorted(picks) == list(range(n))
    for step in range(1, n):
        chosen = picks[:step]
        rest = [i for i in range(n) if i not in chosen]
        max_sim = {i: max(float(c[i] @ c[j]) for j in chosen) for i in rest}
        assert picks[step] == min(rest, key=lambda i: max_sim[i]), f"step {step}"


def test_mmr_does_not_pick_both_duplicates() -> None:
    q = np.array([1.0, 0.0, 0.0])
    c = unit(
        np.array(
            [
                [0.95, 0.31, 0.0],  # 0: most relevant
                [0.95, 0.31, 0.0],  # 1: exact duplicate of 0
                [0.94, 0.33, 0.0],  # 2: near duplicate of 0
                [0.6, -0.2, 0.77],  # 3: less relevant, different
                [0.5, 0.0, -0.87],  # 4: less relevant, different
            ]
        )
    )
    picks = mmr(q, c, 3, 0.3).tolist()
    assert picks[0] == 0
    assert not {1, 2} & set(picks)
    # with pure relevance the duplicates do come next
    assert mmr(q, c, 3, 1.0).tolist() == [0, 1, 2]


def test_mmr_degenerate_inputs() -> None:
    q = np.array([1.0, 0.0])
    assert mmr(q, np.zeros((0, 2)), 3).tolist() == []
    assert mmr(q, unit(np.array([[1.0, 1.0]])), 0).tolist() == []
    # relevance 0.707 and 1.0: the second candidate first; k > n returns every candidate once
    assert mmr(q, unit(np.array([[1.0, 1.0], [1.0, 0.0]])), 5, 0.5).tolist() == [1, 0]


# ---- dense top-k ----------------------------------------------------------------------------


def ref_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]  # best first, ties by lower index


@settings(max_examples=300, deadline=None)
@given(scores=st.lists(st.integers(0, 3), min_size=1, max_size=40), k=st.integers(1, 45))
def test_top_k_with_ties_selects_the_best_values(scores: list[int], k: int) -> None:
    s = np.array(scores, dtype=np.float32)
    want = ref_top_k(s, k)
    for got in (dense.top_k(s, k), dense.top_k_rows(s[None, :], k)[0]):
        assert len(got) == min(k, len(s))
        assert len(set(got.tolist())) == len(got)
        assert s[got].tolist() == s[want].tolist()  # the k best values, best first
    # top_k returns tied items in index order
    got = dense.top_k(s, k)
    for a, b in itertools.pairwise(got):
        assert s[a] > s[b] or a < b


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), k=st.integers(1, 70), q=st.integers(1, 4))
def test_top_k_without_ties_equals_argsort(seed: int, n: int, k: int, q: int) -> None:
    s = np.random.default_rng(seed).permutation(n * q).reshape(q, n).astype(np.float32)  # distinct
    assert dense.top_k(s[0], k).tolist() == ref_top_k(s[0], k).tolist()
    rows = dense.top_k_rows(s, k)
    assert rows.shape == (q, min(k, n))
    for i in range(q):
        assert rows[i].tolist() == ref_top_k(s[i], k).tolist()


@settings(max_examples=100, deadline=None)
@given(scores=st.lists(st.integers(0, 2), min_size=1, max_size=30), extra=st.integers(0, 5))
def test_top_k_all_items_is_a_stable_sort(scores: list[int], extra: int) -> None:
    s = np.array(scores, dtype=np.float64)
    k = len(s) + extra  # k >= n: every item, ties by lower index
    assert dense.top_k(s, k).tolist() == ref_top_k(s, k).tolist()
    assert dense.top_k_rows(s[None, :], k)[0].tolist() == ref_top_k(s, k).tolist()


def test_top_k_rows_zero_items() -> None:
    assert dense.top_k_rows(np.zeros((3, 0), dtype=np.float32), 5).shape == (3, 0)
    assert dense.top_k_rows(np.zeros((2, 4), dtype=np.float32), 0).shape == (2, 0)


def test_top_k_boundary_tie_prefers_lower_index() -> None:
    assert dense.top_k(np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32), 1).tolist() == [2]


def test_top_k_rows_orders_ties_like_top_k() -> None:
    s = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    assert dense.top_k(s[0], 2).tolist() == [2, 3]  # top_k itself is right here
    assert dense.top_k_rows(s, 2)[0].tolist() == [2, 3]


# ---- hybrid and MMR through the store -------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedVectorStore]:
    s = EmbeddedVectorStore.open(tmp_path / "store", dim=4)
    yield s
    s.close()


def test_hybrid_finds_keyword_match_far_in_embedding_space(store: EmbeddedVectorStore) -> None:
    q = np.array([1.0, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(3)
    # ten documents close to the query direction, with unrelated words
    near = unit(q + 0.3 * rng.normal(size=(10, 4)))
    near[:, 0] = np.abs(near[:, 0])
    words = ["river", "stone", "cloud", "maple", "copper", "harbor", "violet", "saddle", "lantern", "meadow"]
    ids = [f"near{i}" for i in range(10)]
    store.add_arrays(ids, near, texts=[f"{w} {w} report" for w in words])
    # one document pointing the other way whose text contains the query keyword
    store.add_arrays(["far"], np.array([[-1.0, 0.05, 0.0, 0.0]]), texts=["the zebra migration report"])

    dense_res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3, exact=True))
    assert "far" not in dense_res.ids
    everything = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=11, exact=True))
    assert everything.ids[-1] == "far"  # the least similar of all

    # RRF: "far" gets 1/(60+1) from BM25 plus 1/(60+11) from dense; the best dense-only doc 1/61
    hybrid = store.query(VectorStoreQuery(query_embedding=q, query_str="zebra", mode="hybrid", similarity_top_k=3))
    assert hybrid.ids[0] == "far"
    assert hybrid.similarities[0] == pytest.approx(1 / 61 + 1 / 71, rel=1e-6)
    assert hybrid.ids[1:] == dense_res.ids[:2]

    # alpha = 0.3: far = 0.3*0 + 0.7*1 = 0.7 beats the best dense doc's 0.3*1 = 0.3
    weighted = store.query(
        VectorStoreQuery(query_embedding=q, query_str="zebra", mode="hybrid", alpha=0.3, similarity_top_k=3)
    )
    assert weighted.ids[0] == "far"
    assert weighted.similarities[0] == pytest.approx(0.7)
    # alpha = 1: pure dense order again
    pure = store.query(
        VectorStoreQuery(query_embedding=q, query_str="zebra", mode="hybrid", alpha=1.0, similarity_top_k=3)
    )
    assert pure.ids == dense_res.ids


def test_hybrid_respects_filters(store: EmbeddedVectorStore) -> None:
    q = np.array([0.0, 1.0, 0.0, 0.0])
    store.add_arrays(
        ["a", "b", "c"],
        np.array([[0.0, 1.0, 0.1, 0.0], [0.1, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]),
        texts=["apple", "banana", "apple zebra"],
        metadatas=[{"g": 1}, {"g": 2}, {"g": 2}],
    )
    res = store.query(
        VectorStoreQuery(
            query_embedding=q, query_str="zebra apple", mode="hybrid", similarity_top_k=3, filters={"g": 2}
        )
    )
    assert set(res.ids) == {"b", "c"}


def test_store_mmr(store: EmbeddedVectorStore) -> None:
    q = np.array([1.0, 0.0, 0.0, 0.0])
    emb = np.array(
        [
            [1.0, 0.1, 0.0, 0.0],  # a: most relevant
            [1.0, 0.1, 0.0, 0.0],  # b: duplicate of a
            [1.0, 0.12, 0.0, 0.0],  # c: near duplicate of a
            [0.7, -0.2, 0.6, 0.0],  # d: relevant enough, different
            [0.6, 0.0, 0.0, -0.8],  # e: relevant enough, different
        ]
    )
    store.add_arrays(list("abcde"), emb)
    dense_res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, exact=True))
    relevance = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, mode="mmr", mmr_threshold=1.0))
    assert relevance.ids == dense_res.ids
    assert np.allclose(relevance.similarities, dense_res.similarities)
    diverse = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3, mode="mmr", mmr_threshold=0.3))
    assert diverse.ids[0] == dense_res.ids[0]
    assert len({"a", "b", "c"} & set(diverse.ids)) == 1
    assert set(diverse.ids) >= {"d", "e"}
