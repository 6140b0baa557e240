"""Exact search runs a single query on one OpenMP thread and leaves the thread's setting as it was."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kvgraph.store.dense import knn_inner_product, knn_inner_product_numpy

faiss = pytest.importorskip("faiss")


def test_a_single_query_gives_the_same_rows_and_restores_the_thread_count() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((3_000, 32)).astype(np.float32)
    queries = rng.standard_normal((5, 32)).astype(np.float32)
    faiss.omp_set_num_threads(2)
    seen: list[int] = []

    def spy(*args: object) -> None:  # what faiss sees while it searches
        seen.append(faiss.omp_get_max_threads())
        original(*args)

    original = faiss.knn_inner_product
    try:
        faiss.knn_inner_product = spy
        one_rows, one_scores = knn_inner_product(matrix, queries[:1], 7)
        batch_rows, _ = knn_inner_product(matrix, queries, 7)
    finally:
        faiss.knn_inner_product = original
    assert seen == [1, 2]  # one thread for one query, the thread's own setting for a batch
    assert faiss.omp_get_max_threads() == 2
    assert np.array_equal(one_rows[0], batch_rows[0])
    np_rows, np_scores = knn_inner_product_numpy(matrix, queries[:1], 7)
    assert np.array_equal(one_rows, np_rows)
    np.testing.assert_allclose(one_scores, np_scores, rtol=1e-5)


def test_the_setting_is_per_thread() -> None:
    matrix = np.random.default_rng(3).standard_normal((500, 16)).astype(np.float32)
    faiss.omp_set_num_threads(2)
    other: list[int] = []
    worker = threading.Thread(target=lambda: (knn_inner_product(matrix, matrix[:1], 3), other.append(1)))
    worker.start()
    worker.join()
    assert other == [1] and faiss.omp_get_max_threads() == 2


def test_rows_given_as_a_list_settle_ties_by_row() -> None:
    matrix = np.array([[1.0, 0.0], [2.0, 0.0], [0.5, 0.0], [2.0, 0.0]], dtype=np.float32)
    rows, scores = knn_inner_product(matrix, np.array([[1.0, 0.0]], dtype=np.float32), 1, rows=[1, 2, 3])
    assert rows.tolist() == [[1]] and scores.tolist() == [[2.0]]  # rows 1 and 3 tie: the lower wins


def test_numpy_top_k_keeps_the_best_item_when_its_chunk_holds_a_nan() -> None:
    from kvgraph.store.dense import top_k_rows, top_k_rows_chunked

    scores = np.linspace(0.0, 1.0, 400, dtype=np.float32)[::-1].copy()[None, :]
    scores[0, 100], scores[0, 101] = 10.0, np.nan
    top, vals = top_k_rows_chunked(scores, 3)
    assert top.tolist() == top_k_rows(scores, 3).tolist() == [[100, 0, 1]]
    assert vals[0, 0] == 10.0
