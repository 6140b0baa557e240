"""The HNSW path and the filtered-search planner, checked against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

N, DIM = 6000, 32


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(60, dim))
    x = centers[rng.integers(0, 60, n)] + 0.35 * rng.normal(size=(n, dim))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(N, DIM, 0), clustered(40, DIM, 1)


@pytest.fixture(scope="module")
def ann_store(tmp_path_factory, data):
    vecs, _ = data
    path = tmp_path_factory.mktemp("ann") / "kb"
    s = EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=2000)
    bucket = np.arange(N) % 1000
    s.add_arrays([f"v{i}" for i in range(N)], vecs, metadatas=[{"bucket": int(b)} for b in bucket])
    assert s.wait_for_index(120)
    yield s
    s.close()


def recall(store, queries, k, filters=None, **kw):
    hits = total = 0
    plans = set()
    for q in queries:
        approx = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=k, filters=filters, **kw))
        exact = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=k, filters=filters, exact=True))
        plans.add(approx.plan.split("(")[0])
        hits += len(set(approx.ids) & set(exact.ids))
        total += len(exact.ids)
    return hits / max(total, 1), plans


def test_unfiltered_queries_use_ann_with_high_recall(ann_store, data):
    r, plans = recall(ann_store, data[1], 10)
    assert plans == {"ann"}
    assert r >= 0.95


@pytest.mark.parametrize("allowed", [500, 100, 10, 1])  # per mille: 50%, 10%, 1%, 0.1%
def test_filtered_recall_at_every_selectivity(ann_store, data, allowed):
    flt = {"bucket": {"$lt": allowed}}
    r, _plans = recall(ann_store, data[1], 10, flt)
    assert r >= 0.95
    res = ann_store.query(VectorStoreQuery(query_embedding=data[1][0], similarity_top_k=10, filters=flt))
    assert all(n.metadata["bucket"] < allowed for n in res.nodes)


def test_planner_picks_exact_for_selective_and_ann_for_broad_filters(ann_store, data):
    q = data[1][0]
    broad = ann_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, filters={"bucket": {"$lt": 900}}))
    narrow = ann_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, filters={"bucket": {"$lt": 3}}))
    assert broad.plan.startswith("ann-filtered")
    assert narrow.plan == "exact-subset"


def test_forced_ann_with_allow_list_only_returns_allowed(ann_store, data):
    res = ann_store.query(
        VectorStoreQuery(query_embedding=data[1][2], similarity_top_k=10, filters={"bucket": 7}, strategy="ann")
    )
    assert res.plan.startswith("ann-filtered")
    assert res.ids and all(n.metadata["bucket"] == 7 for n in res.nodes)


def test_deleted_nodes_never_come_back_from_ann(tmp_path, data):
    vecs, queries = data
    with EmbeddedVectorStore.open(tmp_path / "kb", dim=DIM, ann_threshold=2000) as s:
        s.add_arrays([f"v{i}" for i in range(3000)], vecs[:3000])
        s.wait_for_index(60)
        first = s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=5))
        assert first.plan.startswith("ann")
        s.delete(first.ids)
        again = s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=5))
        assert again.plan.startswith("ann") and not set(first.ids) & set(again.ids) and len(again.ids) == 5


def test_index_persists_and_serves_readers(tmp_path, data):
    vecs, _queries = data
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=2000) as s:
        s.add_arrays([f"v{i}" for i in range(4000)], vecs[:4000])
        s.wait_for_index(60)
    assert (path / "cache" / "hnsw.kvg").exists()
    # rows added after the index was saved are searched exactly as a tail
    with EmbeddedVectorStore.open(path, ann_threshold=2000, background_indexing=False) as s:
        s.add_arrays([f"w{i}" for i in range(500)], vecs[4000:4500])
        res = s.query(VectorStoreQuery(query_embedding=vecs[4100], similarity_top_k=3))
        assert res.plan.startswith("ann") and res.ids[0] == "w100"
    reader = EmbeddedVectorStore.open(path, read_only=True, ann_threshold=2000)
    try:
        res = reader.query(VectorStoreQuery(query_embedding=vecs[10], similarity_top_k=3))
        assert res.plan.startswith("ann") and res.ids[0] == "v10"
        assert reader.count() == 4500
    finally:
        reader.close()


def test_build_index_without_background(tmp_path, data):
    vecs, queries = data
    with EmbeddedVectorStore.open(
        tmp_path / "kb", dim=DIM, ann_threshold=1000, background_indexing=False, ann_storage="flat"
    ) as s:
        s.add_arrays([f"v{i}" for i in range(2000)], vecs[:2000])
        assert s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=3)).plan == "exact"
        s.build_index()
        assert s.stats()["ann_indexed_rows"] == 2000
        r, plans = recall(s, queries[:10], 10)
        assert plans == {"ann"} and r >= 0.95


def test_index_settings_persist_across_reopen(tmp_path, data):
    vecs, queries = data
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=1500, ef_search=200) as s:
        s.add_arrays([f"v{i}" for i in range(2000)], vecs[:2000])
        s.wait_for_index(60)
    with EmbeddedVectorStore.open(path) as s:  # no settings given: the stored ones apply
        assert s.ann_threshold == 1500 and s.ef_search == 200
        s.wait_for_index(60)
        assert s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=3)).plan == "ann(ef=200)"
    reader = EmbeddedVectorStore.open(path, read_only=True)
    try:
        assert reader.ann_threshold == 1500
    finally:
        reader.close()
    with EmbeddedVectorStore.open(path, ann_threshold=10_000) as s:  # given values replace them
        assert s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=3)).plan == "exact"
    with EmbeddedVectorStore.open(path) as s:
        assert s.ann_threshold == 10_000
