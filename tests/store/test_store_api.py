"""The embedded store's public API against brute-force numpy references."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from kvgraph.errors import DimensionMismatchError, InvalidInputError
from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStore, VectorStoreQuery


def make_nodes(n: int, dim: int, seed: int = 0, prefix: str = "n") -> list[Node]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        Node(
            id=f"{prefix}{i}",
            text=f"node {i} " + ("alpha" if i % 2 else "beta"),
            metadata={"i": i, "parity": i % 2, "group": f"g{i % 5}"},
            embedding=vecs[i],
            ref_doc_id=f"doc{i % 7}",
            relationships={"next": f"{prefix}{i + 1}"},
        )
        for i in range(n)
    ]


def reference_top_k(vecs: np.ndarray, q: np.ndarray, k: int, metric: str) -> list[int]:
    if metric == "cosine":
        s = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    elif metric == "dot":
        s = vecs @ q
    else:
        s = -np.linalg.norm(vecs - q, axis=1)
    return [int(i) for i in np.argsort(-s, kind="stable")[:k]]


@pytest.fixture
def store(tmp_path):
    s = EmbeddedVectorStore.open(tmp_path / "kb", dim=16)
    yield s
    s.close()


def test_implements_protocol(store):
    assert isinstance(store, VectorStore)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_dense_top_k_matches_brute_force(tmp_path, metric):
    nodes = make_nodes(300, 16, seed=1)
    vecs = np.stack([n.embedding for n in nodes])
    with EmbeddedVectorStore.open(tmp_path / metric, dim=16, metric=metric) as s:
        s.add(nodes)
        rng = np.random.default_rng(2)
        for _ in range(10):
            q = rng.normal(size=16).astype(np.float32)
            res = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=7))
            assert res.ids == [f"n{i}" for i in reference_top_k(vecs, q, 7, metric)]
            assert res.similarities == sorted(res.similarities, reverse=True)
        # similarity values follow the documented definitions
        q = vecs[3] * 0.5
        res = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
        for node_id, sim in zip(res.ids, res.similarities):
            v = vecs[int(node_id[1:])]
            expected = {
                "cosine": float(v @ q / np.linalg.norm(v) / np.linalg.norm(q)),
                "dot": float(v @ q),
                "l2": 1.0 / (1.0 + float(np.linalg.norm(v - q))),
            }[metric]
            assert sim == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_get_returns_what_was_added(store):
    nodes = make_nodes(20, 16)
    store.add(nodes)
    got = store.get(["n3", "missing", "n7"])
    assert got[1] is None
    for g, want in ((got[0], nodes[3]), (got[2], nodes[7])):
        assert g.text == want.text and g.metadata == want.metadata and g.ref_doc_id == want.ref_doc_id
        assert g.relationships == want.relationships
        np.testing.assert_allclose(g.embedding, want.embedding, rtol=1e-5, atol=1e-6)


def test_upsert_replaces_atomically(store):
    store.add(make_nodes(10, 16))
    new = make_nodes(1, 16, seed=9)[0]
    new.id, new.text, new.metadata = "n4", "replacement", {"v": 2}
    store.add([new])
    assert store.count() == 10
    got = store.get(["n4"])[0]
    assert got.text == "replacement" and got.metadata == {"v": 2}
    res = store.query(VectorStoreQuery(query_embedding=new.embedding, similarity_top_k=2))
    assert res.ids[0] == "n4" and res.similarities[0] == pytest.approx(1.0, abs=1e-5)
    # the old version no longer matches its old metadata
    res = store.query(VectorStoreQuery(query_embedding=new.embedding, similarity_top_k=10, filters={"i": 4}))
    assert res.ids == []


def test_delete_and_delete_ref_doc(store):
    nodes = make_nodes(50, 16)
    store.add(nodes)
    assert store.delete(["n1", "n2", "nope"]) == 2
    assert store.delete(["n1"]) == 0
    in_doc3 = {n.id for n in nodes if n.ref_doc_id == "doc3"} - {"n1", "n2"}
    assert store.delete_ref_doc("doc3") == len(in_doc3)
    assert store.count() == 50 - 2 - len(in_doc3)
    res = store.query(VectorStoreQuery(query_embedding=nodes[1].embedding, similarity_top_k=50))
    assert not ({"n1", "n2"} | in_doc3) & set(res.ids)
    assert len(res.ids) == store.count()


def test_node_and_doc_restrictions(store):
    nodes = make_nodes(60, 16)
    store.add(nodes)
    q = nodes[0].embedding
    res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, node_ids=["n5", "n9", "zzz"]))
    assert sorted(res.ids) == ["n5", "n9"]
    res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=100, doc_ids=["doc2"]))
    assert {n.ref_doc_id for n in res.nodes} == {"doc2"} and len(res.ids) == sum(n.ref_doc_id == "doc2" for n in nodes)


def test_top_k_larger_than_collection(store):
    store.add(make_nodes(3, 16))
    res = store.query(VectorStoreQuery(query_embedding=np.ones(16), similarity_top_k=10))
    assert len(res.ids) == 3


def test_empty_store_query(store):
    res = store.query(VectorStoreQuery(query_embedding=np.ones(16), similarity_top_k=3))
    assert res.ids == []


def test_batch_query_equals_single_queries(store):
    nodes = make_nodes(200, 16)
    store.add(nodes)
    qs = np.random.default_rng(5).normal(size=(8, 16)).astype(np.float32)
    batch = store.query_batch(qs, similarity_top_k=5, filters={"parity": 1})
    for q, b in zip(qs, batch):
        single = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, filters={"parity": 1}))
        assert b.ids == single.ids
        np.testing.assert_allclose(b.similarities, single.similarities, rtol=1e-5)


def test_mmr_diversifies(store):
    base = np.zeros(16, dtype=np.float32)
    base[0] = 1
    near = []
    for i in range(5):  # five near-duplicates of the query direction
        v = base.copy()
        v[1] = 0.01 * i
        near.append(Node(id=f"dup{i}", embedding=v))
    other = base.copy()
    other[2] = 0.9  # relevant but different
    store.add([*near, Node(id="other", embedding=other)])
    dense = store.query(VectorStoreQuery(query_embedding=base, similarity_top_k=2))
    assert dense.ids[1].startswith("dup")
    div = store.query(VectorStoreQuery(query_embedding=base, similarity_top_k=2, mode="mmr", mmr_threshold=0.3))
    assert div.ids[0].startswith("dup") and div.ids[1] == "other"


def test_dimension_fixed_at_first_add(tmp_path):
    with EmbeddedVectorStore.open(tmp_path / "kb") as s:
        s.add([Node(id="a", embedding=[1.0, 0.0, 0.0])])
        with pytest.raises(DimensionMismatchError, match=r"dimension 2.*expects 3"):
            s.add([Node(id="b", embedding=[1.0, 0.0])])
    with EmbeddedVectorStore.open(tmp_path / "kb") as s:
        assert s.dim == 3 and s.count() == 1
        with pytest.raises(DimensionMismatchError):
            s.query(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1))


def test_query_argument_errors(store):
    store.add(make_nodes(5, 16))
    with pytest.raises(InvalidInputError, match="query_str"):
        store.query(VectorStoreQuery(mode="sparse", similarity_top_k=1))
    with pytest.raises(InvalidInputError, match="query_embedding"):
        store.query(VectorStoreQuery(mode="dense", similarity_top_k=1))
    with pytest.raises(InvalidInputError, match="mode"):
        store.query(VectorStoreQuery(query_embedding=np.ones(16), mode="fuzzy"))
    with pytest.raises(InvalidInputError, match="NaN"):
        store.query(VectorStoreQuery(query_embedding=[np.nan] * 16))
    with pytest.raises(InvalidInputError, match="zero vector"):
        store.query(VectorStoreQuery(query_embedding=np.zeros(16)))
    with pytest.raises(InvalidInputError, match="alpha"):
        store.query(VectorStoreQuery(query_embedding=np.ones(16), query_str="x", mode="hybrid", alpha=2.0))


def test_hybrid_alpha_extremes_follow_each_side(store):
    nodes = make_nodes(40, 16)
    store.add(nodes)
    q = nodes[0].embedding
    dense = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5))
    sparse = store.query(VectorStoreQuery(query_str="alpha node", mode="sparse", similarity_top_k=5))
    h1 = store.query(
        VectorStoreQuery(query_embedding=q, query_str="alpha", mode="hybrid", alpha=1.0, similarity_top_k=5)
    )
    assert h1.ids == dense.ids
    h0 = store.query(
        VectorStoreQuery(query_embedding=q, query_str="alpha node", mode="hybrid", alpha=0.0, similarity_top_k=5)
    )
    assert set(h0.ids) <= {n.id for n in nodes if "alpha" in n.text} and len(sparse.ids) == 5


def test_add_with_replace_docs_swaps_a_documents_nodes_in_one_commit(tmp_path):
    import numpy as np

    from kvgraph import Node
    from kvgraph.store import EmbeddedVectorStore

    rng = np.random.default_rng(0)

    def node(i: str, doc: str) -> Node:
        return Node(id=i, text=i, embedding=rng.normal(size=8), ref_doc_id=doc)

    with EmbeddedVectorStore.open(tmp_path / "s", dim=8) as s:
        s.add([node("a1", "A"), node("a2", "A"), node("a3", "A"), node("b1", "B")])
        s.add([node("a2", "A"), node("a4", "A")], replace_docs=["A"])
        assert sorted(n.id for n in s.get(["a1", "a2", "a3", "a4", "b1"]) if n) == ["a2", "a4", "b1"]
        assert s.count() == 3
        s.add([], replace_docs=["A"])  # a document that now has no nodes
        assert s.count() == 1
    with EmbeddedVectorStore.open(tmp_path / "s", read_only=True) as s:
        assert [n.id for n in s.get(["a2", "a4", "b1"]) if n] == ["b1"]


def test_ids_lists_live_nodes_matching_a_filter_in_insertion_order(tmp_path):
    import numpy as np

    from kvgraph import Node
    from kvgraph.store import EmbeddedVectorStore

    rng = np.random.default_rng(1)
    with EmbeddedVectorStore.open(tmp_path / "s", dim=4) as s:
        assert s.ids() == []
        s.add(
            [
                Node(id=f"n{i}", embedding=rng.normal(size=4), metadata={"i": i}, ref_doc_id=f"d{i % 2}")
                for i in range(6)
            ]
        )
        s.delete(["n2"])
        s.add([Node(id="n0", embedding=rng.normal(size=4), metadata={"i": 10}, ref_doc_id="d0")])  # re-added last
        assert s.ids() == ["n1", "n3", "n4", "n5", "n0"]
        assert s.ids(filters={"i": {"$gte": 4}}) == ["n4", "n5", "n0"]
        assert s.ids(doc_ids=["d1"]) == ["n1", "n3", "n5"]
        assert s.ids(filters={"i": {"$lt": 5}}, doc_ids=["d0"]) == ["n4"]


def test_result_nodes_are_what_the_query_saw_even_after_writes(tmp_path):
    nodes = make_nodes(50, 16, seed=5)
    with EmbeddedVectorStore.open(tmp_path / "kb", dim=16) as s:
        s.add(nodes)
        q = nodes[3].embedding
        first = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
        batch = s.query_batch(np.stack([q]), similarity_top_k=3)[0]
        assert first.ids[0] == "n3"
        # replace and delete the hits before anyone looked at the nodes
        s.add([Node(id="n3", text="changed", metadata={"i": -1}, embedding=-q)])
        s.delete(first.ids[1:])
        s.vacuum()  # renumbers slots
        for res in (first, batch):
            assert [n.id for n in res.nodes] == res.ids
            by_id = {n.id: n for n in res.nodes}
            assert by_id["n3"].text == nodes[3].text and by_id["n3"].metadata == nodes[3].metadata
            assert by_id["n3"].relationships == {"next": "n4"}
        after = s.query(VectorStoreQuery(query_embedding=-q, similarity_top_k=1))
        copied = pickle.loads(pickle.dumps(s.query(VectorStoreQuery(query_embedding=-q, similarity_top_k=2))))
        assert copied.ids[0] == "n3" and copied.nodes[0].text == "changed" and len(copied.nodes) == 2
    assert after.nodes[0].text == "changed"  # closing the store built the pending nodes


@pytest.mark.parametrize("read_only", [False, True])
def test_one_node_of_a_result_is_built_alone_and_is_what_the_query_saw(tmp_path, read_only):
    nodes = make_nodes(50, 16, seed=6)
    with EmbeddedVectorStore.open(tmp_path / "kb", dim=16) as w:
        w.add(nodes)
        q = nodes[7].embedding
        reader = EmbeddedVectorStore.open(tmp_path / "kb", read_only=True) if read_only else w
        try:
            res = reader.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5))
            assert res.ids[0] == "n7"
            second = res.node_at(1)
            assert second.id == res.ids[1] and second.text == nodes[int(res.ids[1][1:])].text
            assert not res.materialized  # only the node asked for was built
            w.add([Node(id="n7", text="changed", metadata={}, embedding=-q)])  # replaced after the query
            w.vacuum()
            first = res.node_at(0)
            assert first.id == "n7" and first.text == nodes[7].text
            assert [n.id for n in res.nodes] == res.ids
        finally:
            if read_only:
                reader.close()


def test_ties_are_broken_by_insertion_order(tmp_path):
    v = np.zeros((6, 4), dtype=np.float32)
    v[:, 0] = 1.0
    v[[1, 4], 1] = 1.0  # two groups of equal vectors
    ids = ["a", "b", "c", "d", "e", "f"]
    with EmbeddedVectorStore.open(tmp_path / "kb", dim=4, metric="dot") as s:
        s.add_arrays(ids, v)
        q = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
        for k in range(1, 7):
            res = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=k))
            assert res.ids == ["a", "b", "c", "d", "e", "f"][:k]
        q2 = np.array([1.0, 1.0, 0.0, 0.0], dtype=np.float32)
        res = s.query(VectorStoreQuery(query_embedding=q2, similarity_top_k=3))
        assert res.ids == ["b", "e", "a"]
        batch = s.query_batch(np.stack([q2] * 30), similarity_top_k=3)
        assert all(r.ids == ["b", "e", "a"] for r in batch)
        sub = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=2, node_ids=["f", "c", "d"]))
        assert sub.ids == ["c", "d"]
