"""KnowledgeBase end to end with the real embedding model, real files and a real store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kbdocs import TOWER, make_docs
from kvgraph.config import CONFIG_FILE
from kvgraph.errors import InvalidFilterError, InvalidInputError, KvgraphError
from kvgraph.kb import KnowledgeBase
from kvgraph.testing.pdf import write_image_only_pdf


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return make_docs(tmp_path)


def test_ingest_search_and_citations(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = kb.ingest([docs])
        assert report.files_ingested == 4 and not report.skipped
        # markdown sections + 1 text + 1 html + 2 pdf pages
        assert report.documents == 2 + 1 + 1 + 2
        # tiny Markdown sections are merged with their neighbours, so a chunk may hold two documents
        assert report.chunks >= report.files_ingested and report.tokens > 50
        assert report.embedded == report.chunks

        hits = kb.search("which wifi channels don't overlap", k=3)
        top = hits[0].node
        assert top.metadata["file_name"] == "network.pdf" and top.metadata["page"] == 2
        assert top.metadata["total_pages"] == 2
        assert "char_start" in top.metadata and top.ref_doc_id.endswith("#page=2")

        hits = kb.search("how often should compost be turned", k=1)
        # both sections are under the merge size: one chunk, under the file's title
        assert "Turn the pile every two weeks" in hits[0].node.text
        assert hits[0].node.metadata["heading_path"].startswith("Composting")

        # filters pass through: restricted to the PDF, the compost question finds PDF pages only
        hits = kb.search("how often should compost be turned", k=5, filters={"file_type": "pdf"})
        assert hits and {h.node.metadata["file_type"] for h in hits} == {"pdf"}
        hits = kb.search("compost", k=5, filters={"page": {"$gte": 2}})
        assert [h.node.metadata["page"] for h in hits] == [2]

        # sparse and hybrid modes use the store's BM25 index
        assert kb.search("waggle dance", k=1, mode="sparse")[0].node.metadata["file_name"] == "bees.html"
        assert kb.search("waggle dance", k=1, mode="hybrid")[0].node.metadata["file_name"] == "bees.html"

        answer = kb.ask("How tall is the Eiffel Tower?")
        assert "330 metres" in answer.text
        assert answer.citations and answer.citations[0].source == "tower.txt"
        assert "[1]" in answer.text


def test_reingest_skips_unchanged_files_and_replaces_exactly_a_changed_files_nodes(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
        before = {n.id: n.ref_doc_id for n in _all_nodes(kb)}
        again = kb.ingest([docs])
        assert (again.files_ingested, again.files_unchanged, again.chunks, again.embedded) == (0, 4, 0, 0)

        # touch without change: hashed, not re-embedded
        os.utime(docs / "tower.txt", None)
        (docs / "tower.txt").write_text(TOWER)
        assert kb.ingest([docs]).files_ingested == 0

        (docs / "tower.txt").write_text(TOWER + "Gustave Eiffel's company designed and built the tower.\n")
        changed = kb.ingest([docs])
        assert changed.files_ingested == 1 and changed.files_unchanged == 3
        after = {n.id: n.ref_doc_id for n in _all_nodes(kb)}
        tower_doc = str((docs / "tower.txt").resolve())
        # every other file's nodes are untouched; the tower's old node is gone, a new one is there
        assert {i for i, d in before.items() if d != tower_doc} == {i for i, d in after.items() if d != tower_doc}
        old_tower = {i for i, d in before.items() if d == tower_doc}
        new_tower = {i for i, d in after.items() if d == tower_doc}
        assert old_tower and new_tower and not (old_tower & new_tower)
        assert "Gustave" in kb.ask("Who built the Eiffel Tower?").text


def test_sync_removes_vanished_files_and_adds_new_ones(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
        n_before = kb.store.count()
        bees = [n for n in _all_nodes(kb) if n.metadata["file_name"] == "bees.html"]
        (docs / "sub" / "bees.html").unlink()
        (docs / "new.txt").write_text("Basalt columns form when thick lava flows cool slowly and contract.\n")
        report = kb.sync()
        assert report.files_removed == 1 and report.files_ingested == 1
        assert kb.store.count() == n_before - len(bees) + 1
        assert not [n for n in _all_nodes(kb) if n.metadata["file_name"] == "bees.html"]
        assert kb.search("how do basalt columns form", k=1)[0].node.metadata["file_name"] == "new.txt"
        assert {Path(d["path"]).name for d in kb.documents()} == {"compost.md", "tower.txt", "network.pdf", "new.txt"}


def test_delete_a_file_deletes_every_node_derived_from_it(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
        pdf_nodes = [n for n in _all_nodes(kb) if n.metadata["file_name"] == "network.pdf"]
        assert len({n.ref_doc_id for n in pdf_nodes}) == 2  # one document per page
        assert kb.delete(docs / "network.pdf") == len(pdf_nodes)
        assert not kb.search("wifi channels", k=5, filters={"file_type": "pdf"})
        with pytest.raises(InvalidInputError, match="no such file or document"):
            kb.delete(docs / "network.pdf")
        # the registry forgot the file; its folder is still a root, so a sync brings it back
        assert kb.sync().files_ingested == 1


def test_bad_files_are_reported_and_skipped_without_damage(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
        count = kb.store.count()
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "empty.txt").write_text("")
        (bad / "binary.txt").write_bytes(bytes(range(256)) * 40)
        (bad / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
        (bad / "garbage.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
        write_image_only_pdf(bad / "scan.pdf", 2)
        (bad / "good.md").write_text("# Rivers\n\nThe Danube flows through ten countries.\n")
        report = kb.ingest([bad])
        reasons = {Path(s.path).name: s.reason for s in report.skipped}
        assert set(reasons) == {"empty.txt", "binary.txt", "garbage.pdf", "scan.pdf"}
        assert "no text layer" in reasons["scan.pdf"]
        assert report.files_ingested == 2  # good.md, and latin1.txt decoded by its detected charset
        assert kb.store.count() == count + 2
        latin = kb.search("caf\xe9 cr\xe8me", k=1, mode="sparse")
        assert latin and "caf\xe9 cr\xe8me" in latin[0].node.text
        with pytest.raises(InvalidInputError, match="does-not-exist"):
            kb.ingest([tmp_path / "does-not-exist"])
        assert kb.store.count() == count + 2


def test_settings_file_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=100) as kb:
        assert kb.settings.chunk_size == 100
    text = (tmp_path / "kb" / CONFIG_FILE).read_text()
    assert "chunk_size = 100" in text
    monkeypatch.setenv("KVGRAPH_TOP_K", "7")
    with KnowledgeBase.open(tmp_path / "kb", read_only=True) as kb:
        assert (kb.settings.chunk_size, kb.settings.top_k) == (100, 7)
    (tmp_path / "kb" / CONFIG_FILE).write_text(text + "colour = 'blue'\n")
    with pytest.raises(InvalidInputError, match="unknown setting 'colour'"):
        KnowledgeBase.open(tmp_path / "kb")
    (tmp_path / "kb" / CONFIG_FILE).write_text(text.replace("chunk_size = 100", "chunk_size = 'big'"))
    with pytest.raises(InvalidInputError, match="chunk_size"):
        KnowledgeBase.open(tmp_path / "kb")


def test_chunk_size_beyond_the_model_window_is_refused(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=300) as kb, pytest.raises(InvalidInputError, match="256"):
        kb.ingest([docs])


def test_changing_the_embedder_of_a_populated_kb_is_refused(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs / "tower.txt"])
    with KnowledgeBase.open(tmp_path / "kb", embedder="onnx-fp32") as kb:
        with pytest.raises(InvalidInputError, match="was embedded with"):
            kb.search("Eiffel")
        with pytest.raises(InvalidInputError, match="was embedded with"):
            kb.ingest([docs])


def test_read_only_opening_and_single_writer(tmp_path: Path, docs: Path) -> None:
    with pytest.raises(InvalidInputError, match="no knowledge base at"):
        KnowledgeBase.open(tmp_path / "nothing", read_only=True)
    with KnowledgeBase.open(tmp_path / "kb") as writer:
        writer.ingest([docs / "tower.txt"])
        with KnowledgeBase.open(tmp_path / "kb", read_only=True) as reader:
            assert reader.search("Eiffel Tower height", k=1)[0].node.metadata["file_name"] == "tower.txt"
            with pytest.raises(KvgraphError, match="read-only"):
                reader.ingest([docs])


def test_kb_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a directory"):
        KnowledgeBase.open(tmp_path / "file")
    with pytest.raises(InvalidInputError, match="cannot create knowledge base directory"):
        KnowledgeBase.open(tmp_path / "file" / "kb")


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root, which may write to any directory; the check matters for other users")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(InvalidInputError, match="not writable"):
            KnowledgeBase.open(locked)
    finally:
        locked.chmod(stat.S_IRWXU)


def test_bad_queries(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs / "tower.txt"])
        with pytest.raises(InvalidInputError, match="non-empty"):
            kb.search("   ")
        with pytest.raises(InvalidFilterError):
            kb.search("Eiffel", filters={"page": {"$between": [1, 2]}})
        assert kb.store.count() == 1


def _all_nodes(kb: KnowledgeBase) -> list:
    ids = [i for d in kb.documents() for i in d["doc_ids"]]
    nodes = []
    for doc_id in ids:
        nodes.extend(kb.store.get_ref_doc(doc_id))
    return nodes


def test_add_documents_again_writes_nothing_and_a_changed_document_is_replaced(tmp_path: Path) -> None:
    from kvgraph.schema import Document

    docs = [
        Document(id="d1", text="Copper conducts electricity well. It is used in wiring.", metadata={"page": 1}),
        Document(id="d2", text="Granite is an igneous rock made of quartz and feldspar.", metadata={"page": 2}),
    ]
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        first = kb.add_documents(docs)
        generation = kb.store.stats()["generation"]
        again = kb.add_documents(docs)
        assert [n.id for n in again] == [n.id for n in first]
        assert kb.store.stats()["generation"] == generation  # no commit at all
        docs[1] = Document(id="d2", text="Basalt is a fine-grained volcanic rock.", metadata={"page": 2})
        kb.add_documents(docs)
        assert kb.store.count() == 2
        assert "Basalt" in kb.search("volcanic rock", k=1)[0].node.text
