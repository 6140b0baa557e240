"""The saved name vectors' own file: appended to by updates, never rewritten under a saved graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kvgraph.docgraph import cache, name_codec
from kvgraph.docgraph.build import DocGraph, build_doc_graph, packed_unit_rows, quantize_rows
from kvgraph.docgraph.incremental import update_from_store
from kvgraph.docgraph.names_file import NamesFile, names_files
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document

DOCS = [
    Document(id="guild", text="The Harbor Guild of Marrowick sent ships to Port Ellery.", metadata={"title": "Guild"}),
    Document(id="roe", text="Tamsin Roe built the lighthouse of Port Ellery.", metadata={"title": "Tamsin Roe"}),
    Document(id="isles", text="The Salt Isles lie west of Port Ellery.", metadata={"title": "Salt Isles"}),
]
ROW = 384 * 3 // 4  # bytes of a saved name vector (6 bits a value)
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
    rows = g.entity_vectors_packed
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
    assert after[: len(before)] == before and len(after) == updated.name_count() * ROW
    assert names_by_key(updated) == names_by_key(full_build(kb))


def test_an_update_killed_before_its_save_leaves_the_last_graph(kb: KnowledgeBase) -> None:
    d = kb.graph.doc_graph_path
    last = DocGraph.load(d)
    add_without_graph(kb, NEW)
    unsaved = update_from_store(DocGraph.load(d), kb.store, None, kb.embedder)  # writes after the saved rows
    assert unsaved is not None and unsaved.names_file is not None
    assert the_file(kb).stat().st_size > (last.name_count() or 0) * ROW
    with open(the_file(kb), "ab") as f:  # it had more rows to write than the next update has
        f.write(b"\x01" * ROW * 3)
    # ...and the process dies here: the saved graph is the last one, whole (its rows pass their CRC).
    again = DocGraph.load(d)
    assert again.build == last.build and names_by_key(again) == names_by_key(last)
    # The next update writes its rows over what the dead one left (what lies past them is never read).
    kb.graph.refresh()
    updated = DocGraph.load(d)
    assert updated.meta["updates"] == 1
    assert the_file(kb).stat().st_size > (updated.name_count() or 0) * ROW
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


def as_format_3(d: Path) -> Path:
    """Rewrite the saved graph in ``d`` as format 3 saved it: int8 name vectors in ``names-<id>.i8``."""
    info = json.loads((d / "graph.json").read_text())
    names = NamesFile.from_info(d, info["name_vectors"])
    old = NamesFile.write(d, "format3", name_codec.quantize(packed_unit_rows(names.map()), bits=8))
    names.path.unlink()
    info["name_vectors"], info["version"] = old.describe(), 3
    (d / "graph.json").write_text(json.dumps(info))
    cache.forget()
    return old.path


def test_a_graph_saved_with_int8_names_is_read_and_its_next_update_packs_them(kb: KnowledgeBase) -> None:
    d = kb.graph.doc_graph_path
    old_path = as_format_3(d)
    assert old_path.suffix == ".i8" and "bits" not in json.loads((d / "graph.json").read_text())["name_vectors"]
    old = DocGraph.load(d)
    assert old.entity_vectors_packed is not None and old.entity_vectors_packed.dtype == np.int8
    hits = kb.search("Who built the lighthouse of Port Ellery?", k=1, mode="graph")
    assert hits and hits[0].node.ref_doc_id == "roe"
    kb.add_documents(NEW)  # a graph update: every row is written again, 6 bits a value
    assert not old_path.exists() and the_file(kb).suffix == ".q6"
    updated = DocGraph.load(d)
    assert updated.entity_vectors_packed is not None and updated.entity_vectors_packed.dtype == np.uint8
    got, want = updated.name_matrix(), full_build(kb).name_matrix()
    assert got is not None and want is not None and got.shape == want.shape
    # the old names went through int8 first: within a rounding step of a fresh build's 6 bits
    assert float(np.min(np.einsum("ij,ij->i", got, want))) > 0.995


def test_an_upgraded_graph_in_memory_is_the_graph_saved(kb: KnowledgeBase) -> None:
    """An update or a rebuild of a graph with int8 names computes from the rows it saves (6 bits)."""
    d = kb.graph.doc_graph_path
    as_format_3(d)
    before = kb.graph.doc_graph()
    assert before.entity_vectors_packed is not None and before.entity_vectors_packed.dtype == np.int8
    assert before.name_matrix() is not None  # a long-lived process: the floats are unpacked
    kb.add_documents(NEW)
    in_memory = kb.graph.doc_graph()
    assert in_memory.meta["updates"] == 1 and in_memory.entity_vectors is not None
    saved = DocGraph.load(d)
    np.testing.assert_array_equal(in_memory.name_matrix(), saved.name_matrix())
    np.testing.assert_array_equal(in_memory.synonym_sims, saved.synonym_sims)
    # a rebuild reuses the saved vectors of known names: at the precision it saves them
    as_format_3(d)
    kb.graph.build()
    rebuilt = kb.graph.doc_graph()
    np.testing.assert_array_equal(rebuilt.name_matrix(), DocGraph.load(d).name_matrix())


@pytest.mark.parametrize("bits", [[6], 7, "6", None])
def test_a_malformed_bits_entry_is_refused_as_a_bad_description(kb: KnowledgeBase, bits: object) -> None:
    info = json.loads((kb.graph.doc_graph_path / "graph.json").read_text())["name_vectors"]
    with pytest.raises(ValueError, match="bad name-vector file description"):
        NamesFile.from_info(kb.graph.doc_graph_path, info | {"bits": bits})


def test_a_6_bit_file_of_another_layout_is_refused_not_read_as_noise(kb: KnowledgeBase) -> None:
    d = kb.graph.doc_graph_path
    info = json.loads((d / "graph.json").read_text())
    assert info["name_vectors"]["layout"] == name_codec.LAYOUT
    for layout in (None, "interleaved", 1):
        described = {k: v for k, v in info["name_vectors"].items() if k != "layout"}
        if layout is not None:
            described["layout"] = layout
        with pytest.raises(ValueError, match="layout this version does not read; rebuild the graph"):
            NamesFile.from_info(d, described)
        (d / "graph.json").write_text(json.dumps(info | {"name_vectors": described}))
        cache.forget()
        with pytest.raises(InvalidInputError, match=r"damaged.*layout"):
            DocGraph.load(d)
