"""The embedded store without faiss (the optional ``kvgraph[ann]`` extra).

Exact search gives the same results (numpy instead of faiss's kernels), a store past
``ann_threshold`` warns once and keeps searching exactly, a saved HNSW index is neither used nor
rewritten (and serves again once faiss is back), and asking for the index outright raises a
one-line error naming the extra.

faiss is taken away in-process: ``sys.modules["faiss"] = None`` makes ``import faiss`` raise
ImportError, and kvgraph looks faiss up where it uses it, so one process compares both paths.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kbdocs import make_docs
from kvgraph.errors import MissingDependencyError
from kvgraph.kb import KnowledgeBase
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery, dense
from kvgraph.store.ann import HnswIndex, optional_faiss

NO_FAISS = r"^faiss is not installed: pip install 'kvgraph\[ann\]'$"


@contextlib.contextmanager
def without_faiss() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "faiss", None)
        yield


def test_taking_faiss_away_in_process_works() -> None:
    assert optional_faiss() is not None  # the dev environment has it
    with without_faiss():
        with pytest.raises(ImportError):
            import faiss  # noqa: F401
        assert optional_faiss() is None
    assert optional_faiss() is not None


def test_every_module_imports_without_faiss() -> None:
    # a fresh interpreter: faiss must not be needed to import any part of kvgraph
    code = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['faiss'] = None\n"
        "import kvgraph\n"
        "names = [m.name for m in pkgutil.walk_packages(kvgraph.__path__, 'kvgraph.')]\n"
        "for name in names:\n"
        "    if not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 100


def reference_top_k(scores: np.ndarray, cand: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Best first, ties by lower row: sorted in full, independent of both implementations."""
    order = np.lexsort((cand, -scores))[:k]
    return cand[order].tolist(), scores[order].tolist()


@pytest.mark.parametrize("n_queries", [1, 32])
@pytest.mark.parametrize("subset", [False, True], ids=["all-rows", "subset"])
def test_exact_kernel_gives_the_same_rows_and_tie_order_without_faiss(n_queries: int, subset: bool) -> None:
    rng = np.random.default_rng(n_queries)
    # small integers: every inner product is exact in float32 whatever the summation order, and many tie
    m = rng.integers(-2, 3, size=(5000, 16)).astype(np.float32)
    q = rng.integers(-2, 3, size=(n_queries, 16)).astype(np.float32)
    rows = np.sort(rng.choice(len(m), 1700, replace=False)) if subset else None
    cand = rows if rows is not None else np.arange(len(m))
    scores = q @ m[cand].T
    for k in (1, 10, 500, 5000):
        with_faiss = dense.knn_inner_product(m, q, k, rows)
        with without_faiss():
            numpy_path = dense.knn_inner_product(m, q, k, rows)
        small_blocks = dense.knn_inner_product_numpy(m, q, k, rows, block_rows=333)  # many merges
        for got in (with_faiss, numpy_path, small_blocks):
            assert got[0].shape == got[1].shape == (n_queries, min(k, len(cand)))
            for i in range(n_queries):
                assert (got[0][i].tolist(), got[1][i].tolist()) == reference_top_k(scores[i], cand, k)
    with without_faiss():
        empty_rows, empty_scores = dense.knn_inner_product(m, q, 0, rows)
    assert empty_rows.shape == empty_scores.shape == (n_queries, 0)


def run_queries(s: EmbeddedVectorStore, queries: np.ndarray, variants: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for kw in variants:
        for q in queries:
            r = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=15, **kw))
            out.append((r.ids, r.similarities, r.plan))
        out.append([(r.ids, r.similarities, r.plan) for r in s.query_batch(queries, 15, **kw)])
    return out


