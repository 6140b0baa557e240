"""The VectorStore contract, run against every backend (tests/contract/conftest.py).

What every backend must do the same way is asserted the same way; where a backend does something
else by design, the test says what it does instead and checks that:

* sparse search: the embedded store scores with BM25; Postgres ranks with full-text search
  (``ts_rank`` over English stems). Both return only nodes that contain a query term, apply
  filters, and put a node with every query term above nodes with one; the scores differ.
* text and metadata strings with NUL characters: the embedded store keeps them; Postgres cannot
  store them and refuses the node with InvalidInputError, writing nothing.
"""

from __future__ import annotations

import importlib.util
import math
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.servers import VectorBackend
from kvgraph.errors import (
    DimensionMismatchError,
    InvalidFilterError,
    InvalidInputError,
    ReadOnlyError,
    StoreLockedError,
)
from kvgraph.schema import Node
from kvgraph.store import VectorStoreQuery

_REF = Path(__file__).resolve().parents[1] / "store" / "test_filters_property.py"
_spec = importlib.util.spec_from_file_location("kvgraph_filter_reference", _REF)
assert _spec is not None and _spec.loader is not None
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)  # the brute-force reference evaluator and its filter strategies


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def nodes_for(vecs: np.ndarray, metas: list[dict[str, Any]] | None = None, docs: int = 5) -> list[Node]:
    return [
        Node(
            id=f"n{i:04d}",
            text=f"node {i}",
            metadata=(metas[i] if metas else {"i": i, "parity": ["even", "odd"][i % 2]}),
            embedding=v,
            ref_doc_id=f"doc{i % docs}",
        )
        for i, v in enumerate(vecs)
    ]


# ----------------------------------------------------------------------------- records


def test_upsert_get_delete_round_trip(vector_backend: VectorBackend) -> None:
    store = vector_backend.open()
    md = {
        "s": "héllo",
        "i": -3,
        "big": 2**64 + 1,
        "ts": 1733363000123456789,
        "f": 0.1,
        "one": 1.0,
        "b": False,
        "none": None,
        "tags": ["a", 2, 2.5, True, None],
    }
    rels = {"previous": "a0", "child": ["c1", "c2"]}
    emb = [3.0, 4.0, 0.0]
    store.add([Node(id="a1", text="first", metadata=md, embedding=emb, ref_doc_id="d1", relationships=rels)])
    store.add([Node(id="a2", text="second", metadata={}, embedding=[0.0, 1.0, 0.0], ref_doc_id="d2")])
    got, missing = store.get(["a1", "zz"])
    assert missing is None
    assert got.text == "first" and got.ref_doc_id == "d1" and got.relationships == rels
    assert got.metadata == md
    assert all(type(got.metadata[k]) is type(v) for k, v in md.items())  # 1.0 stays a float, True a bool
    np.testing.assert_allclose(np.asarray(got.embedding), emb, rtol=1e-6)
    assert store.count() == 2
    # the same id replaces: the count stays, the new text and metadata win, and it moves to the end
    store.add([Node(id="a1", text="first again", metadata={"v": 2}, embedding=emb, ref_doc_id="d1")])
    assert store.count() == 2
    assert store.get(["a1"])[0].text == "first again"
    assert store.ids() == ["a2", "a1"]
    assert store.ids(filters={"s": "héllo"}) == []  # the old metadata is gone from the filters too
    assert store.delete(["a2", "nope"]) == 1
    assert store.delete_ref_doc("d1") == 1
    assert store.count() == 0 and store.get(["a1"]) == [None]


def test_replace_docs_swaps_a_document_in_one_add(vector_backend: VectorBackend) -> None:
    store = vector_backend.open()
    rng = np.random.default_rng(1)
    old = [Node(id=f"old{i}", text="x", embedding=v, ref_doc_id="doc") for i, v in enumerate(unit(rng, 4, 8))]
    store.add(old)
    new = [Node(id=f"new{i}", text="y", embedding=v, ref_doc_id="doc") for i, v in enumerate(unit(rng, 3, 8))]
    store.add(new, replace_docs=["doc"])
    assert sorted(store.ids(doc_ids=["doc"])) == ["new0", "new1", "new2"]
    assert store.count() == 3
    assert store.doc_counts() == {"doc": 3}
    assert [n.id for n in store.get_ref_doc("doc")] == ["new0", "new1", "new2"]


