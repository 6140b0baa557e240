"""One loaded document graph per directory and process, read again only after a save replaced it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kvgraph.docgraph.build import CHUNK, ENTITY, DocGraph
from kvgraph.docgraph.cache import forget, remember, shared_graph
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document


def tiny_graph(n_chunks: int) -> DocGraph:
    keys = [f"c{i}" for i in range(n_chunks)] + ["entity:x"]
    src = np.arange(n_chunks, dtype=np.int64)
    return DocGraph(
        keys=keys,
        kinds=[CHUNK] * n_chunks + [ENTITY],
        names=list(keys),
        src=src,
        dst=np.full(n_chunks, n_chunks, np.int64),
        etype=np.full(n_chunks, 2, np.int8),  # MENTIONS
        weight=np.ones(n_chunks, np.float32),
    )


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    forget()
    yield
    forget()


def test_loaded_once_and_read_again_after_a_save(tmp_path: Path) -> None:
    d = tmp_path / "g"
    tiny_graph(2).save(d)
    first = shared_graph(d)
    assert shared_graph(d) is first and shared_graph(str(d) + "/") is first
    made = []
    first.derived("probe", lambda: made.append(1) or len(made))
    assert shared_graph(d).derived("probe", lambda: made.append(1) or len(made)) == 1 and made == [1]

    other = tiny_graph(3)
    other.save(d)  # as another process would: the files are replaced
    second = shared_graph(d)
    assert second is not first and second.build == other.build != first.build
    assert second.count(CHUNK) == 3


def test_a_touched_file_of_the_same_save_keeps_the_held_graph(tmp_path: Path) -> None:
    d = tmp_path / "g"
    tiny_graph(2).save(d)
    first = shared_graph(d)
    st = os.stat(d / "graph.json")
    os.utime(d / "graph.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert shared_graph(d) is first  # read again, same build id: what was derived from it is kept


def test_remember_holds_a_just_saved_graph(tmp_path: Path) -> None:
    d = tmp_path / "g"
    g = tiny_graph(2)
    g.save(d)
    remember(d, g)
    assert shared_graph(d) is g


def test_missing_or_damaged_graph_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no knowledge-vector graph"):
        shared_graph(tmp_path / "nothing")
    d = tmp_path / "g"
    tiny_graph(2).save(d)
    shared_graph(d)
    (d / "graph.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match="damaged"):
        shared_graph(d)


def test_knowledge_base_handles_share_the_graph_and_see_rebuilds(tmp_path: Path) -> None:
    docs = [
        Document(id="a", text="Ada Lovelace wrote about the Analytical Engine.", metadata={"title": "Ada"}),
        Document(id="b", text="The Analytical Engine was designed by Charles Babbage.", metadata={"title": "Engine"}),
    ]
    with KnowledgeBase.open(tmp_path / "kb", expand_neighbors=False) as writer:
        writer.add_documents(docs)
        writer.graph.build()
        built = writer.graph.doc_graph()
        with KnowledgeBase.open(tmp_path / "kb", read_only=True, expand_neighbors=False) as reader:
            assert reader.graph.doc_graph() is built  # no second load in this process
            assert reader.search("Who designed the Analytical Engine?", 1, mode="graph")[0].node.ref_doc_id == "b"
            writer.add_documents([Document(id="c", text="Charles Babbage was born in London.", metadata={})])
            rebuilt = reader.graph.doc_graph()
            assert rebuilt is not built and rebuilt.build != built.build
            assert "c" in {rebuilt.doc_of.get(k) for k in rebuilt.keys}


def test_an_ingest_reads_the_saved_graph_once_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with KnowledgeBase.open(tmp_path / "kb", expand_neighbors=False) as kb:
        kb.add_documents([Document(id="a", text="Ada Varn sailed from Lorwick to Kelmora.", metadata={})])
        kb.graph.build()
        forget()  # as a new process finds it
        reads: list[str] = []
        load = DocGraph.load

        def counted(directory: str | os.PathLike[str]) -> DocGraph:
            import threading
            import time

            reads.append(threading.current_thread().name)
            time.sleep(0.3)  # a large graph: still reading when the files are stored
            return load(directory)

        monkeypatch.setattr(DocGraph, "load", staticmethod(counted))
        f = tmp_path / "b.txt"
        f.write_text("Bo Keller met Ada Varn in Kelmora.")
        kb.ingest(f)
        assert reads == ["kvgraph-graph-prefetch"]  # read beside the ingest, then updated without a second read
        assert "entity:bo keller" in kb.graph.doc_graph().index
        reads.clear()
        kb.ingest(f)  # nothing changed: the read in the background is not waited for, and nothing breaks
        assert kb.graph.doc_graph().meta["updates"] == 1