def test_exact_search_results_and_ties_are_the_same_without_faiss(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n, dim = 3000, 24
    # small integers and the dot metric: scores are exact, so ties are ties in both implementations
    vecs = rng.integers(-3, 4, size=(n, dim)).astype(np.float32)
    queries = rng.integers(-3, 4, size=(6, dim)).astype(np.float32)
    vecs[1000:1010] = vecs[5]  # ten copies of row 5 ...
    queries[0] = vecs[5]  # ... that top this query's list with equal scores
    ids = [f"v{i}" for i in range(n)]
    deleted = [*ids[1:n:7], "v1003"]
    variants: list[dict[str, Any]] = [
        {},
        {"filters": {"bucket": {"$lt": 3}}},
        {"node_ids": ids[::3]},
        {"doc_ids": ["d1", "d2", "d5"]},
    ]
    with EmbeddedVectorStore.open(tmp_path / "s", dim=dim, metric="dot") as s:
        s.add_arrays(
            ids,
            vecs,
            metadatas=[{"bucket": i % 10} for i in range(n)],
            ref_doc_ids=[f"d{i % 50}" for i in range(n)],
        )
        for step in ("all rows live", "some deleted"):
            if step == "some deleted":  # dead rows: exact search runs over the live subset
                s.delete(deleted)
            with_faiss = run_queries(s, queries, variants)
            with without_faiss():
                numpy_path = run_queries(s, queries, variants)
            assert numpy_path == with_faiss, step
    # the tie: row 5 first, then its live copies in row order; deleted rows never come back
    top = numpy_path[0][0]
    copies = ["v5"] + [f"v{i}" for i in range(1000, 1010) if f"v{i}" not in deleted]
    assert top[: len(copies)] == copies
    assert not {i for r in numpy_path[:6] for i in r[0]} & set(deleted)


def test_cosine_exact_search_is_the_same_without_faiss(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vecs = rng.normal(size=(3000, 24)).astype(np.float32)
    queries = rng.normal(size=(6, 24)).astype(np.float32)
    ids = [f"v{i}" for i in range(len(vecs))]
    variants: list[dict[str, Any]] = [{}, {"filters": {"bucket": 2}}]
    with EmbeddedVectorStore.open(tmp_path / "s", dim=24) as s:
        s.add_arrays(ids, vecs, metadatas=[{"bucket": i % 10} for i in range(len(vecs))])
        s.delete(ids[::11])
        with_faiss = run_queries(s, queries, variants)
        with without_faiss():
            numpy_path = run_queries(s, queries, variants)
    flat = [r for x in with_faiss for r in (x if isinstance(x, list) else [x])]
    flat_numpy = [r for x in numpy_path for r in (x if isinstance(x, list) else [x])]
    assert len(flat) == len(flat_numpy) == 2 * 12
    for (ids_a, sims_a, plan_a), (ids_b, sims_b, plan_b) in zip(flat, flat_numpy):
        # the scores may differ in the last bits (another summation order); the rows may not
        assert ids_a == ids_b and plan_a == plan_b and plan_a.startswith("exact")
        np.testing.assert_allclose(sims_a, sims_b, rtol=1e-5, atol=1e-6)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    return (centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def exact_ids(vecs: np.ndarray, live: list[int], q: np.ndarray, k: int) -> list[str]:
    """Cosine top k over the live rows, by numpy alone."""
    u = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = u[live] @ (q / np.linalg.norm(q))
    return [f"v{live[i]}" for i in np.lexsort((live, -sims))[:k]]


def faiss_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "kvgraph[ann]" in r.getMessage()]


def test_crossing_ann_threshold_without_faiss_warns_once_and_searches_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kvgraph")
    vecs, queries = clustered(320, 16), clustered(5, 16, seed=1)
    path = tmp_path / "s"
    with without_faiss():
        with EmbeddedVectorStore.open(path, dim=16, ann_threshold=100) as s:
            s.add_arrays([f"v{i}" for i in range(80)], vecs[:80])
            s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=5))
            assert faiss_warnings(caplog) == []  # below the threshold: nothing to say
            for lo in range(80, 320, 40):
                s.add_arrays([f"v{i}" for i in range(lo, lo + 40)], vecs[lo : lo + 40])
                for q in queries:
                    r = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5))
                    assert r.plan == "exact"
                    assert r.ids == exact_ids(vecs[: lo + 40], list(range(lo + 40)), q, 5)
            assert s.wait_for_index(5)
            st = s.stats()
            assert (st["ann_indexed_rows"], st["ann_active"], st["indexer_error"]) == (0, False, None)
        warnings = faiss_warnings(caplog)
        assert len(warnings) == 1
        assert warnings[0] == (
            f"{path}: 120 vectors reach ann_threshold (100) but faiss is not installed: exact search; "
            "pip install 'kvgraph[ann]' for an HNSW index"
        )
        assert not (path / "cache" / "hnsw.kvg").exists()
    # the same store where faiss is installed builds its index as before
    with EmbeddedVectorStore.open(path) as s:
        s.build_index()
        assert s.stats()["ann_indexed_rows"] == 320
        # The background indexer the open started may still hold the index's lock, and a query
        # does not wait for it (it searches exactly meanwhile): let it finish first.
        assert s.wait_for_index(10)
        assert s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=5)).plan.startswith("ann")
    assert (path / "cache" / "hnsw.kvg").exists()


