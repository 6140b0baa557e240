"""Building the document graph from real ingested chunks, saving it, and exporting it to Ladybug."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph.docgraph import name_codec
from kvgraph.docgraph.build import (
    EDGE_TYPES,
    DocGraph,
    Packed,
    RowBuffer,
    append_rows,
    build_doc_graph,
    name_vectors,
    pack_strings,
    packed_unit_rows,
    unpack_strings,
    write_doc_graph,
)
from kvgraph.docgraph.knn import knn_pairs
from kvgraph.docgraph.names_file import NamesFile
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document, Node

DOCS = [
    Document(
        id="army",
        text="The United States Army was founded in 1775. " * 3
        + "Its first commander was George Washington, who later became president. " * 40,
        metadata={"title": "United States Army"},
    ),
    Document(
        id="washington",
        text="George Washington led the U.S. Army during the revolution and lived at Mount Vernon.",
        metadata={"title": "George Washington"},
    ),
    Document(id="bees", text="Honey bees dance to tell the hive where the flowers are.", metadata={"title": "Bees"}),
]


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Node], np.ndarray]:
    """Chunks as the real ingest pipeline makes them (splitter relationships, stored vectors)."""
    kb_dir = tmp_path_factory.mktemp("kb")
    with KnowledgeBase.open(kb_dir, chunk_size=64, chunk_overlap=0) as kb:
        kb.add_documents(DOCS)
        nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
    return nodes, np.stack([n.embedding_array() for n in nodes])


@pytest.fixture(scope="module")
def graph(chunks: tuple[list[Node], np.ndarray], embedder: OnnxEmbedder) -> DocGraph:
    nodes, vectors = chunks
    return build_doc_graph(nodes, vectors, embedder=embedder, knn=2, similar_threshold=0.3)


def edges_of(g: DocGraph, etype: str) -> list[tuple[str, str, float]]:
    t = EDGE_TYPES.index(etype)
    return [(g.keys[a], g.keys[b], float(w)) for a, b, e, w in zip(g.src, g.dst, g.etype, g.weight) if e == t]


def test_structure_edges_follow_the_splitter(chunks: tuple[list[Node], np.ndarray], graph: DocGraph) -> None:
    nodes, _ = chunks
    army = [n for n in nodes if n.ref_doc_id == "army"]
    assert len(army) > 2, "the long document must be split into several chunks"
    nxt = set((a, b) for a, b, _ in edges_of(graph, "NEXT"))
    expected = {(n.id, n.relationships["next"]) for n in nodes if "next" in n.relationships}
    assert nxt == expected and len(nxt) == len(army) - 1
    parents = {a: b for a, b, _ in edges_of(graph, "PARENT")}
    assert all(parents[n.id] == f"doc:{n.ref_doc_id}" for n in nodes)
    assert graph.count("document") == 3 and graph.count("chunk") == len(nodes)
    assert all(graph.doc_of[n.id] == n.ref_doc_id for n in nodes)


def test_mentions_weighted_by_title(chunks: tuple[list[Node], np.ndarray], graph: DocGraph) -> None:
    nodes, _ = chunks
    wash_chunk = next(n.id for n in nodes if n.ref_doc_id == "washington")
    mentions = {(a, b): w for a, b, w in edges_of(graph, "MENTIONS")}
    assert mentions[(wash_chunk, "entity:george washington")] == 2.0  # in its own title
    assert mentions[(wash_chunk, "entity:mount vernon")] == 1.0
    army_chunks = [n.id for n in nodes if n.ref_doc_id == "army"]
    assert any((c, "entity:george washington") in mentions for c in army_chunks)
    counts = graph.mention_counts()
    assert counts[graph.index["entity:george washington"]] >= 2
    assert counts[graph.index[wash_chunk]] == 0


def test_similar_edges_respect_threshold_and_k(chunks: tuple[list[Node], np.ndarray]) -> None:
    nodes, vectors = chunks
    g = build_doc_graph(nodes, vectors, knn=1, similar_threshold=0.99)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for a, b, w in edges_of(g, "SIMILAR"):
        i, j = g.index[a], g.index[b]
        assert w == pytest.approx(float(unit[i] @ unit[j]), abs=1e-5) and w >= 0.99
    assert not edges_of(build_doc_graph(nodes, None), "SIMILAR")
    assert not edges_of(build_doc_graph(nodes, vectors, knn=0), "SIMILAR")


def test_knn_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 8)).astype(np.float32)
    i, j, s = knn_pairs(v, k=3, threshold=-1.0, block=7)  # several blocks
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    expected = set()
    for r in range(50):
        for c in np.argsort(-sims[r])[:3]:
            expected.add((min(r, int(c)), max(r, int(c))))
    assert set(zip(i.tolist(), j.tolist())) == expected
    assert np.allclose(s, sims[i, j], atol=1e-5)


def test_synonym_edges_link_spellings_of_one_entity(graph: DocGraph) -> None:
    syn = {frozenset((a, b)) for a, b, _ in edges_of(graph, "SYNONYM")}
    assert frozenset(("entity:united states army", "entity:u s army")) in syn
    assert not any("entity:honey bees" in pair for pair in syn)
    assert graph.entity_vectors is not None and graph.entity_vector_rows is not None
    assert len(graph.entity_vectors) == len(graph.entity_vector_rows)


def test_adjacency_symmetric_and_type_factors(graph: DocGraph) -> None:
    a = graph.adjacency().toarray()
    assert a.any() and np.array_equal(a, a.T)
    only_mentions = graph.adjacency({"NEXT": 0, "PARENT": 0, "SIMILAR": 0, "SYNONYM": 0}, symmetric=False)
    assert only_mentions.nnz == len(edges_of(graph, "MENTIONS"))
    with pytest.raises(InvalidInputError, match="BOGUS"):
        graph.adjacency({"BOGUS": 1.0})


def test_save_load_round_trip(graph: DocGraph, tmp_path: Path) -> None:
    graph.save(tmp_path / "g")
    back = DocGraph.load(tmp_path / "g")
    assert back.keys == graph.keys and back.kinds == graph.kinds and back.names == graph.names
    assert back.doc_of == graph.doc_of and back.meta == graph.meta
    for name in ("src", "dst", "etype", "weight", "entity_vector_rows"):
        np.testing.assert_array_equal(getattr(back, name), getattr(graph, name))
    assert back.entity_vectors is None  # name vectors stay packed until something needs them
    np.testing.assert_array_equal(back.name_matrix(), graph.name_matrix())
    np.testing.assert_array_equal(back.adjacency().toarray(), graph.adjacency().toarray())


def test_load_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no knowledge-vector graph"):
        DocGraph.load(tmp_path)
    (tmp_path / "graph.npz").write_bytes(b"not a zip")
    (tmp_path / "graph.json").write_text("{}")
    with pytest.raises(InvalidInputError, match=str(tmp_path)):
        DocGraph.load(tmp_path)


def test_bad_input_rejected(chunks: tuple[list[Node], np.ndarray]) -> None:
    nodes, vectors = chunks
    with pytest.raises(InvalidInputError):
        build_doc_graph([])
    with pytest.raises(InvalidInputError, match="rows"):
        build_doc_graph(nodes, vectors[:1])
    with pytest.raises(InvalidInputError, match="reserved"):
        build_doc_graph([Node(id="entity:x", text="x")])


@pytest.fixture
def ladybug(tmp_path: Path) -> Iterator[LadybugGraphStore]:
    store = LadybugGraphStore.open(tmp_path / "graph")
    try:
        yield store
    finally:
        store.close()


def test_write_to_ladybug_and_query_with_cypher(graph: DocGraph, ladybug: LadybugGraphStore) -> None:
    counts = write_doc_graph(graph, ladybug, batch=7)  # several batches per label
    assert counts["Chunk"] == graph.count("chunk") and counts["Entity"] == graph.count("entity")
    assert {t: counts[t] for t in EDGE_TYPES} == graph.edge_counts()
    res = ladybug.query(
        "MATCH (c:Chunk)-[:MENTIONS]->(e:Entity {id: $name})<-[:MENTIONS]-(d:Chunk) "
        "WHERE c.doc_id = $doc AND d.doc_id <> $doc RETURN DISTINCT d.doc_id AS doc ORDER BY doc",
        {"name": "george washington", "doc": "washington"},
    )
    assert [r[0] for r in res.rows] == ["army"]
    el = ladybug.edges()
    assert len(el.src) == len(graph.src)
    # Writing again updates in place: no duplicate nodes or edges.
    write_doc_graph(graph, ladybug)
    assert len(ladybug.edges().src) == len(graph.src)
    assert ladybug.query("MATCH (e:Entity) RETURN count(e)").scalar() == graph.count("entity")


class CountingEmbedder:
    """The real embedder, recording the texts it is asked to embed."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += list(texts)
        return self.inner.embed(texts)


