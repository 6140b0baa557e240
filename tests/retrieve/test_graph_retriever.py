"""KnowledgeGraphRetriever over a real knowledge base: the bridge passage is reachable only through a shared entity."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from graph_support import doc_graph_of, passages_kb

from kvgraph.docgraph.build import DocGraph
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.retrieve.base import RetrievedNode, Retriever, VectorRetriever
from kvgraph.retrieve.graph import KnowledgeGraphRetriever
from kvgraph.schema import NodeWithScore

# A -> B -> C: the question names the Lunar Sonata (A); its passage names the composer Idris
# Vantorek (B); only Vantorek's own passage holds the answer (C, the Orran) and it shares no
# words with the question. The distractors share many, and dense search ranks it last but one.
PASSAGES = {
    "sonata": "The Lunar Sonata is a piano work written in 1911 by the composer Idris Vantorek.",
    "vantorek": "Idris Vantorek grew up in Kelmora, a quiet town on the banks of the Orran.",
    "thames": "The river Thames flows through London, the birthplace of many composers of piano music.",
    "danube": "The Danube is a river that flows through Vienna, where many composers of sonatas were born.",
    "moonlight": "The Moonlight Sonata is a piano sonata whose composer was born in Bonn on the Rhine river.",
    "bees": "Honey bees dance to tell the hive where the flowers are.",
}
QUESTION = "Which river flows through the birthplace of the composer of the Lunar Sonata?"


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    with passages_kb(tmp_path_factory.mktemp("kb"), PASSAGES) as k:
        yield k


@pytest.fixture(scope="module")
def graph(kb: KnowledgeBase) -> DocGraph:
    return doc_graph_of(kb)


def docs(results: Sequence[NodeWithScore]) -> list[str | None]:
    return [r.node.ref_doc_id for r in results]


def test_dense_alone_misses_the_bridge_passage_the_graph_finds_it(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    assert "vantorek" not in docs(dense.retrieve(QUESTION, 5)), "precondition: dense alone must miss it"
    kvg = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder)
    assert isinstance(kvg, Retriever)
    results = kvg.retrieve(QUESTION, 5)
    assert "sonata" in docs(results) and "vantorek" in docs(results)
    bridge = next(r for r in results if r.node.ref_doc_id == "vantorek")
    assert isinstance(bridge, RetrievedNode)
    # The path justifies it: from a seed (the sonata chunk or the question's entity) through Idris Vantorek.
    assert bridge.path[-1] == bridge.node.id
    assert "entity:idris vantorek" in bridge.path
    assert bridge.node.text == PASSAGES["vantorek"] and bridge.node.embedding is None
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_seed_results_have_themselves_as_path(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    results = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder).retrieve(QUESTION, 6)
    sonata = next(r for r in results if r.node.ref_doc_id == "sonata")
    assert sonata.path == [sonata.node.id] and sonata.hit is not None and sonata.hit.id == sonata.node.id


def test_hops_zero_keeps_only_seeds(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    kvg = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, hops=0, seeds=2, entity_weight=0.0)
    results = kvg.retrieve(QUESTION, 5)
    assert len(results) == 2 and all(len(r.path) == 1 for r in results)


def test_title_seeds_add_the_passage_a_question_entity_names(kb: KnowledgeBase, graph: DocGraph) -> None:
    """A question that names the Danube seeds the passage titled "danube", though dense search ranks it lower."""
    question = "Do honey bees dance to show the hive flowers by the Danube?"
    dense = VectorRetriever(kb.store, kb.embedder)
    assert docs(dense.retrieve(question, 1)) != ["danube"], "precondition: dense must not rank it first"
    only_seeds = {"hops": 0, "seeds": 1}
    plain = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, title_seeds=False, **only_seeds)
    titled = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, **only_seeds)
    assert docs(plain.retrieve(question, 5)) == docs(dense.retrieve(question, 1))
    found = titled.retrieve(question, 5)
    assert set(docs(found)) == {docs(dense.retrieve(question, 1))[0], "danube"}
    danube = next(r for r in found if r.node.ref_doc_id == "danube")
    assert danube.path == [danube.node.id] and danube.node.text == PASSAGES["danube"]


def test_whole_graph_walk_matches_bounded_on_this_small_graph(kb: KnowledgeBase, graph: DocGraph) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    bounded = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, hops=10)
    full = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder, hops=None)
    assert docs(bounded.retrieve(QUESTION, 3)) == docs(full.retrieve(QUESTION, 3))


def test_saved_graph_gives_the_same_ranking(kb: KnowledgeBase, graph: DocGraph, tmp_path: Path) -> None:
    dense = VectorRetriever(kb.store, kb.embedder)
    loaded = DocGraph.load(graph.save(tmp_path / "g"))
    a = KnowledgeGraphRetriever(dense, graph, kb.store, kb.embedder).retrieve(QUESTION, 4)
    b = KnowledgeGraphRetriever(dense, loaded, kb.store, kb.embedder).retrieve(QUESTION, 4)
    assert [(r.node.id, r.path) for r in a] == [(r.node.id, r.path) for r in b]


@pytest.mark.parametrize(
    "kwargs",
    [{"hops": -1}, {"damping": 1.0}, {"seeds": 0}, {"alpha": 1.5}, {"entity_weight": -0.1}, {"seed_temperature": 0}],
)
def test_bad_parameters_raise(kb: KnowledgeBase, graph: DocGraph, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        KnowledgeGraphRetriever(VectorRetriever(kb.store, kb.embedder), graph, **kwargs)


def test_bad_query_raises(kb: KnowledgeBase, graph: DocGraph) -> None:
    kvg = KnowledgeGraphRetriever(VectorRetriever(kb.store, kb.embedder), graph, kb.store)
    with pytest.raises(InvalidInputError, match="query"):
        kvg.retrieve("  ", 3)
    with pytest.raises(InvalidInputError, match="k must"):
        kvg.retrieve(QUESTION, 0)


class CountingEmbedder:
    """The real embedder, counting its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.dim, self.model_name = inner.dim, inner.model_name

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


def test_the_question_and_its_unspelled_names_are_embedded_in_one_call(kb: KnowledgeBase, graph: DocGraph) -> None:
    question = "Which river flows past the home town of composer I. Vantorek?"  # no key spells "I. Vantorek"
    counting = CountingEmbedder(kb.embedder)
    base = VectorRetriever(kb.store, counting)  # type: ignore[arg-type]
    r = KnowledgeGraphRetriever(base, graph, kb.store, counting)  # type: ignore[arg-type]
    _, unmatched = r._spelled(question)
    assert unmatched, "precondition: the question names an entity no graph key spells"
    batched = r.retrieve(question, 4)
    assert counting.calls == [[question, *unmatched]]
    # The same ranking as the base search followed by a separate call for the names.
    counting.calls.clear()
    separate = r.rank(question, base.retrieve(question, r.fetch), limit=4)
    assert len(counting.calls) == 2
    assert [(x.node.id, round(x.score, 6), x.path) for x in batched] == [
        (x.node.id, round(x.score, 6), x.path) for x in separate
    ]