def test_saved_hnsw_index_opens_searches_exactly_and_is_kept_without_faiss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kvgraph")
    n, dim = 1200, 16
    vecs, queries = clustered(n, dim), clustered(8, dim, seed=1)
    ids = [f"v{i}" for i in range(n)]
    path = tmp_path / "s"
    with EmbeddedVectorStore.open(path, dim=dim, ann_threshold=500, background_indexing=False) as s:
        s.add_arrays(ids[:1000], vecs[:1000])
        s.build_index()
    hnsw = path / "cache" / "hnsw.kvg"
    saved = hnsw.read_bytes()
    deleted = list(range(0, 1000, 9))
    live = [i for i in range(n) if i not in set(deleted)]

    def search(s: EmbeddedVectorStore, rows: list[int]) -> None:
        for q in queries:
            r = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10))
            assert r.plan == "exact" and r.ids == exact_ids(vecs, rows, q, 10)

    with without_faiss():
        with EmbeddedVectorStore.open(path, read_only=True) as reader:
            search(reader, list(range(1000)))
        with EmbeddedVectorStore.open(path) as s:
            search(s, list(range(1000)))
            s.add_arrays(ids[1000:], vecs[1000:])  # writes keep the saved index valid: it covers a prefix
            s.delete([ids[i] for i in deleted])
            search(s, live)
            s.checkpoint()
        assert hnsw.read_bytes() == saved  # neither read nor rewritten
        assert len(faiss_warnings(caplog)) == 2  # once per store object (the reader, the writer)
        assert faiss_warnings(caplog)[1].endswith("(the saved one, cache/hnsw.kvg, is kept and used again then)")
    # faiss back: the saved graph serves again; rows added meanwhile are searched exactly as its tail
    with EmbeddedVectorStore.open(path) as s:
        assert s.wait_for_index(60)
        for q in queries:
            r = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10))
            assert r.plan.startswith("ann") and not set(r.ids) & {ids[i] for i in deleted}
            assert len(set(r.ids) & set(exact_ids(vecs, live, q, 10))) >= 9
        assert s.stats()["ann_indexed_rows"] == 1000
        s.build_index()
        assert s.stats()["ann_indexed_rows"] == n


def test_asking_for_the_hnsw_index_without_faiss_names_the_extra(tmp_path: Path) -> None:
    vecs = clustered(50, 8)
    with without_faiss(), EmbeddedVectorStore.open(tmp_path / "s", dim=8) as s:
        q = VectorStoreQuery(query_embedding=vecs[0], similarity_top_k=3, strategy="ann")
        with pytest.raises(MissingDependencyError, match=NO_FAISS):
            s.query(q)  # even on an empty store: the request itself cannot be met
        s.add_arrays([f"v{i}" for i in range(50)], vecs)
        asks: list[Callable[[], object]] = [
            s.build_index,
            lambda: s.query(q),
            lambda: s.query_batch(vecs[:4], 3, strategy="ann"),
            lambda: HnswIndex(8, "cosine"),
        ]
        for ask in asks:
            with pytest.raises(MissingDependencyError, match=NO_FAISS):
                ask()
        # nothing was lost, and exact search still answers (exact=True wins over strategy="ann")
        assert s.count() == 50
        exact = VectorStoreQuery(query_embedding=vecs[0], similarity_top_k=3, strategy="ann", exact=True)
        assert s.query(exact).ids[0] == "v0"


def test_knowledge_base_with_a_saved_hnsw_index_opens_and_searches_without_faiss(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    kb_path = tmp_path / "kb"
    questions = ["which wifi channels don't overlap", "how often should compost be turned"]
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
        want = [[h.node.id for h in kb.search(text, k=3, mode="dense")] for text in questions]
    # a big knowledge base has an HNSW index: give this one its own (the threshold is stored with it)
    with EmbeddedVectorStore.open(kb_path / "store", ann_threshold=1) as s:
        s.build_index()
    hnsw = kb_path / "store" / "cache" / "hnsw.kvg"
    saved = hnsw.read_bytes()
    with without_faiss():
        with KnowledgeBase.open(kb_path) as kb:
            got = [[h.node.id for h in kb.search(text, k=3, mode="dense")] for text in questions]
            assert got == want
            assert kb.search(questions[0], k=3)  # the default mode too
        with KnowledgeBase.open(kb_path, read_only=True) as kb:
            assert [h.node.id for h in kb.search(questions[0], k=3, mode="dense")] == want[0]
    assert hnsw.read_bytes() == saved


def test_chunked_top_k_selects_like_the_full_selection() -> None:
    rng = np.random.default_rng(7)
    for trial in range(200):
        nq, n, k = int(rng.integers(1, 6)), int(rng.integers(1, 3000)), int(rng.integers(0, 60))
        if trial % 2:  # few distinct values: ties at the k-th score, across chunk borders
            scores = rng.integers(-3, 4, size=(nq, n)).astype(np.float32)
        else:
            scores = rng.normal(size=(nq, n)).astype(np.float32)
        want = dense.top_k_rows(scores, k)
        got, got_scores = dense.top_k_rows_chunked(scores, k, chunk=int(rng.integers(1, 64)))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_scores, np.take_along_axis(scores, want, axis=1))