def test_a_rebuild_embeds_only_names_it_does_not_know(
    chunks: tuple[list[Node], np.ndarray], graph: DocGraph, embedder: OnnxEmbedder
) -> None:
    nodes, vectors = chunks
    known = name_vectors(graph)
    assert len(known) == len(graph.entity_vectors if graph.entity_vectors is not None else [])
    counting = CountingEmbedder(embedder)
    again = build_doc_graph(
        nodes,
        vectors,
        embedder=counting,
        knn=2,
        similar_threshold=0.3,
        known_vectors=known,  # type: ignore[arg-type]
    )
    assert counting.texts == []
    assert again.entity_vectors is not None and graph.entity_vectors is not None
    np.testing.assert_allclose(again.entity_vectors, graph.entity_vectors, atol=1e-6)
    assert edges_of(again, "SYNONYM") == edges_of(graph, "SYNONYM")
    forgotten = sorted(known)[0]
    del known[forgotten]
    build_doc_graph(nodes, vectors, embedder=counting, knn=2, similar_threshold=0.3, known_vectors=known)  # type: ignore[arg-type]
    assert counting.texts == [forgotten]


def test_graph_builds_and_updates_keep_every_vector_once(tmp_path: Path) -> None:
    """Chunk vectors live in the store, entity names' in the graph, questions nowhere: a writable
    handle's searches and graph updates write no file that holds vectors a second time."""
    kb_path = tmp_path / "kb"
    with KnowledgeBase.open(kb_path, chunk_size=64, chunk_overlap=0) as kb:
        kb.add_documents(DOCS)
        kb.graph.build()
        kb.add_documents([Document(id="late", text="Martha Washington ran Mount Vernon.", metadata={})])
        assert kb.graph.doc_graph().meta["updates"] == 1
        assert "entity:martha washington" in kb.graph.doc_graph().index
        files = {p: p.stat().st_size for p in kb_path.rglob("*") if p.is_file()}
        for mode in ("dense", "sparse", "hybrid"):
            kb.search("Who ran Mount Vernon?", k=2, mode=mode)
        after = {p: p.stat().st_size for p in kb_path.rglob("*") if p.is_file()}
    assert after == files  # no question's vector, nor anything else, was written by the searches
    assert not (kb_path / "embed-cache.sqlite").exists()


