"""Deletes purge: after vacuum nothing of a deleted node is left in any file of the store."""

from __future__ import annotations

import numpy as np

from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery


def all_bytes(path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and p.name != "LOCK")


def test_vacuum_purges_every_trace(tmp_path):
    path = tmp_path / "kb"
    rng = np.random.default_rng(0)
    secret_vec = rng.normal(size=16).astype(np.float32)
    secret_vec /= np.linalg.norm(secret_vec)  # cosine stores unit vectors: look for these bytes
    keep = [
        Node(id=f"k{i}", text=f"ordinary text {i}", metadata={"n": i}, embedding=rng.normal(size=16))
        for i in range(300)
    ]
    with EmbeddedVectorStore.open(path, dim=16, ann_threshold=100) as s:
        s.add(keep)
        s.add(
            [
                Node(
                    id="secret-node",
                    text="zanzibarquux confidential",
                    metadata={"owner": "xylophonist"},
                    embedding=secret_vec,
                    ref_doc_id="secret-doc",
                )
            ]
        )
        s.wait_for_index(60)
        s.checkpoint()  # caches now hold the secret too
        assert s.query(VectorStoreQuery(query_str="zanzibarquux", mode="sparse")).ids == ["secret-node"]
    assert secret_vec.tobytes() in all_bytes(path)
    with EmbeddedVectorStore.open(path, ann_threshold=100) as s:
        assert s.delete_ref_doc("secret-doc") == 1
        # gone from results at once
        assert s.query(VectorStoreQuery(query_str="zanzibarquux", mode="sparse")).ids == []
        assert "secret-node" not in s.query(VectorStoreQuery(query_embedding=secret_vec, similarity_top_k=5)).ids
        res = s.vacuum()
        assert res == {"removed_rows": 1, "rows": 300}
        s.wait_for_index(60)
        s.checkpoint()
        hit = s.query(VectorStoreQuery(query_embedding=keep[7].embedding, similarity_top_k=1))
        assert hit.ids == ["k7"]
        assert s.query(VectorStoreQuery(query_str="ordinary 7", mode="sparse", similarity_top_k=1)).ids == ["k7"]
        assert s.query(VectorStoreQuery(query_embedding=secret_vec, similarity_top_k=3, filters={"n": 5})).ids == ["k5"]
    blob = all_bytes(path)
    assert b"zanzibarquux" not in blob
    assert b"xylophonist" not in blob
    assert b"secret-node" not in blob
    assert secret_vec.tobytes() not in blob
    with EmbeddedVectorStore.open(path) as s:
        assert s.count() == 300 and s.stats()["dead_rows"] == 0


def test_upsert_leaves_dead_rows_until_vacuum(tmp_path):
    with EmbeddedVectorStore.open(tmp_path / "kb", dim=4) as s:
        s.add_arrays(["a", "b"], np.eye(4, dtype=np.float32)[:2])
        s.add_arrays(["a"], np.eye(4, dtype=np.float32)[2:3])
        assert s.stats()["dead_rows"] == 1 and s.count() == 2
        s.vacuum()
        assert s.stats()["dead_rows"] == 0 and s.count() == 2
        np.testing.assert_allclose(s.get(["a"])[0].embedding, np.eye(4)[2], atol=1e-6)


def test_added_since_lists_new_nodes_until_a_delete_or_a_vacuum(tmp_path):
    """What a document-graph update reads instead of every id (kvgraph.docgraph.incremental)."""
    rng = np.random.default_rng(1)

    def nodes(prefix, n, doc):
        return [Node(id=f"{prefix}{i}", text=f"t {i}", embedding=rng.normal(size=8), ref_doc_id=doc) for i in range(n)]

    with EmbeddedVectorStore.open(tmp_path / "s", dim=8) as s:
        s.add(nodes("a", 5, "d1"))
        marker = s.change_marker()
        assert s.added_since(marker) == []
        s.add(nodes("b", 3, "d2"))
        s.add(nodes("c", 2, "d3"))
        assert s.added_since(marker) == ["b0", "b1", "b2", "c0", "c1"]  # insertion order
        later = s.change_marker()
        s.delete_ref_doc("d3")  # new nodes deleted again: the live count still adds up
        assert s.added_since(marker) == ["b0", "b1", "b2"]
        s.delete_ref_doc("d1")  # a node of the marker's time is gone: not a list of additions
        assert s.added_since(marker) is None and s.added_since(later) is None
        now = s.change_marker()
        s.vacuum()  # slots renumbered
        assert s.added_since(now) is None
        assert s.added_since({"slots": "x"}) is None
