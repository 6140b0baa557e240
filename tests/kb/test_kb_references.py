"""Node references inside a knowledge base: ingest, recursive search, sync, delete, rerank.

Real sample documents, the real embedding model and a real store; small parent and child
sizes so that each sample file makes several parents.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.progress import RichProgress, llm_cost
from kvgraph.retrieve import RetrievedNode

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"
SMALL = {"parent_size": 300, "child_sizes": [64, 128], "chunk_overlap": 16}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    out = tmp_path / "docs"
    out.mkdir()
    for name in ("rosetta-stone.txt", "sourdough.md"):
        shutil.copy(SAMPLES / name, out / name)
    return out


def roles(kb: KnowledgeBase, doc_ids: list[str] | None = None) -> dict[str, int]:
    nodes = kb.store.get(kb.store.ids(doc_ids=doc_ids) if doc_ids else kb.store.ids())
    out: dict[str, int] = {}
    for node in nodes:
        role = str(node.metadata.get("role", "chunk"))
        out[role] = out.get(role, 0) + 1
    return out


def test_chunk_references_search_children_and_return_parents(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", references="chunk", **SMALL) as kb:
        kb.ingest([docs])
        counts = roles(kb)
        assert set(counts) == {"parent", "child"} and counts["child"] > counts["parent"] >= 4
        assert kb.stats()["nodes_by_role"]["parent"] == counts["parent"]

        hits = kb.search("Who deciphered the hieroglyphs?", k=3)
        assert len(hits) == 3 and all(isinstance(h, RetrievedNode) for h in hits)
        assert all(h.node.metadata["role"] == "parent" for h in hits)
        assert len({h.node.id for h in hits}) == 3
        top = hits[0]
        assert top.hit is not None and top.hit.metadata["role"] == "child"
        assert top.path == [top.hit.id, top.node.id] and top.hit.relationships["ref"] == top.node.id
        assert "Champollion" in top.node.text

        # a user filter composes with the references' own filter
        hits = kb.search("Who deciphered the hieroglyphs?", k=3, filters={"file_type": "markdown"})
        assert hits and all(h.node.metadata["file_name"] == "sourdough.md" for h in hits)
        assert all(h.node.metadata["role"] == "parent" for h in hits)

        answer = kb.ask("Who deciphered the hieroglyphs?")
        assert "Champollion" in answer.text and answer.citations[0].source == "rosetta-stone.txt"


def test_metadata_references_are_extractive_and_lead_to_parents(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", references="metadata", n_questions=2, **SMALL) as kb:
        kb.ingest([docs])
        counts = roles(kb)
        assert set(counts) == {"parent", "summary", "question"}
        assert counts["summary"] == counts["parent"]
        summaries = [n for n in kb.store.get(kb.store.ids(filters={"role": "summary"}))]
        assert all(n.metadata["extractive"] is True for n in summaries)
        hits = kb.search("how long should the dough rise", k=2, mode="hybrid")
        assert all(h.node.metadata["role"] == "parent" for h in hits)
        assert hits[0].node.metadata["file_name"] == "sourdough.md"


def test_changing_the_layout_rechunks_every_file_and_delete_removes_references(tmp_path: Path, docs: Path) -> None:
    kb_dir = tmp_path / "kb"
    with KnowledgeBase.open(kb_dir) as kb:
        kb.ingest([docs])
        assert set(roles(kb)) == {"chunk"}
        plain = kb.store.count()
    # switching references on re-splits the files already there, on the next sync
    with KnowledgeBase.open(kb_dir, references="both", n_questions=1, **SMALL) as kb:
        report = kb.sync()
        assert report.files_unchanged == 2  # the sync itself found nothing new after re-chunking
        counts = roles(kb)
        assert set(counts) == {"parent", "child", "summary", "question"}
        assert kb.stats()["references"] == "both"
        rosetta = kb.registry.get(str((docs / "rosetta-stone.txt").resolve()))
        assert rosetta is not None
        assert kb.store.ids(doc_ids=rosetta.doc_ids)
        kb.delete(docs / "rosetta-stone.txt")
        assert kb.store.ids(doc_ids=rosetta.doc_ids) == []  # parents, children, summaries, questions
        assert roles(kb)["parent"] >= 1  # sourdough's remain
        (docs / "rosetta-stone.txt").unlink()
    # and back: the plain layout comes back, with nothing left of the references
    with KnowledgeBase.open(kb_dir, references="none") as kb:
        kb.sync()
        assert set(roles(kb)) == {"chunk"}
        assert 0 < kb.store.count() < plain
        assert all(not isinstance(h, RetrievedNode) or h.path == [h.node.id] for h in kb.search("sourdough", k=2))


def test_a_changed_file_replaces_exactly_its_references(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", references="chunk", **SMALL) as kb:
        kb.ingest([docs])
        sourdough = kb.registry.get(str((docs / "sourdough.md").resolve()))
        rosetta = kb.registry.get(str((docs / "rosetta-stone.txt").resolve()))
        assert sourdough and rosetta
        before = set(kb.store.ids(doc_ids=rosetta.doc_ids))
        path = docs / "rosetta-stone.txt"
        path.write_text(path.read_text() + "\nThe stone was moved to a new gallery in the museum in 2025.\n")
        report = kb.sync()
        assert report.files_ingested == 1
        rosetta2 = kb.registry.get(str(path.resolve()))
        assert rosetta2 is not None
        after = set(kb.store.ids(doc_ids=rosetta2.doc_ids))
        assert after != before and before - after  # the last parent and its children changed
        assert set(kb.store.ids(doc_ids=sourdough.doc_ids))  # untouched
        hits = kb.search("When was the stone moved to a new gallery?", k=1)
        assert "2025" in hits[0].node.text and hits[0].node.metadata["role"] == "parent"


def test_mmr_rerank_stage(tmp_path: Path, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", rerank="mmr", rerank_fetch_k=10) as kb:
        kb.ingest([docs])
        plain = kb.retriever(mode="dense")
        assert type(plain).__name__ == "RerankingRetriever"
        hits = kb.search("sourdough starter feeding", k=4)
        assert len(hits) == 4 and len({h.node.id for h in hits}) == 4
        # the reranker picks from the first stage's top 10, diversified: a different order or set
        first_stage = kb.retriever(mode="dense").base.retrieve("sourdough starter feeding", 10)
        assert {h.node.id for h in hits} <= {h.node.id for h in first_stage}


def test_bad_reference_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="references"):
        KnowledgeBase.open(tmp_path / "a", references="parents")
    with pytest.raises(InvalidInputError, match="child_sizes"):
        KnowledgeBase.open(tmp_path / "b", references="chunk", parent_size=128, child_sizes=[64, 256])
    with pytest.raises(InvalidInputError, match="rerank"):
        KnowledgeBase.open(tmp_path / "c", rerank="colbert")


class RecordingProgress(RichProgress):
    """The CLI's ingest progress display (off: not a terminal), recording the LLM snapshots it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.llm: list[Any] = []
        self.files = 0

    def file_done(self, path: str, chunks: int) -> None:
        super().file_done(path, chunks)
        self.files += 1

    def llm_progress(self, snapshot: Any) -> None:
        super().llm_progress(snapshot)
        self.llm.append(snapshot)