def saved_arrays(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(directory / "graph.npz") as z:
        arrays = {name: z[name] for name in z.files}
    return arrays, json.loads((directory / "graph.json").read_text())


def as_format_2(directory: Path) -> dict[str, np.ndarray]:
    """Rewrite a saved graph as format 2 wrote it: the int8 name vectors inside graph.npz."""
    arrays, info = saved_arrays(directory)
    names = NamesFile.from_info(directory, info.pop("name_vectors"))
    arrays["entity_vectors_int8"] = name_codec.quantize(packed_unit_rows(names.map()), bits=8)
    names.path.unlink()
    with open(directory / "graph.npz", "wb") as f:
        np.savez(f, **arrays)
    (directory / "graph.json").write_text(json.dumps(info | {"version": 2}))
    return arrays


def test_entity_vectors_are_saved_in_6_bits_and_older_formats_still_load(graph: DocGraph, tmp_path: Path) -> None:
    assert graph.entity_vectors is not None
    graph.save(tmp_path / "g")
    arrays, info = saved_arrays(tmp_path / "g")
    assert info["version"] == 4 and "entity_vectors" not in arrays and "entity_vectors_int8" not in arrays
    assert arrays["src"].dtype == np.int32  # node numbers; read back as int64
    assert info["name_vectors"]["bits"] == 6 and info["name_vectors"]["file"].endswith(".q6")
    rows = NamesFile.from_info(tmp_path / "g", info["name_vectors"]).map()
    assert rows.dtype == np.uint8 and rows.shape == (len(graph.entity_vectors), 384 * 3 // 4)
    assert np.abs(name_codec.values(rows)).max(axis=1).tolist() == [31] * len(graph.entity_vectors)
    # what the graph holds in memory is already at the saved precision: nothing changes on reload
    back = DocGraph.load(tmp_path / "g")
    assert back.src.dtype == np.int64 and back.names_file is not None
    np.testing.assert_array_equal(back.name_matrix(), graph.entity_vectors)
    # format 2 kept the int8 rows inside graph.npz
    arrays = as_format_2(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["graph.json", "graph.npz"]
    two = DocGraph.load(tmp_path / "g")
    assert two.names_file is None and two.packed_rows is not None
    np.testing.assert_array_equal(two.name_matrix(), packed_unit_rows(arrays["entity_vectors_int8"]))
    np.testing.assert_allclose(two.name_matrix(), graph.entity_vectors, atol=0.01)
    np.testing.assert_array_equal(two.adjacency().toarray(), graph.adjacency().toarray())
    # a graph saved before issue 17 kept float32 vectors under another name
    old = graph.entity_vectors + np.float32(1e-3)
    arrays["entity_vectors"] = old
    del arrays["entity_vectors_int8"]
    with open(tmp_path / "g" / "graph.npz", "wb") as f:
        np.savez(f, **arrays)
    np.testing.assert_array_equal(DocGraph.load(tmp_path / "g").name_matrix(), old)
    # saving a graph read in an older format writes the current one
    DocGraph.load(tmp_path / "g").save(tmp_path / "g")
    assert saved_arrays(tmp_path / "g")[1]["version"] == 4
    np.testing.assert_array_equal(DocGraph.load(tmp_path / "g").name_matrix(), quantized_unit(old))


def test_string_lengths_are_saved_in_the_smallest_type_that_holds_them(graph: DocGraph, tmp_path: Path) -> None:
    graph.save(tmp_path / "a")
    arrays, _ = saved_arrays(tmp_path / "a")
    kinds = {arrays[f"{n}_lengths"].dtype for n in ("keys", "names", "doc_of_chunks", "doc_of_docs")}
    assert kinds == {np.dtype(np.uint8)}
    back = DocGraph.load(tmp_path / "a")
    assert back.keys == graph.keys and back.names == graph.names and back.doc_of == graph.doc_of
    back.names = [*back.names[:-1], "é" * 300]  # no longer fits a uint8
    back.save(tmp_path / "b")
    arrays, _ = saved_arrays(tmp_path / "b")
    assert arrays["names_lengths"].dtype == np.uint16 and arrays["keys_lengths"].dtype == np.uint8
    assert DocGraph.load(tmp_path / "b").names == back.names


def quantized_unit(vectors: np.ndarray) -> np.ndarray:
    from kvgraph.docgraph.build import stored_precision

    return stored_precision(vectors)


@pytest.mark.parametrize(
    ("first", "more"),
    [(["a", "bé"], ["東京", ""]), ([], ["x"]), (["x"], []), ([], []), (["nul\x00in", ""], ["\x00", "z"])],
)
def test_a_packing_extended_is_the_packing_of_both(first: list[str], more: list[str]) -> None:
    source = first + more
    packed = Packed(*pack_strings(first), first, len(first)).extended(source, more)
    text, lengths = pack_strings(source)
    assert packed.text.tobytes() == text.tobytes() and packed.lengths.tolist() == lengths.tolist()
    assert (
        packed.holds(source)
        and not packed.holds(list(source))
        and unpack_strings(packed.text, packed.lengths) == source
    )


def test_strings_pack_and_unpack_exactly() -> None:
    strings = ["", "plain", "naïve café", "東京", "line\nbreak", "tab\tand \x00 nul", "\x00", "x\x00\x00y"]
    strings += ["😀 emoji", "\ud800 lone", ""]
    text, lengths = pack_strings(strings)
    assert text.dtype == np.uint8 and lengths.tolist() == [len(s) for s in strings]
    assert unpack_strings(text, lengths) == strings
    assert unpack_strings(*pack_strings([])) == []
    with pytest.raises(ValueError, match="lengths"):
        unpack_strings(text, lengths[:-2])


def test_graphs_saved_with_json_strings_still_load(graph: DocGraph, tmp_path: Path) -> None:
    """Format 1 kept keys, kinds, names and doc_of in graph.json; format 2 packs them into graph.npz."""
    graph.save(tmp_path / "g")
    as_format_2(tmp_path / "g")
    arrays, info = saved_arrays(tmp_path / "g")
    assert info["version"] == 2 and "keys" not in info and "keys_text" in arrays
    packed = [n for n in arrays if n.endswith(("_text", "_lengths"))] + ["kinds"]
    for name in packed:
        del arrays[name]
    info |= {"version": 1, "keys": graph.keys, "kinds": graph.kinds, "names": graph.names, "doc_of": graph.doc_of}
    with open(tmp_path / "g" / "graph.npz", "wb") as f:
        np.savez(f, **arrays)
    (tmp_path / "g" / "graph.json").write_text(json.dumps(info))
    back = DocGraph.load(tmp_path / "g")
    assert back.keys == graph.keys and back.kinds == graph.kinds and back.names == graph.names
    assert back.doc_of == graph.doc_of
    np.testing.assert_array_equal(back.adjacency().toarray(), graph.adjacency().toarray())


def test_packed_strings_that_disagree_are_reported_as_damage(graph: DocGraph, tmp_path: Path) -> None:
    graph.save(tmp_path / "g")
    with np.load(tmp_path / "g" / "graph.npz") as z:
        arrays = {name: z[name] for name in z.files}
    arrays["names_lengths"] = arrays["names_lengths"][:-1]  # one name fewer than the text holds
    with open(tmp_path / "g" / "graph.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(InvalidInputError, match=r"damaged.*kvgraph repair"):
        DocGraph.load(tmp_path / "g")


def test_rows_are_appended_in_place_without_changing_what_older_graphs_see() -> None:
    rng = np.random.default_rng(0)
    first = append_rows(None, rng.standard_normal((5, 4)).astype(np.float32), np.ones((2, 4), np.float32))
    before = first.view()
    snapshot = before.copy()
    second = append_rows(first, before, np.full((3, 4), 2.0, np.float32))
    assert second is first and np.shares_memory(second.view(), before)  # in the room left, no copy
    np.testing.assert_array_equal(before, snapshot)  # the older view still holds its 7 rows
    np.testing.assert_array_equal(second.view()[7:], 2.0)
    # An append from the older rows again (a second update of the same graph) must not overwrite
    # the rows the first one added: it copies.
    branch = append_rows(first, before, np.full((1, 4), 3.0, np.float32))
    assert branch is not first and not np.shares_memory(branch.view(), before)
    np.testing.assert_array_equal(second.view()[7:], 2.0)
    np.testing.assert_array_equal(branch.view()[:7], snapshot)
    np.testing.assert_array_equal(branch.view()[7:], 3.0)
    # No room left: a bigger buffer.
    full = RowBuffer(np.zeros((3, 4), np.float32), 3)
    grown = append_rows(full, full.view(), np.ones((1, 4), np.float32))
    assert grown is not full and grown.used == 4 and len(grown.array) > 4


def test_format_2_name_vectors_have_room_and_a_truncated_member_is_damage(graph: DocGraph, tmp_path: Path) -> None:
    graph.save(tmp_path / "g")
    as_format_2(tmp_path / "g")
    back = DocGraph.load(tmp_path / "g")
    assert back.packed_rows is not None and back.vector_rows is None  # floats unpacked on first use
    assert len(back.packed_rows.array) > back.packed_rows.used  # room to append
    with np.load(tmp_path / "g" / "graph.npz") as z:
        arrays = {name: z[name] for name in z.files}
    np.testing.assert_array_equal(back.entity_vectors_packed, arrays["entity_vectors_int8"])
    np.testing.assert_array_equal(back.name_matrix(), packed_unit_rows(arrays["entity_vectors_int8"]))
    assert back.vector_rows is not None and len(back.vector_rows.array) > back.vector_rows.used
    # A member whose header promises one row more than its data holds, under a valid zip CRC.
    vectors = arrays.pop("entity_vectors_int8")
    with open(tmp_path / "g" / "graph.npz", "wb") as f:
        np.savez(f, **arrays)
    member = io.BytesIO()
    header = {"descr": "|i1", "fortran_order": False, "shape": (len(vectors) + 1, vectors.shape[1])}
    np.lib.format.write_array_header_1_0(member, header)
    member.write(vectors.tobytes())
    with zipfile.ZipFile(tmp_path / "g" / "graph.npz", "a") as z:
        z.writestr("entity_vectors_int8.npy", member.getvalue())
    with pytest.raises(InvalidInputError, match=r"damaged.*truncated"):
        DocGraph.load(tmp_path / "g")
