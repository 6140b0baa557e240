"""Graph-mode query cost: setup shared per graph, chunks read only for the results, a walk bounded by work."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from graph_support import doc_graph_of, passages_kb

import kvgraph.retrieve.graph as graph_retrieval
from kvgraph.docgraph.build import DocGraph
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.retrieve.base import VectorRetriever
from kvgraph.retrieve.graph import KnowledgeGraphRetriever, _stable_top
from kvgraph.schema import Node

# Ten short passages chained by shared names, so that a walk from any of them reaches most.
PEOPLE = ["Ada Varn", "Bo Keller", "Cy Morrow", "Di Oster", "Ed Quill", "Flo Ranke", "Gus Telm", "Hal Ubbe"]
PASSAGES = {
    f"p{i}": f"{a} met {b} in the town of Lorwick, where {b} later taught music to {a}."
    for i, (a, b) in enumerate(zip(PEOPLE, PEOPLE[1:] + PEOPLE[:1]))
}
QUESTION = "Who taught music to Ada Varn in Lorwick?"


class CountingStore:
    """The real store, counting the ids the retriever reads through ``get``."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.read: list[str] = []

    def get(self, ids: Sequence[str]) -> list[Node | None]:
        self.read += list(ids)
        out: list[Node | None] = self.store.get(ids)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    with passages_kb(tmp_path_factory.mktemp("kb"), PASSAGES) as k:
        yield k


@pytest.fixture(scope="module")
def graph(kb: KnowledgeBase) -> DocGraph:
    return doc_graph_of(kb)


def test_chunks_are_read_only_for_the_results_returned(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    hits = dense.retrieve(QUESTION, 2)  # the walk reaches chunks the base did not return
    store = CountingStore(kb.store)
    kvg = KnowledgeGraphRetriever(dense, graph, store, kb.embedder, seeds=2)  # type: ignore[arg-type]
    everything = kvg.rank(QUESTION, hits)
    assert len(everything) > 5 and len(store.read) == len(everything) - len(hits)
    store.read.clear()
    top = kvg.rank(QUESTION, hits, limit=3)
    assert [(r.node.id, r.score, r.path) for r in top] == [(r.node.id, r.score, r.path) for r in everything[:3]]
    assert len(store.read) <= 3 + 4  # the results not among the base hits, and a few spare
    assert {r.node.id for r in top} - {h.node.id for h in hits} <= set(store.read)


def test_a_deleted_chunk_is_skipped_and_the_next_one_read(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    hits = dense.retrieve(QUESTION, 1)
    full = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, seeds=1).rank(QUESTION, hits)
    gone = full[1].node.id  # reached by the walk, then deleted from the store (the graph is older)

    class WithoutOne(CountingStore):
        def get(self, ids: Sequence[str]) -> list[Node | None]:
            return [None if n is not None and n.id == gone else n for n in super().get(ids)]

    kvg = KnowledgeGraphRetriever(dense, graph, WithoutOne(kb.store), kb.embedder, seeds=1)  # type: ignore[arg-type]
    top = kvg.rank(QUESTION, hits, limit=4)
    assert [r.node.id for r in top] == [r.node.id for r in full if r.node.id != gone][:4]


def test_results_past_the_first_candidates_when_many_were_deleted(
    kb: KnowledgeBase, graph: DocGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rank() orders only the best 2 x (limit + _SLACK) candidates; when chunks deleted since the
    # build leave fewer than ``limit`` of them, it goes on down the whole ranking.
    monkeypatch.setattr(graph_retrieval, "_SLACK", 0)  # this small graph has 8 candidates
    dense = VectorRetriever(kb.store, kb.embedder)
    hits = dense.retrieve(QUESTION, 1)
    full = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, seeds=1).rank(QUESTION, hits)
    assert len(full) > 6
    gone = {r.node.id for r in full[1:4]}  # 3 of the best 4: the first pass finds only one result

    class WithoutMany(CountingStore):
        def get(self, ids: Sequence[str]) -> list[Node | None]:
            return [None if n is not None and n.id in gone else n for n in super().get(ids)]

    kvg = KnowledgeGraphRetriever(dense, graph, WithoutMany(kb.store), kb.embedder, seeds=1)  # type: ignore[arg-type]
    top = kvg.rank(QUESTION, hits, limit=2)
    assert [r.node.id for r in top] == [r.node.id for r in full if r.node.id not in gone][:2]


@pytest.mark.parametrize("seed", range(6))
def test_stable_top_is_the_head_of_a_stable_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.choice([0.1, 0.2, 0.3, 0.5], 300) if seed % 2 else rng.random(300)
    for m in (0, 1, 5, 17, 299, 300, 400):
        assert _stable_top(scores, m).tolist() == np.argsort(-scores, kind="stable")[:m].tolist()
    with_nan = scores.copy()
    with_nan[::7] = np.nan
    assert _stable_top(with_nan, 9).tolist() == np.argsort(-with_nan, kind="stable")[:9].tolist()


def test_setup_is_computed_once_per_graph(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    a = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder)
    b = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, alpha=0.5)
    assert a.adjacency is b.adjacency
    c = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, edge_weights={"SIMILAR": 0.0})
    assert c.adjacency is not a.adjacency and c.adjacency.nnz < a.adjacency.nnz
    assert c.retrieve(QUESTION, 3)  # and the retrievers still answer


def test_work_bound_keeps_the_seeds_and_narrows_the_walk(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    wide = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, seeds=1, entity_weight=0.0)
    narrow = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, seeds=1, entity_weight=0.0, max_edges=1)
    seed = dense.retrieve(QUESTION, 1)[0].node.id
    assert [r.node.id for r in narrow.retrieve(QUESTION, 5)] == [seed]  # no row fits: the seed alone
    assert len(wide.retrieve(QUESTION, 5)) == 5
    for bad in (0, -3, True):
        with pytest.raises(InvalidInputError, match="max_edges"):
            KnowledgeGraphRetriever(dense, graph, max_edges=bad)