def test_llm_written_references_show_requests_and_tokens_during_ingest(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvgraph.testing.openai_server import FakeOpenAIServer

    def reply(messages: list[dict[str, object]]) -> str:
        text = str(messages[-1]["content"])
        return "1. What is this passage about?\n2. Which facts does it give?" if "questions" in text else "A summary."

    server = FakeOpenAIServer(reply=reply).start()
    try:
        monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
        progress = RecordingProgress()
        with KnowledgeBase.open(
            tmp_path / "kb", references="metadata", reference_writer="llm", n_questions=2, **SMALL
        ) as kb:
            kb.ingest([docs], progress=progress)
            parents = roles(kb)["parent"]
    finally:
        server.stop()
    assert progress.files == 2 and progress.llm
    # one snapshot per parent; each file's run ends with a snapshot of its totals
    finals = [p for p in progress.llm if p.done == p.total]
    assert len(progress.llm) == parents and len(finals) == 2
    assert sum(p.requests for p in finals) == len(server.requests_to("/v1/chat/completions")) == 2 * parents
    last = progress.llm[-1]
    assert last.prompt_tokens > 0 and last.completion_tokens > 0
    total = progress.llm_tally.total  # what the display shows: all files together
    assert total.requests == 2 * parents and total.prompt_tokens == sum(p.prompt_tokens for p in finals)
    assert llm_cost(total).startswith(f"{2 * parents} LLM requests, 0 cached, ")