def test_counts_documents_and_user_keys(vector_backend: VectorBackend) -> None:
    store = vector_backend.open()
    rng = np.random.default_rng(2)
    vecs = unit(rng, 6, 4)
    store.add(
        [
            Node(id=f"n{i}", text="t", metadata={"file_path": f"/f{i % 2}.txt"}, embedding=v, ref_doc_id=f"d{i % 2}")
            for i, v in enumerate(vecs)
        ]
    )
    store.add([Node(id="loose", text="t", embedding=vecs[0])])  # no document
    assert store.count() == 7
    assert store.doc_counts() == {"d0": 3, "d1": 3}
    assert store.documents() == {"d0": (3, "/f0.txt"), "d1": (3, "/f1.txt")}
    assert store.get_meta("embedding_model") is None
    store.set_meta("embedding_model", "m1")
    store.set_meta("embedding_model", "m2")
    assert store.get_meta("embedding_model") == "m2"
    assert store.stats()["count"] == 7 and store.stats()["dim"] == 4


# ----------------------------------------------------------------------------- filters


def random_metadata(n: int, seed: int) -> list[dict[str, Any]]:
    """Metadata over the reference's value pools: ints and floats that overlap, big integers, strings
    that share prefixes, bools, nulls, lists; keys sometimes missing."""
    rnd = random.Random(seed)
    numbers = [-1, 0, 1, 2, 3, 10, 0.0, -0.0, 0.5, 1.0, 2.5, -1.5, 2**53, 2**53 + 1, ref.TS, ref.TS - 21, 2**63]
    numbers += [-(2**63), 2**64 + 1, float(ref.TS), 2.0**53, 1e20]
    strings = ["", "a", "ab", "abc", "abd", "b", "ba", "B", "Ab", "1", "é", "ab c", "x"]
    scalars: list[Any] = [*numbers, *strings, True, False, None]
    out = []
    for _ in range(n):
        md: dict[str, Any] = {}
        for key in ref.META_KEYS:
            roll = rnd.random()
            if roll < 0.2:
                continue
            if roll < 0.4 or key == "tags":
                md[key] = [rnd.choice(scalars) for _ in range(rnd.randint(0, 3))]
            else:
                md[key] = rnd.choice(scalars)
        out.append(md)
    return out


FILTER_METAS = random_metadata(80, seed=7)
FILTER_POOL = ref.observed(FILTER_METAS)


@pytest.fixture
def filter_store(vector_backend: VectorBackend) -> Any:
    store = vector_backend.open()
    rng = np.random.default_rng(3)
    store.add(nodes_for(unit(rng, len(FILTER_METAS), 8), FILTER_METAS))
    return store


def expected_ids(spec: Any) -> list[str]:
    return [f"n{i:04d}" for i in np.flatnonzero(ref.ref_mask(spec, FILTER_METAS))]


HAND_FILTERS: list[Any] = [
    {"a": 1},
    {"a": {"$ne": 1}},
    {"a": {"$gt": 1}},
    {"b": {"$gte": "ab"}},
    {"c": {"$lt": 2**53 + 1}},
    {"a": {"$lte": float(ref.TS)}},
    {"a": {"$in": [1, "a", None, math.nan]}},
    {"b": {"$nin": [True, 2.5]}},
    {"tags": {"$contains": "a"}},
    {"b": {"$text_match": "b"}},
    {"c": {"$exists": False}},
    {"tags": []},
    {"a": {"$gt": math.inf}},
    {"a": {"$lt": math.inf}},
    {"$or": [{"a": {"$gt": 2}}, {"$not": {"b": {"$exists": True}}}]},
    {"a": {"$eq": -0.0}},
]


@pytest.mark.parametrize("spec", HAND_FILTERS, ids=[str(f)[:40] for f in HAND_FILTERS])
def test_every_operator_matches_the_reference(filter_store: Any, spec: Any) -> None:
    assert filter_store.ids(filters=spec) == expected_ids(spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=ref.any_filter(FILTER_POOL))
