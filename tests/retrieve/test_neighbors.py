"""Neighbour expansion over a real store."""

from __future__ import annotations

import numpy as np

from kvgraph import Node, NodeWithScore
from kvgraph.retrieve import expand_neighbors
from kvgraph.store import EmbeddedVectorStore


def chain(store: EmbeddedVectorStore, doc: str, n: int) -> list[Node]:
    rng = np.random.default_rng(len(doc))
    ids = [f"{doc}-{i}" for i in range(n)]
    nodes = []
    for i, nid in enumerate(ids):
        rel: dict = {"source": doc}
        if i > 0:
            rel["previous"] = ids[i - 1]
        if i < n - 1:
            rel["next"] = ids[i + 1]
        nodes.append(
            Node(id=nid, text=f"chunk {i} of {doc}", embedding=rng.normal(size=4), ref_doc_id=doc, relationships=rel)
        )
    store.add(nodes)
    return nodes


def test_sandwiched_chunk_comes_first_and_nothing_is_duplicated(tmp_path) -> None:
    with EmbeddedVectorStore.open(tmp_path / "s", dim=4) as store:
        a = chain(store, "a", 6)
        b = chain(store, "b", 3)
        hits = [NodeWithScore(a[1], 0.9), NodeWithScore(b[1], 0.8), NodeWithScore(a[3], 0.7)]
        out = expand_neighbors(hits, store, max_extra=3)
        assert [h.node.id for h in out[:3]] == ["a-1", "b-1", "a-3"]
        extra = [h.node.id for h in out[3:]]
        assert extra[0] == "a-2"  # between two hits
        assert len(extra) == 3 and len(set(extra)) == 3 and not set(extra) & {"a-1", "b-1", "a-3"}
        assert extra[1:] == ["a-0", "b-0"]  # then by the score of the hit they neighbour
        by_id = {h.node.id: h for h in out}
        assert by_id["a-2"].score < 0.9 and by_id["a-2"].node.metadata["expanded_from_neighbor"] is True
        assert expand_neighbors([], store) == []
        assert len(expand_neighbors(hits, store, max_extra=0)) == 3
