"""The saved name vectors' own file: appended to by updates, never rewritten under a saved graph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kvgraph.docgraph import cache
from kvgraph.docgraph.build import DocGraph, build_doc_graph, quantize_rows
from kvgraph.docgraph.incremental import update_from_store
from kvgraph.docgraph.names_file import names_files
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document

DOCS = [
    Document(id="guild", text="The Harbor Guild of Marrowick sent ships to Port Ellery.", metadata={"title": "Guild"}),
    Document(id="roe", text="Tamsin Roe built the lighthouse of Port Ellery.", metadata={"title": "Tamsin Roe"}),
    Document(id="isles", text="The Salt Isles lie west of Port Ellery.", metadata={"title": "Salt Isles"}),
]
NEW = [
    Document(id="kettle", text="Oskar Kettle sailed from Marrowick to the Salt Isles.", metadata={}),
    Document(id="vane", text="Ida Vane wrote about the Harbor Guild and Oskar Kettle.", metadata={"title": "Vane"}),
]


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(tmp_path / "kb", expand_neighbors=False, chunk_size=48, chunk_overlap=0) as k:
        k.add_documents(DOCS)
        k.graph.build()
        cache.forget()
        yield k
    cache.forget()


def the_file(kb: KnowledgeBase) -> Path:
    files = names_files(kb.graph.doc_graph_path)
    assert len(files) == 1, files
    return files[0]


def full_build(kb: KnowledgeBase) -> DocGraph:
    nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
    return build_doc_graph(nodes, np.stack([n.embedding_array() for n in nodes]), embedder=kb.embedder)


def names_by_key(g: DocGraph) -> dict[str, bytes]:
    """Each name's saved int8 row (a graph built in memory: its floats, quantized as a save does)."""
    assert g.entity_vector_rows is not None
    rows = g.entity_vectors_int8
    if rows is None:
        assert g.entity_vectors is not None
        rows = quantize_rows(g.entity_vectors)
    return {g.keys[n]: row.tobytes() for n, row in zip(g.entity_vector_rows.tolist(), rows)}


def add_without_graph(kb: KnowledgeBase, docs: list[Document]) -> None:
    """Store ``docs`` while the graph is away, so that the graph update can be run by hand."""
    d = kb.graph.doc_graph_path
    d.rename(d.with_name("aside"))
    try:
        kb.add_documents(docs)
    finally:
        d.with_name("aside").rename(d)
        cache.forget()


def test_an_ingest_appends_its_name_vectors_to_the_saved_file(kb: KnowledgeBase) -> None:
    path = the_file(kb)
    before = path.read_bytes()
    old = DocGraph.load(kb.graph.doc_graph_path)
    kb.add_documents(NEW)  # a graph update
    updated = DocGraph.load(kb.graph.doc_graph_path)
    assert updated.meta["updates"] == 1 and the_file(kb) == path  # the same file, longer
    assert updated.name_count() is not None and old.name_count() is not None
    assert updated.name_count() > old.name_count()
    after = path.read_bytes()
    assert after[: len(before)] == before and len(after) == updated.name_count() * 384
    assert names_by_key(updated) == names_by_key(full_build(kb))


def test_an_update_killed_before_its_save_leaves_the_last_graph(kb: KnowledgeBase) -> None:
    d = kb.graph.doc_graph_path
    last = DocGraph.load(d)
    add_without_graph(kb, NEW)
    unsaved = update_from_store(DocGraph.load(d), kb.store, None, kb.embedder)  # writes after the saved rows
    assert unsaved is not None and unsaved.names_file is not None
    assert the_file(kb).stat().st_size > (last.name_count() or 0) * 384
    with open(the_file(kb), "ab") as f:  # it had more rows to write than the next update has
        f.write(b"\x01" * 384 * 3)
    # ...and the process dies here: the saved graph is the last one, whole (its rows pass their CRC).
    again = DocGraph.load(d)
    assert again.build == last.build and names_by_key(again) == names_by_key(last)
    # The next update writes its rows over what the dead one left (what lies past them is never read).
    kb.graph.refresh()
    updated = DocGraph.load(d)
    assert updated.meta["updates"] == 1
    assert the_file(kb).stat().st_size > (updated.name_count() or 0) * 384
    assert names_by_key(updated) == names_by_key(full_build(kb))


def test_updates_never_write_over_rows_another_graph_uses(kb: KnowledgeBase) -> None:
    d = kb.graph.doc_graph_path
    add_without_graph(kb, NEW[:1])
    first, second = DocGraph.load(d), DocGraph.load(d)
    a = update_from_store(first, kb.store, None, kb.embedder)
    assert a is not None and a.names_file is not None  # appended in place
    rows_of_a = names_by_key(a)
    b = update_from_store(first, kb.store, None, kb.embedder)  # from the same graph again: copies
    assert b is not None and b.names_file is None
    assert names_by_key(a) == rows_of_a
    a.save(d)
    # A graph loaded before that save is not the saved one any more: its update copies too.
    c = update_from_store(second, kb.store, None, kb.embedder)
    assert c is not None and c.names_file is None
    back = DocGraph.load(d)
    assert back.build == a.build and names_by_key(back) == rows_of_a


def test_deleting_names_writes_a_new_file_and_removes_the_old(kb: KnowledgeBase) -> None:
    path = the_file(kb)
    kb.delete("roe")  # "Tamsin Roe" loses its only mention
    kb.graph.refresh()
    updated = DocGraph.load(kb.graph.doc_graph_path)
    assert the_file(kb) != path and not path.exists()
    assert "entity:tamsin roe" not in updated.index
    assert names_by_key(updated) == names_by_key(full_build(kb))


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]), "checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1]), "shorter"),
        (lambda p: p.unlink(), "missing"),
    ],
    ids=["flipped bit", "truncated", "deleted"],
)
def test_a_damaged_name_file_is_reported_as_damage(kb: KnowledgeBase, damage: object, says: str) -> None:
    assert callable(damage)
    damage(the_file(kb))
    with pytest.raises(InvalidInputError, match=rf"damaged.*{says}.*kvgraph repair"):
        DocGraph.load(kb.graph.doc_graph_path)


def test_a_save_refused_for_space_leaves_the_last_graph_and_no_stray_file(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from kvgraph.errors import DiskFullError

    d = kb.graph.doc_graph_path
    last, path = DocGraph.load(d), the_file(kb)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(DiskFullError):
        full_build(kb).save(d)  # a new name file is written first, then the arrays fail
    assert names_files(d) == [path]
    again = DocGraph.load(d)
    assert again.build == last.build and names_by_key(again) == names_by_key(last)