def test_random_filters_match_the_reference(filter_store: Any, spec: Any) -> None:
    assert filter_store.ids(filters=spec) == expected_ids(spec)


def test_filtered_search_returns_the_best_allowed_nodes(filter_store: Any) -> None:
    rng = np.random.default_rng(4)
    q = unit(rng, 1, 8)[0]
    spec = {"$or": [{"a": {"$gte": 1}}, {"tags": {"$contains": "a"}}]}
    allowed = expected_ids(spec)
    res = filter_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, filters=spec))
    vecs = {n.id: np.asarray(n.embedding) for n in filter_store.get(allowed)}
    best = sorted(allowed, key=lambda i: -float(vecs[i] @ q))[:5]
    assert res.ids == best
    assert set(res.ids) <= set(allowed)


def test_malformed_filters_are_refused(filter_store: Any) -> None:
    for bad in ({"a": {"$bogus": 1}}, {"a": {"$in": 3}}, {"$and": []}, {"a": {"$gt": [1]}}):
        with pytest.raises(InvalidFilterError):
            filter_store.ids(filters=bad)


# ----------------------------------------------------------------------------- dense search


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_dense_search_matches_brute_force(vector_backend: VectorBackend, metric: str) -> None:
    store = vector_backend.open(metric=metric)
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    store.add(nodes_for(vecs))
    qs = rng.normal(size=(5, 16)).astype(np.float32)
    for q in qs:
        if metric == "cosine":
            sims = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
        elif metric == "dot":
            sims = vecs @ q
        else:
            sims = 1.0 / (1.0 + np.linalg.norm(vecs - q, axis=1))
        want = np.argsort(-sims, kind="stable")[:7]
        res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=7))
        assert res.ids == [f"n{i:04d}" for i in want]
        np.testing.assert_allclose(res.similarities, sims[want], rtol=1e-4, atol=1e-5)
        assert [n.id for n in res.nodes] == res.ids
    # restrictions by node id and by document
    res = store.query(VectorStoreQuery(query_embedding=qs[0], similarity_top_k=50, doc_ids=["doc1"], node_ids=None))
    assert res.ids and all(int(i[1:]) % 5 == 1 for i in res.ids)
    some = ["n0003", "n0100", "n0200"]
    res = store.query(VectorStoreQuery(query_embedding=qs[0], similarity_top_k=10, node_ids=some))
    assert sorted(res.ids) == some


def test_batch_queries_equal_single_queries(vector_backend: VectorBackend) -> None:
    store = vector_backend.open()
    rng = np.random.default_rng(6)
    store.add(nodes_for(unit(rng, 200, 12)))
    qs = unit(rng, 6, 12)
    batch = store.query_batch(qs, similarity_top_k=4, filters={"parity": "odd"})
    for q, got in zip(qs, batch):
        one = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=4, filters={"parity": "odd"}))
        assert got.ids == one.ids
        np.testing.assert_allclose(got.similarities, one.similarities, rtol=1e-5)
        assert all(int(i[1:]) % 2 == 1 for i in got.ids)


def test_mmr_trades_relevance_for_diversity(vector_backend: VectorBackend) -> None:
    store = vector_backend.open()
    rng = np.random.default_rng(8)
    base = unit(rng, 1, 8)[0]
    near = np.stack([base + 0.01 * rng.normal(size=8) for _ in range(10)])  # ten near-copies
    far = unit(rng, 30, 8)
    store.add(nodes_for(np.concatenate([near, far]).astype(np.float32)))
    dense = store.query(VectorStoreQuery(query_embedding=base, similarity_top_k=4))
    relevant = store.query(VectorStoreQuery(query_embedding=base, similarity_top_k=4, mode="mmr", mmr_threshold=1.0))
    diverse = store.query(VectorStoreQuery(query_embedding=base, similarity_top_k=4, mode="mmr", mmr_threshold=0.1))
    assert relevant.ids == dense.ids
    assert diverse.ids[0] == dense.ids[0]
    assert sum(int(i[1:]) < 10 for i in diverse.ids) < 4  # not only near-copies
    assert all(n.embedding is None for n in diverse.nodes)


