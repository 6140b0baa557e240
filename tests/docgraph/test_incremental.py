"""Incremental document-graph updates on ingest against a full rebuild of the same chunks."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from kvgraph.docgraph import cache, incremental
from kvgraph.docgraph.build import EDGE_TYPES, DocGraph, build_doc_graph, quantize_rows
from kvgraph.docgraph.incremental import NeedsRebuild, update_doc_graph, update_from_store
from kvgraph.kb import KnowledgeBase
from kvgraph.retrieve.base import HybridRetriever
from kvgraph.retrieve.graph import KnowledgeGraphRetriever
from kvgraph.schema import Document

LONG = " ".join(
    f"In {1850 + i} the Harbor Guild of Marrowick sent its ships to Port Ellery and to the Salt Isles."
    for i in range(4)
)
DOCS = {
    "guild": Document(id="guild", text=LONG, metadata={"title": "Harbor Guild"}),
    "ellery": Document(
        id="ellery",
        text="Port Ellery is a harbour town whose lighthouse was built by Tamsin Roe. "
        "Tamsin Roe also drew the first charts of the Salt Isles.",
        metadata={"title": "Port Ellery"},
    ),
    "roe": Document(
        id="roe",
        text="Tamsin Roe was an engineer from Marrowick who trained at the Harbor Guild.",
        metadata={"title": "Tamsin Roe"},
    ),
    "isles": Document(
        id="isles",
        text="The Salt Isles lie west of Port Ellery; their salt pans fed the Harbor Guild's trade.",
        metadata={"title": "Salt Isles"},
    ),
    "bees": Document(id="bees", text="Honey bees dance to tell the hive where the flowers are.", metadata={}),
}
LATER = [
    [Document(id="kettle", text="Oskar Kettle sailed from Marrowick to the Salt Isles in 1871.", metadata={})],
    [
        Document(id="ellery", text="Port Ellery's lighthouse, built by Tamsin Roe, burned in 1902.", metadata={}),
        Document(
            id="vane",
            text="Ida Vane wrote the history of the Harbor Guild and of Oskar Kettle's voyages.",
            metadata={"title": "Ida Vane"},
        ),
    ],
]
QUESTIONS = [
    "Who built the lighthouse of the harbour town the Harbor Guild sent ships to?",
    "Where did the engineer who drew the charts of the Salt Isles train?",
    "Who wrote about Oskar Kettle?",
    "What do honey bees do?",
]


def edge_map(g: DocGraph) -> dict[tuple[str, str, str], float]:
    out = {}
    for a, b, t, w in zip(g.src.tolist(), g.dst.tolist(), g.etype.tolist(), g.weight.tolist()):
        ka, kb = g.keys[a], g.keys[b]
        if EDGE_TYPES[t] in ("SIMILAR", "SYNONYM"):  # undirected: the direction follows node numbering
            ka, kb = min(ka, kb), max(ka, kb)
        out[(ka, kb, EDGE_TYPES[t])] = w
    return out


def full_build(kb: KnowledgeBase) -> DocGraph:
    nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
    return build_doc_graph(nodes, np.stack([n.embedding_array() for n in nodes]), embedder=kb.embedder)


def assert_same_graph(updated: DocGraph, rebuilt: DocGraph) -> None:
    assert sorted(zip(updated.keys, updated.kinds, updated.names)) == sorted(
        zip(rebuilt.keys, rebuilt.kinds, rebuilt.names)
    )
    mine, theirs = edge_map(updated), edge_map(rebuilt)
    assert mine.keys() == theirs.keys()
    for edge, w in mine.items():  # a store search and a matrix product round cosines differently
        assert w == pytest.approx(theirs[edge], abs=1e-5), edge
    assert updated.doc_of == rebuilt.doc_of
    mine, theirs_v = updated.name_matrix(), rebuilt.name_matrix()
    assert mine is not None and theirs_v is not None
    assert updated.entity_vector_rows is not None and rebuilt.entity_vector_rows is not None
    my_vectors = {updated.keys[r]: v for r, v in zip(updated.entity_vector_rows.tolist(), mine)}
    vectors = {rebuilt.keys[r]: v for r, v in zip(rebuilt.entity_vector_rows.tolist(), theirs_v)}
    assert my_vectors.keys() == vectors.keys()
    for key, v in my_vectors.items():
        np.testing.assert_allclose(v, vectors[key], atol=1e-5)
    assert updated.entity_vectors_packed is not None  # what a save writes without quantizing again
    np.testing.assert_array_equal(updated.entity_vectors_packed, quantize_rows(mine))
    # Each name's nearest-name list (what the next update starts from) is the rebuilt one: the
    # same similarities, best first (names at equal similarity may come in either order).
    mine_lists, their_lists = _name_lists(updated), _name_lists(rebuilt)
    assert mine_lists.keys() == their_lists.keys()
    for key, sims in mine_lists.items():
        assert sims == pytest.approx(their_lists[key], abs=1e-5), key


def _name_lists(g: DocGraph) -> dict[str, list[float]]:
    assert g.synonym_sims is not None and g.entity_vector_rows is not None
    return {
        g.keys[node]: [s for s in sims if s != -np.inf]
        for node, sims in zip(g.entity_vector_rows.tolist(), g.synonym_sims.tolist())
    }


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(tmp_path / "kb", expand_neighbors=False, chunk_size=48, chunk_overlap=0) as k:
        k.add_documents(list(DOCS.values()))
        k.graph.build()
        yield k


def test_updates_on_ingest_match_a_full_rebuild(kb: KnowledgeBase) -> None:
    assert kb.graph.doc_graph().meta.get("updates") is None
    for n, batch in enumerate(LATER, start=1):
        kb.add_documents(batch)  # refreshes the graph: an update, not a build
        updated = kb.graph.doc_graph()
        assert updated.meta["updates"] == n
        assert_same_graph(updated, full_build(kb))
    kb.delete("roe")  # a deleted document: its chunks go, and the entities only it mentioned
    kb.delete("guild")  # a document with a NEXT chain and many chunks
    kb.graph.refresh()
    updated = kb.graph.doc_graph()
    assert updated.meta["updates"] == 3
    assert "doc:roe" not in updated.index and "doc:guild" not in updated.index
    assert "entity:tamsin roe" in updated.index  # still mentioned by Port Ellery's passage
    rebuilt = full_build(kb)
    assert_same_graph(updated, rebuilt)

    # And retrieval is the same: the same chunks with the same scores.
    base = HybridRetriever(kb.store, kb.embedder, alpha=0.5)
    for q in QUESTIONS:
        a = KnowledgeGraphRetriever(base, updated, kb.store, kb.embedder).retrieve(q, 5)
        b = KnowledgeGraphRetriever(base, rebuilt, kb.store, kb.embedder).retrieve(q, 5)
        assert {r.node.id: round(r.score, 6) for r in a} == {r.node.id: round(r.score, 6) for r in b}


def test_the_update_is_saved_and_survives_a_reopen(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.add_documents(LATER[0])
    build = kb.graph.doc_graph().build
    loaded = DocGraph.load(kb.graph.doc_graph_path)
    assert loaded.build == build and loaded.meta["updates"] == 1
    assert_same_graph(loaded, full_build(kb))
    assert update_from_store(loaded, kb.store, None, kb.embedder) is None  # nothing changed since


def test_graphs_it_cannot_update_ask_for_a_rebuild(kb: KnowledgeBase) -> None:
    saved = kb.graph.doc_graph()
    nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
    old_style = build_doc_graph(nodes, np.stack([n.embedding_array() for n in nodes]), embedder=kb.embedder)
    old_style.similar_rows = old_style.similar_cols = old_style.similar_sims = None  # saved before lists existed

    def search(vectors: np.ndarray, m: int) -> list[tuple[list[str], list[float]]]:
        return [(list(r.ids), list(r.similarities)) for r in kb.store.query_batch(vectors, m)]

    def vectors_of(ids: Sequence[str]) -> np.ndarray:
        return np.stack([n.embedding_array() for n in kb.store.get(ids) if n is not None])

    with pytest.raises(NeedsRebuild, match="neighbour lists"):
        update_doc_graph(old_style, nodes[:1], [], embedder=kb.embedder, neighbours=search, vectors_of=vectors_of)
    with pytest.raises(NeedsRebuild, match="another model"):
        update_doc_graph(saved, nodes[:1], [], embedder=None, neighbours=search, vectors_of=vectors_of)
    # Most of the chunks changed: a rebuild is as cheap, and the knowledge base does one.
    kb.add_documents([Document(id=f"new{i}", text=f"Note {i} about Marrowick.", metadata={}) for i in range(12)])
    assert kb.graph.doc_graph().meta.get("updates") is None


@pytest.mark.parametrize(("from_disk", "name_block"), [(False, None), (True, None), (True, 5)])
def test_random_adds_replacements_and_deletions_keep_matching_a_rebuild(
    tmp_path: Path, from_disk: bool, name_block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small documents sharing names and places: every update equals a rebuild, step after step.

    ``from_disk``: each update starts from the saved graph, read again, whose name vectors are
    still packed as int8 (what a new ``kvgraph ingest`` process updates); otherwise from the graph
    in memory, whose vectors were unpacked (a long-lived process). ``name_block``: the update
    reads the old names in blocks of this many rows, so that lists merge across block edges as
    they do at 100k chunks (8k rows a block).
    """
    if name_block is not None:
        monkeypatch.setattr(incremental, "_NAME_BLOCK", name_block)
    rng = random.Random(2)
    people = ["Ada Varn", "Bo Keller", "Cy Morrow", "Di Oster", "Ed Quill", "Flo Ranke", "Gus Telm", "Hal Ubbe"]
    places = ["Lorwick", "Marrowick", "Port Ellery", "the Salt Isles", "Kelmora", "Brantor"]
    verbs = ["met", "wrote to", "sailed with", "taught", "painted"]

    # Spellings that appear only in later documents: new names whose vectors an update compares
    # with the saved ones (SYNONYM edges to "Ada Varn" and the others).
    later = ["Ada Varne", "Bo Kellers", "Cy Morrowe", "Dorothea Oster", "Port Ellerby"]

    def doc(i: int) -> Document:
        who = people + later[: i // 100]
        sentences = [
            f"{rng.choice(who)} {rng.choice(verbs)} {rng.choice(people)} in {rng.choice(places)} "
            f"in {rng.randint(1800, 1900)}."
            for _ in range(rng.randint(1, 6))
        ]
        meta = {"title": rng.choice(people + places)} if rng.random() < 0.7 else {}
        return Document(id=f"d{i}", text=" ".join(sentences), metadata=meta)

    with KnowledgeBase.open(tmp_path / "kb", expand_neighbors=False, chunk_size=32, chunk_overlap=0) as kb:
        kb.add_documents([doc(i) for i in range(25)])
        kb.graph.build()
        for step, op in enumerate(["mix", "replace", "delete", "add", "mix"], start=1):
            if from_disk:
                cache.forget()  # the update inside add_documents / refresh reads the saved graph
            else:
                assert kb.graph.doc_graph().name_matrix() is not None  # unpacked: appended in place
            ids = sorted({str(n.ref_doc_id) for n in kb.store.get(kb.store.ids()) if n is not None})
            if op in ("delete", "mix"):
                for d in rng.sample(ids, 2):
                    kb.delete(d)
            if op in ("add", "mix"):
                kb.add_documents([doc(100 * step + j) for j in range(3)])
            if op == "replace":
                kb.add_documents([doc(int(d[1:])) for d in rng.sample(ids, 2)])
            kb.graph.refresh()
            updated = kb.graph.doc_graph()
            if from_disk:
                assert updated.entity_vectors is None  # updated without unpacking the names
            assert updated.meta["updates"] == step
            assert_same_graph(updated, full_build(kb))
        # What the last update saved (its strings packed from the loaded graph's, then the new ones).
        assert_same_graph(DocGraph.load(kb.graph.doc_graph_path), full_build(kb))


def test_an_ingest_of_new_documents_is_found_without_comparing_every_id(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph records where the store stood; new chunks are read from the slots after that."""
    d = kb.graph.doc_graph_path
    assert DocGraph.load(d).meta["store"] == kb.store.change_marker()

    def store_without_graph(change: Callable[[], object]) -> DocGraph:
        d.rename(d.with_name("aside"))
        try:
            change()
        finally:
            d.with_name("aside").rename(d)
            cache.forget()
        return DocGraph.load(d)

    def no_full_listing(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the short way reads only the new slots")

    saved = store_without_graph(lambda: kb.add_documents(LATER[0]))
    with monkeypatch.context() as m:
        m.setattr(kb.store, "ids", no_full_listing)
        updated = update_from_store(saved, kb.store, None, kb.embedder)
    assert updated is not None and updated.meta["store"] == kb.store.change_marker()
    assert_same_graph(updated, full_build(kb))
    updated.save(d)
    # A deletion (a document replaced is one too) takes the long way, and is right.
    ids = kb.store.ids
    listed: list[bool] = []

    def counted(*args: object, **kwargs: object) -> list[str]:
        listed.append(True)
        return ids(*args, **kwargs)  # type: ignore[arg-type]

    for change in (lambda: kb.delete("bees"), lambda: kb.add_documents(LATER[1])):
        saved = store_without_graph(change)
        assert kb.store.added_since(saved.meta["store"]) is None
        listed.clear()
        with monkeypatch.context() as m:
            m.setattr(kb.store, "ids", counted)
            updated = update_from_store(saved, kb.store, None, kb.embedder)
        assert listed and updated is not None
        assert_same_graph(updated, full_build(kb))
        updated.save(d)


class _StoreWithoutMarkers:
    """A store that cannot say where it stands (as a server backend): every update compares all ids."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        if name in ("change_marker", "added_since"):
            raise AttributeError(name)
        return getattr(self._store, name)


def test_a_store_without_change_markers_is_compared_id_by_id(kb: KnowledgeBase) -> None:
    d = kb.graph.doc_graph_path
    d.rename(d.with_name("aside"))
    try:
        kb.add_documents(LATER[0])
    finally:
        d.with_name("aside").rename(d)
        cache.forget()
    saved = DocGraph.load(d)
    updated = update_from_store(saved, _StoreWithoutMarkers(kb.store), None, kb.embedder)  # type: ignore[arg-type]
    assert updated is not None and "store" not in updated.meta
    assert_same_graph(updated, full_build(kb))
