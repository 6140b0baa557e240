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


def test_query_batch_takes_depth_and_strategy(ann_store, data):
    _, queries = data
    auto = ann_store.query_batch(queries[:5], similarity_top_k=5)
    assert {r.plan for r in auto} == {"ann(ef=128)"}
    deep = ann_store.query_batch(queries[:5], similarity_top_k=5, ef_search=300)
    assert {r.plan for r in deep} == {"ann(ef=300)"}
    exact = ann_store.query_batch(queries[:5], similarity_top_k=5, strategy="exact")
    assert {r.plan for r in exact} == {"exact"}
    assert {r.plan for r in ann_store.query_batch(queries[:5], similarity_top_k=5, exact=True)} == {"exact"}
    flt = ann_store.query_batch(queries[:5], similarity_top_k=5, filters={"bucket": {"$lt": 900}}, strategy="ann")
    assert all(r.plan.startswith("ann-filtered") for r in flt)
    for q, b, e in zip(queries[:5], deep, exact):
        single = ann_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, ef_search=300))
        assert b.ids == single.ids
        assert len(set(b.ids) & set(e.ids)) >= 4  # deep ANN agrees with exact search


def test_filtered_ann_that_runs_out_of_allowed_nodes_falls_back_to_exact(ann_store, data):
    _, queries = data
    flt = {"bucket": 7}  # 6 allowed nodes: a shallow graph walk may find fewer
    for q in queries[:10]:
        res = ann_store.query(
            VectorStoreQuery(query_embedding=q, similarity_top_k=10, filters=flt, strategy="ann", ef_search=10)
        )
        exact = ann_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, filters=flt, exact=True))
        assert len(exact.ids) == 6
        assert res.ids == exact.ids  # complete, in exact order, whichever way it was answered
        assert res.plan.startswith("ann-filtered(ef=10)")


def test_vectors_storage_keeps_no_vector_copy_on_disk(tmp_path, data):
    vecs, queries = data
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=1000, background_indexing=False) as s:
        s.add_arrays([f"v{i}" for i in range(3000)], vecs[:3000])
        s.build_index()
        s.checkpoint()
    with EmbeddedVectorStore.open(
        tmp_path / "flat", dim=DIM, ann_threshold=1000, background_indexing=False, ann_storage="flat"
    ) as s:
        s.add_arrays([f"v{i}" for i in range(3000)], vecs[:3000])
        s.build_index()
        s.checkpoint()
    graph = (path / "cache" / "hnsw.kvg").stat().st_size
    with_copy = (tmp_path / "flat" / "cache" / "hnsw.kvg").stat().st_size
    assert graph <= with_copy - 3000 * DIM * 4  # the graph only; the float32 rows stay in the vector file
    blob = (path / "cache" / "hnsw.kvg").read_bytes()
    assert not any(vecs[i].tobytes() in blob for i in (0, 1234, 2999))
    with EmbeddedVectorStore.open(path, background_indexing=False) as s:
        r, plans = recall(s, queries[:20], 10)
        assert plans == {"ann"} and r >= 0.95
        # rows added later: searched exactly as a tail, then indexed; the index follows the file
        s.add_arrays([f"w{i}" for i in range(2500)], vecs[3000:5500])
        res = s.query(VectorStoreQuery(query_embedding=vecs[4000], similarity_top_k=1))
        assert res.plan.startswith("ann") and res.ids == ["w1000"]
        s.build_index()
        assert s.stats()["ann_indexed_rows"] == 5500
        res = s.query(VectorStoreQuery(query_embedding=vecs[5400], similarity_top_k=1))
        assert res.ids == ["w2400"]
        r, plans = recall(s, queries[:20], 10)
        assert plans == {"ann"} and r >= 0.95


@pytest.mark.parametrize("storage", ["sq8", "flat", "vectors"])
def test_every_storage_kind_finds_the_neighbours(tmp_path, data, storage):
    vecs, queries = data
    with EmbeddedVectorStore.open(
        tmp_path / "kb", dim=DIM, ann_threshold=1000, background_indexing=False, ann_storage=storage
    ) as s:
        s.add_arrays([f"v{i}" for i in range(2000)], vecs[:2000])
        s.build_index()
        s.delete([f"v{i}" for i in range(0, 2000, 3)])  # dead rows are skipped by the allow-list
        r, plans = recall(s, queries[:15], 10)
        assert plans == {"ann"} and r >= 0.95
        res = s.query(VectorStoreQuery(query_embedding=vecs[1], similarity_top_k=3))
        assert res.ids[0] == "v1" and res.similarities[0] == pytest.approx(1.0, abs=1e-5)


def test_first_query_after_reopen_uses_the_saved_index(tmp_path, data):
    vecs, queries = data
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=1000) as s:
        s.add_arrays([f"v{i}" for i in range(3000)], vecs[:3000])
        s.wait_for_index(60)
    for _ in range(3):  # the background indexer loads the index at open; the query waits for it
        with EmbeddedVectorStore.open(path) as s:
            res = s.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=5))
            assert res.plan == "ann(ef=128)"