# ----------------------------------------------------------------------------- sparse and hybrid

TEXTS = [
    "apples and pears grow in the orchard",
    "the orchard keeper sells apples",
    "bananas ripen in the sun",
    "cherries, apples and bananas make a fruit salad",
    "engines need oil and fuel",
    "a quiet harbour at dawn",
]


def text_store(backend: VectorBackend) -> Any:
    store = backend.open()
    rng = np.random.default_rng(9)
    vecs = unit(rng, len(TEXTS), 8)
    store.add(
        [
            Node(id=f"t{i}", text=t, metadata={"kind": "fruit" if i < 4 else "other"}, embedding=v, ref_doc_id="d")
            for i, (t, v) in enumerate(zip(TEXTS, vecs))
        ]
    )
    return store, vecs


def test_sparse_search_finds_the_query_terms(vector_backend: VectorBackend) -> None:
    store, _ = text_store(vector_backend)
    res = store.query(VectorStoreQuery(query_str="apples bananas", mode="sparse", similarity_top_k=10))
    words = {f"t{i}": set(t.replace(",", "").split()) for i, t in enumerate(TEXTS)}
    assert res.ids, res.plan
    assert all(words[i] & {"apples", "bananas"} for i in res.ids)  # every hit holds a query term
    assert set(res.ids) == {"t0", "t1", "t2", "t3"}
    assert res.ids[0] == "t3"  # the only node with both terms ranks first
    assert all(a >= b for a, b in zip(res.similarities, res.similarities[1:]))
    other = {"kind": "other"}
    only = store.query(VectorStoreQuery(query_str="apples", mode="sparse", similarity_top_k=10, filters=other))
    assert only.ids == []
    none = store.query(VectorStoreQuery(query_str="submarine", mode="sparse", similarity_top_k=3))
    assert none.ids == []
    assert res.plan == ("bm25" if vector_backend.name == "embedded" else "fts")


def test_hybrid_fuses_dense_and_sparse(vector_backend: VectorBackend) -> None:
    store, vecs = text_store(vector_backend)
    q = vecs[5] + 0.05  # densely closest to t5 ("harbour"), which holds no query term
    dense = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
    sparse = store.query(VectorStoreQuery(query_str="apples bananas", mode="sparse", similarity_top_k=3))
    fused = store.query(
        VectorStoreQuery(query_embedding=q, query_str="apples bananas", mode="hybrid", similarity_top_k=6)
    )
    assert dense.ids[0] in fused.ids and sparse.ids[0] in fused.ids
    as_dense = store.query(
        VectorStoreQuery(query_embedding=q, query_str="apples bananas", mode="hybrid", alpha=1.0, similarity_top_k=3)
    )
    # min-max scaling gives each list's last hit 0, a tie with nodes of the other list: compare the top 2
    assert as_dense.ids[:2] == dense.ids[:2]
    as_sparse = store.query(
        VectorStoreQuery(query_embedding=q, query_str="apples bananas", mode="hybrid", alpha=0.0, similarity_top_k=3)
    )
    assert as_sparse.ids[:2] == sparse.ids[:2]


# ----------------------------------------------------------------------------- bad input, writers


