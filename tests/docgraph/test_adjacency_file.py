"""The adjacency saved beside a graph: written by a full build, or after an update by the first process
that builds it; mapped by later processes, equal to the one built from the edges, and never used once
it no longer matches the graph (an update, damage, other edge weights)."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from kvgraph.docgraph.adjacency_file import AdjacencyFile, adjacency_files
from kvgraph.docgraph.build import EDGE_TYPES, DocGraph
from kvgraph.docgraph.csr import Csr
from kvgraph.kb import KnowledgeBase
from kvgraph.kb.integrity import check_kb

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"


def same(a: Csr, b: Csr) -> bool:
    return (
        a.shape == b.shape
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
        and np.array_equal(a.data, b.data)
    )


@pytest.fixture(autouse=True)
def small_graphs_get_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """These graphs are far below the size that gets a file by default (test_small_graphs_get_no_file)."""
    monkeypatch.setattr("kvgraph.docgraph.adjacency_file.MIN_EDGES", 0)


def as_float32(m: Csr) -> Csr:
    return Csr(m.indptr, m.indices, m.data.astype(np.float32), m.shape, sorted_rows=m.sorted_rows)


def write_float64_file(path: Path, m: Csr) -> Path:
    """An adjacency file as the versions before wrote it: float64 values, trailer ``KVGCSR01``."""
    body = b"".join(
        (
            m.indptr.astype(np.int64).tobytes(),
            m.indices.astype(np.int32).tobytes(),
            bytes(4 * (m.nnz % 2)),
            m.data.astype(np.float64).tobytes(),
        )
    )
    path.write_bytes(body + struct.pack("<8sqqI4x", b"KVGCSR01", m.shape[0], m.nnz, zlib.crc32(body)))
    return path


def from_edges(graph: DocGraph) -> Csr:
    """The adjacency as every process built it before files were saved."""
    return graph._edge_adjacency(np.ones(len(EDGE_TYPES)), True)


@pytest.mark.parametrize("nnz_odd", [False, True])
def test_write_and_map_round_trip(tmp_path: Path, nnz_odd: bool) -> None:
    rng = np.random.default_rng(int(nnz_odd))
    n = 50
    rows, cols = rng.integers(0, n, 301), rng.integers(0, n, 301)
    m = Csr.from_edges(rows, cols, rng.random(301), (n, n))
    if (m.nnz % 2 == 1) != nnz_odd:
        m = Csr.from_edges(rows[:-1], cols[:-1], rng.random(300), (n, n))
    with pytest.raises(ValueError, match="float64 values, not float32"):  # a mapped file would walk otherwise
        AdjacencyFile.write(tmp_path, "abc", m)
    m64, m = m, as_float32(m)
    f = AdjacencyFile.write(tmp_path, "abc", m, durable=nnz_odd)
    assert f is not None and f.path.stat().st_size == f.size + 32 and (f.nnz % 2 == 1) == nnz_odd
    assert f.size == 8 * (n + 1) + 8 * ((f.nnz + 1) // 2) + 4 * f.nnz and f.describe()["data_bytes"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["adjacency-abc.csr"]  # no temporary file left
    back = AdjacencyFile.from_info(tmp_path, json.loads(json.dumps(f.describe()))).map()
    assert same(back, m) and back.sorted_rows and not back.data.flags.writeable
    found = AdjacencyFile.found(tmp_path, "abc")  # described by its trailer alone
    assert found == f and same(found.map(), m)
    assert AdjacencyFile.found(tmp_path, "abd") is None
    with pytest.raises(ValueError, match="build id"):  # an id from a damaged or crafted graph.npz
        AdjacencyFile.found(tmp_path, "../../x")
    with pytest.raises(ValueError, match="bad adjacency"):
        AdjacencyFile.from_info(tmp_path, {"file": "../x.csr", "nodes": 1, "nnz": 0, "crc32": 0})
    for data_bytes in ([4], 2, "4", True):  # a hand-edited description: refused, not a TypeError
        with pytest.raises(ValueError, match="bad adjacency"):
            AdjacencyFile.from_info(tmp_path, f.describe() | {"data_bytes": data_bytes})
    # files of the versions before hold float64 values: with a trailer (found alone) and without
    old = write_float64_file(tmp_path / "adjacency-abe.csr", m64)
    old_found = AdjacencyFile.found(tmp_path, "abe")
    assert old_found is not None and old_found.data_bytes == 8 and same(old_found.map(), m64)
    described = {"file": "adjacency-abe.csr", "nodes": n, "nnz": m64.nnz, "crc32": old_found.crc}
    assert same(AdjacencyFile.from_info(tmp_path, described).map(), m64)
    old.write_bytes(old.read_bytes()[:-32])
    assert same(AdjacencyFile.from_info(tmp_path, described).map(), m64)
    with pytest.raises(ValueError, match="trailer"):
        AdjacencyFile.found(tmp_path, "abe")
    raw = bytearray(f.path.read_bytes())
    raw[f.size - 3] ^= 0xFF
    f.path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="CRC"):
        f.map()
    f.path.write_bytes(bytes(raw[:-8]))
    with pytest.raises(ValueError, match="bytes"):
        f.map()


def test_saved_by_builds_dropped_by_updates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("rosetta-stone.txt", "honeybees.html"):
        shutil.copy(SAMPLES / name, docs / name)
    kb_path = tmp_path / "kb"
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
        kb.graph.build()
        graph_dir = kb.graph.doc_graph_path
    info = json.loads((graph_dir / "graph.json").read_text())
    assert [p.name for p in adjacency_files(graph_dir)] == [info["adjacency"]["file"]]

    loaded = DocGraph.load(graph_dir)
    assert loaded.adjacency_file is not None
    mapped = loaded.adjacency()
    assert isinstance(mapped.data, np.ndarray) and not mapped.data.flags.writeable  # the file, mapped
    assert same(mapped, from_edges(loaded))
    weighted = loaded.adjacency({"SIMILAR": 0.5})  # other weights: built from the edges
    assert weighted.data.flags.writeable and not same(weighted, mapped)

    # Graph mode answers the same from the mapped matrix as from one built from the edges.
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        question = "Who deciphered the hieroglyphs?"
        with_file = [(r.node.id, round(r.score, 12)) for r in kb.search(question, 5, mode="graph")]
        graph = kb.graph.doc_graph()
        assert graph.adjacency_file is not None
        graph._derived.clear()
        graph.adjacency_file = None
        assert [(r.node.id, round(r.score, 12)) for r in kb.search(question, 5, mode="graph")] == with_file

    # Damaged: not used (a warning); the adjacency comes from the edges, and the file is written again.
    path = graph_dir / info["adjacency"]["file"]
    damage(path)
    part = next(p for p in check_kb(kb_path).parts if p.part == "document graph")
    assert not part.problems and any("saved adjacency not used" in note for note in part.notes)
    damaged = DocGraph.load(graph_dir)
    with caplog.at_level(logging.WARNING, logger="kvgraph.docgraph.build"):
        assert same(damaged.adjacency(), from_edges(damaged))
    assert "CRC-32 mismatch" in caplog.text
    healed = DocGraph.load(graph_dir).adjacency_file
    assert healed is not None and same(healed.map(), from_edges(damaged))

    # An ingest updates the graph in place: its save names no adjacency file and deletes the old one.
    (docs / "more.txt").write_text("Jean-Francois Champollion studied Coptic in Grenoble before Paris.\n")
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
    info = json.loads((graph_dir / "graph.json").read_text())
    assert "adjacency" not in info and adjacency_files(graph_dir) == []
    updated = DocGraph.load(graph_dir)
    assert updated.adjacency_file is None

    # The first process to query the updated graph writes its adjacency for the ones after it.
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        assert kb.search("Where did Champollion study Coptic?", 3, mode="graph")
    assert [p.name for p in adjacency_files(graph_dir)] == [f"adjacency-{info['build']}.csr"]
    later = DocGraph.load(graph_dir)
    assert later.adjacency_file is not None
    mapped = later.adjacency()
    assert not mapped.data.flags.writeable and same(mapped, from_edges(updated))
    damage(later.adjacency_file.path)  # damaged: not used, and written again by whoever builds it
    again = DocGraph.load(graph_dir)
    with caplog.at_level(logging.WARNING, logger="kvgraph.docgraph.build"):
        assert same(again.adjacency(), from_edges(updated))
    rewritten = DocGraph.load(graph_dir).adjacency()  # (the damage went into `mapped`'s file: compare with the edges)
    assert not rewritten.data.flags.writeable and same(rewritten, from_edges(updated))

    # The next update's save deletes it; a process still holding the older save writes none for it.
    stale = DocGraph.load(graph_dir)
    (docs / "more.txt").write_text("Champollion announced the decipherment in 1822.\n")
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
    assert adjacency_files(graph_dir) == []
    assert same(stale.adjacency(), from_edges(stale)) and stale.adjacency_file is None
    assert adjacency_files(graph_dir) == []


def damage(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_small_graphs_get_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "rosetta-stone.txt", docs / "rosetta-stone.txt")
    kb_path = tmp_path / "kb"
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
        kb.graph.build()
        edges = len(kb.graph.doc_graph().src)
    monkeypatch.setattr("kvgraph.docgraph.adjacency_file.MIN_EDGES", edges + 1)
    with KnowledgeBase.open(kb_path) as kb:
        kb.graph.build()
        graph_dir = kb.graph.doc_graph_path
        assert "adjacency" not in json.loads((graph_dir / "graph.json").read_text())
        assert kb.search("Who deciphered the hieroglyphs?", k=2, mode="graph")  # built in memory
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        assert kb.search("Who deciphered the hieroglyphs?", k=2, mode="graph")
    assert adjacency_files(graph_dir) == []  # neither the build nor the queries wrote one
    monkeypatch.setattr("kvgraph.docgraph.adjacency_file.MIN_EDGES", edges)
    with KnowledgeBase.open(kb_path) as kb:
        kb.graph.build()
    assert len(adjacency_files(graph_dir)) == 1  # at the size that pays


def test_a_damaged_float64_file_of_a_format_3_graph_is_replaced_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "rosetta-stone.txt", docs / "rosetta-stone.txt")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
        kb.graph.build()
        graph_dir = kb.graph.doc_graph_path
    info = json.loads((graph_dir / "graph.json").read_text())
    path = graph_dir / info["adjacency"]["file"]
    # as the version before wrote it: float64 weights, described without data_bytes
    m = AdjacencyFile.from_info(graph_dir, info["adjacency"]).map()
    old = Csr(np.array(m.indptr), np.array(m.indices), np.array(m.data, np.float64), m.shape, sorted_rows=True)
    write_float64_file(path, old)
    crc = AdjacencyFile.found(graph_dir, info["build"])
    assert crc is not None
    info["adjacency"] = {"file": path.name, "nodes": m.shape[0], "nnz": m.nnz, "crc32": crc.crc}
    (graph_dir / "graph.json").write_text(json.dumps(info))
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="kvgraph.docgraph.build"):
        first = DocGraph.load(graph_dir)
        assert first.adjacency_file is not None and first.adjacency_file.data_bytes == 8
        assert same(first.adjacency(), from_edges(first))  # built from the edges, and saved again
        assert "not used" in caplog.text
        caplog.clear()
        for _ in range(2):  # later processes follow the new file's trailer: mapped, no warning
            later = DocGraph.load(graph_dir)
            assert later.adjacency_file is not None and later.adjacency_file.data_bytes == 4
            mapped = later.adjacency()
            assert not mapped.data.flags.writeable and same(mapped, from_edges(later))
        assert "not used" not in caplog.text
