"""Nearest-neighbour pairs for SIMILAR and SYNONYM edges: the HNSW method against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.docgraph.build import build_doc_graph
from kvgraph.docgraph.knn import EXACT_MAX, chosen_method, knn_pairs, knn_recall
from kvgraph.errors import InvalidInputError
from kvgraph.schema import Node


def clustered(n: int, dim: int = 32, centres: int = 60, seed: int = 0) -> np.ndarray:
    """Points around random centres: near neighbours exist, as among chunks of related text."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim))
    return (c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def pair_set(pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> set[tuple[int, int]]:
    return set(zip(pairs[0].tolist(), pairs[1].tolist()))


def test_hnsw_pairs_recall_exact_ones_with_exact_similarities() -> None:
    v = clustered(3000)
    exact = knn_pairs(v, 5, 0.5, method="exact")
    approx = knn_pairs(v, 5, 0.5, method="hnsw")
    want, got = pair_set(exact), pair_set(approx)
    assert len(want) > 3000
    assert len(want & got) / len(want) >= 0.97
    i, j, s = approx
    assert (i < j).all() and (s >= 0.5).all()
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(s, np.einsum("nd,nd->n", u[i], u[j]), atol=1e-4)
    # the sampled recall estimates the true one
    true_recall = len(want & got) / len(want)
    sampled = knn_recall(v, approx, 5, 0.5, sample=512)
    assert sampled is not None and abs(sampled - true_recall) < 0.03


def test_recall_sees_missing_pairs() -> None:
    v = clustered(600)
    exact = knn_pairs(v, 4, 0.3, method="exact")
    assert knn_recall(v, exact, 4, 0.3, sample=600) == 1.0
    half = tuple(a[::2] for a in exact)
    recall = knn_recall(v, half, 4, 0.3, sample=600)  # type: ignore[arg-type]
    assert recall is not None and 0.4 < recall < 0.6
    assert knn_recall(v, exact, 4, 1.01) is None  # nothing is that similar


def test_auto_is_exact_for_small_inputs_and_hnsw_beyond() -> None:
    assert chosen_method(10) == "exact" and chosen_method(EXACT_MAX) == "exact"
    assert chosen_method(EXACT_MAX + 1) == "hnsw"
    assert chosen_method(10, "hnsw") == "hnsw"
    v = clustered(200)
    assert pair_set(knn_pairs(v, 3, 0.0)) == pair_set(knn_pairs(v, 3, 0.0, method="exact"))


def test_degenerate_inputs_and_bad_method() -> None:
    assert knn_pairs(np.zeros((1, 4), np.float32), 3, 0.0)[0].size == 0
    assert knn_pairs(clustered(10), 0, 0.0)[0].size == 0
    i, _, _ = knn_pairs(clustered(3), 5, -1.0, method="hnsw")  # k larger than the rows
    assert set(i.tolist()) <= {0, 1}
    with pytest.raises(InvalidInputError, match="knn method"):
        knn_pairs(clustered(10), 3, 0.0, method="lsh")


def test_build_records_method_and_recall() -> None:
    v = clustered(300, seed=1)
    nodes = [Node(id=f"c{i}", text="plain words", metadata={"title": f"t{i}"}) for i in range(len(v))]
    g = build_doc_graph(nodes, v, knn=3, similar_threshold=0.2, knn_method="hnsw")
    report = g.meta["knn"]["similar"]
    assert report["method"] == "hnsw" and report["rows"] == 300 and report["pairs"] > 0
    assert 0.9 <= report["recall"] <= 1.0
    exact = build_doc_graph(nodes, v, knn=3, similar_threshold=0.2)
    assert exact.meta["knn"]["similar"] == {
        "method": "exact",
        "rows": 300,
        "pairs": exact.edge_counts()["SIMILAR"],
        "recall": 1.0,
    }