def test_bad_input_is_refused_and_nothing_is_written(vector_backend: VectorBackend) -> None:
    store = vector_backend.open(metric="cosine")
    store.add([Node(id="ok", text="t", embedding=[1.0, 0.0, 0.0], ref_doc_id="d")])
    bad_adds: list[tuple[type[Exception], list[Node]]] = [
        (DimensionMismatchError, [Node(id="x", embedding=[1.0, 0.0])]),
        (InvalidInputError, [Node(id="x", embedding=[math.nan, 0.0, 1.0])]),
        (InvalidInputError, [Node(id="x", embedding=[0.0, 0.0, 0.0])]),
        (InvalidInputError, [Node(id="x", embedding=None)]),
        (InvalidInputError, [Node(id="x", embedding=[1.0, 0, 0]), Node(id="x", embedding=[1.0, 0, 0])]),
        (InvalidInputError, [Node(id="y", embedding=[1.0, 0, 0]), Node(id="", embedding=[1.0, 0, 0])]),
        (InvalidInputError, [Node(id="y", embedding=[1.0, 0, 0], metadata={"k": {"nested": 1}})]),
        (InvalidInputError, [Node(id="y", embedding=[1.0, 0, 0], metadata={"k": math.inf})]),
    ]
    for error, nodes in bad_adds:
        with pytest.raises(error):
            store.add(nodes)
    assert store.ids() == ["ok"]
    for bad in (
        VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1),
        VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=0),
        VectorStoreQuery(query_embedding=[0.0, 0.0, 0.0], similarity_top_k=1),
        VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], mode="telepathy"),
        VectorStoreQuery(mode="sparse", query_str="  "),
        VectorStoreQuery(mode="dense"),
    ):
        with pytest.raises(InvalidInputError):
            store.query(bad)
    nul = [Node(id="z", text="a\x00b", embedding=[0.0, 1.0, 0.0], metadata={"k": "v\x00"})]
    if vector_backend.name == "postgres":  # Postgres text cannot hold NUL: refused, nothing written
        with pytest.raises(InvalidInputError, match="NUL"):
            store.add(nul)
        assert store.ids() == ["ok"]
    else:  # the embedded store keeps the text as given
        store.add(nul)
        assert store.get(["z"])[0].text == "a\x00b"


def test_one_writer_and_read_only_readers(vector_backend: VectorBackend) -> None:
    writer = vector_backend.open(dim=3)
    writer.add([Node(id="a", text="t", embedding=[1.0, 0.0, 0.0], ref_doc_id="d")])
    with pytest.raises(StoreLockedError):
        vector_backend.open()
    reader = vector_backend.open(read_only=True)
    assert reader.ids() == ["a"]
    with pytest.raises(ReadOnlyError):
        reader.add([Node(id="b", text="t", embedding=[0.0, 1.0, 0.0])])
    with pytest.raises(ReadOnlyError):
        reader.delete(["a"])
    writer.add([Node(id="b", text="t", embedding=[0.0, 1.0, 0.0], ref_doc_id="d")])
    assert reader.count() == 2  # a reader sees what the writer committed


def test_a_reader_sees_each_document_whole(vector_backend: VectorBackend) -> None:
    """Documents of 40 chunks are added while a reader counts chunks per document: never a part of one."""
    writer = vector_backend.open(dim=8)
    reader = vector_backend.open(read_only=True)
    rng = np.random.default_rng(10)
    vecs = unit(rng, 40, 8)
    seen: list[dict[str, int]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(reader.doc_counts())

    t = threading.Thread(target=read)
    t.start()
    try:
        for d in range(15):
            writer.add([Node(id=f"d{d}-{i}", text="t", embedding=v, ref_doc_id=f"d{d}") for i, v in enumerate(vecs)])
    finally:
        done.set()
        t.join()
    assert seen and all(n == 40 for counts in seen for n in counts.values())
    assert reader.doc_counts() == {f"d{d}": 40 for d in range(15)}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["add", "replace", "delete", "drop_doc"]), min_size=1, max_size=8), st.integers(0, 99))
def test_random_writes_agree_with_a_model(vector_backend: VectorBackend, ops: list[str], seed: int) -> None:
    """Any sequence of adds, replacements and deletes leaves exactly the nodes a dict model holds."""
    store = vector_backend.open(dim=4) if not vector_backend.opened else vector_backend.opened[0]
    store.delete(store.ids())
    rng = np.random.default_rng(seed)
    model: dict[str, str] = {}
    for op in ops:
        i = int(rng.integers(0, 6))
        if op in ("add", "replace"):
            node = Node(id=f"m{i}", text=op, embedding=unit(rng, 1, 4)[0], ref_doc_id=f"doc{i % 2}")
            store.add([node])
            model[node.id] = f"doc{i % 2}"
        elif op == "delete":
            assert store.delete([f"m{i}"]) == int(model.pop(f"m{i}", None) is not None)
        else:
            doc = f"doc{i % 2}"
            gone = [k for k, d in model.items() if d == doc]
            assert store.delete_ref_doc(doc) == len(gone)
            for k in gone:
                del model[k]
    assert sorted(store.ids()) == sorted(model)
    assert store.count() == len(model)
