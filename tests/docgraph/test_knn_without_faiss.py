"""The document graph's nearest neighbours without faiss (the optional ``kvgraph[ann]`` extra).

``auto`` falls back to the exact method beyond EXACT_MAX rows (and says so once per build),
``hnsw`` asked for outright raises a one-line error naming the extra. faiss is taken away
in-process: ``sys.modules["faiss"] = None`` makes ``import faiss`` raise ImportError.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from kvgraph.docgraph.build import build_doc_graph
from kvgraph.docgraph.knn import EXACT_MAX, chosen_method, knn_lists, knn_pairs
from kvgraph.errors import MissingDependencyError
from kvgraph.schema import Node


def clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(80, dim))
    return (c[rng.integers(0, 80, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def test_auto_is_exact_without_faiss_and_hnsw_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    n = EXACT_MAX + 300
    v = clustered(n)
    assert chosen_method(n) == "hnsw"  # with faiss
    want_cols, want_sims = knn_lists(v, 5, "exact")
    caplog.set_level(logging.WARNING, logger="kvgraph")
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert chosen_method(n) == "exact" and chosen_method(EXACT_MAX) == "exact"
    cols, sims = knn_lists(v, 5)
    np.testing.assert_array_equal(cols, want_cols)
    np.testing.assert_array_equal(sims, want_sims)
    # exact means exact: each row's 5 best other rows by cosine, checked by a full sort on a sample
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    for r in range(0, n, 397):
        s = u @ u[r]
        s[r] = -np.inf
        assert set(cols[r].tolist()) == set(np.argsort(-s)[:5].tolist())
        np.testing.assert_allclose(sims[r], np.sort(s)[::-1][:5], atol=1e-5)
    [warning] = [r.getMessage() for r in caplog.records if "kvgraph[ann]" in r.getMessage()]
    assert f"{n:,} rows found exactly" in warning and "quadratic" in warning
    with pytest.raises(MissingDependencyError, match=r"^faiss is not installed: pip install 'kvgraph\[ann\]'$"):
        knn_pairs(v, 5, 0.5, method="hnsw")
    knn_lists(v[:EXACT_MAX], 5)  # small inputs are exact anyway: nothing more to say
    assert len([r for r in caplog.records if "kvgraph[ann]" in r.getMessage()]) == 1


def test_graph_build_without_faiss_records_exact_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    n = EXACT_MAX + 100
    v = clustered(n, seed=2)
    nodes = [Node(id=f"c{i}", text="plain words", metadata={"title": f"t{i}"}) for i in range(n)]
    exact = build_doc_graph(nodes, v, knn=3, similar_threshold=0.5, knn_method="exact")
    monkeypatch.setitem(sys.modules, "faiss", None)
    g = build_doc_graph(nodes, v, knn=3, similar_threshold=0.5)
    assert g.meta["knn"]["similar"] == {
        "method": "exact",
        "rows": n,
        "pairs": exact.edge_counts()["SIMILAR"],
        "recall": 1.0,
    }
    np.testing.assert_array_equal(g.similar_cols, exact.similar_cols)
