"""Contextual chunk headers: the title and heading path are embedded with a chunk, never shown as its text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.ingest.context import HEADER_KEY, chunk_header, embedding_text
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document

BODY = (
    "Sourdough needs a starter that is fed with flour and water every day. "
    "The starter should double in size within eight hours of a feeding. "
) * 12


def test_header_is_title_then_heading_path_each_name_once() -> None:
    assert (
        chunk_header({"title": "Baking", "heading_path": "Baking > Bread > Sourdough"}) == "Baking > Bread > Sourdough"
    )
    assert chunk_header({"title": "Guide", "heading_path": "Install > Linux"}) == "Guide > Install > Linux"
    assert chunk_header({"title": "  Only   title "}) == "Only title"
    assert chunk_header({"file_name": "x.md"}) == ""


def test_header_tokens_come_out_of_chunk_size(embedder: OnnxEmbedder) -> None:
    counter = embedder.token_counter()
    doc = Document(id="d", text=BODY, metadata={"title": "A guide to baking bread", "heading_path": "Starters"})
    nodes = SentenceSplitter(counter, 64, 8, context_headers=True).split(doc)
    assert len(nodes) > 2
    for node in nodes:
        assert node.metadata[HEADER_KEY] == "A guide to baking bread > Starters"
        assert "guide to baking" not in node.text  # the shown text is the chunk's own
        assert node.text == BODY[node.metadata["char_start"] : node.metadata["char_end"]]
        assert counter.count([embedding_text(node)])[0] <= 64  # header + chunk still fit the window
    plain = SentenceSplitter(counter, 64, 8).split(doc)
    assert HEADER_KEY not in plain[0].metadata
    assert {n.id for n in plain}.isdisjoint({n.id for n in nodes})  # turning headers on re-embeds every chunk


def test_a_header_too_long_for_its_budget_is_cut_to_its_first_words(embedder: OnnxEmbedder) -> None:
    counter = embedder.token_counter()
    long_path = " > ".join(f"Section number {i} about something" for i in range(30))
    doc = Document(id="d", text=BODY, metadata={"title": "T", "heading_path": long_path})
    nodes = SentenceSplitter(counter, 128, 16, context_headers=True).split(doc)
    header = nodes[0].metadata[HEADER_KEY]
    assert isinstance(header, str) and header.startswith("T > Section number 0")
    assert counter.count([header])[0] <= 32  # a quarter of chunk_size at most
    assert all(counter.count([embedding_text(n)])[0] <= 128 for n in nodes)


def test_knowledge_base_embeds_the_header_but_shows_the_text(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "bread.md").write_text(f"# Baking bread\n\n## Sourdough starter\n\n{BODY}\n", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest(folder)
        ids = kb.store.ids()
        nodes = [n for n in kb.store.get(ids) if n is not None]
        assert nodes
        for node in nodes:
            assert node.metadata[HEADER_KEY] == "Baking bread > Sourdough starter"
            assert not node.text.startswith("Baking bread > ")
            stored = node.embedding_array()
            assert stored is not None
            with_header, without = embedder.embed([embedding_text(node), node.text])
            assert float(np.dot(stored, with_header)) == pytest.approx(1.0, abs=1e-3)
            assert float(np.dot(stored, without)) < 0.999
        hit = kb.search("How often is a sourdough starter fed?", k=1)[0]
        assert "Baking bread >" not in hit.node.text  # search shows the chunk's own text


def test_turning_headers_off_rechunks_without_them(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "bread.md").write_text(f"# Baking bread\n\n{BODY}\n", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest(folder)
        assert all(HEADER_KEY in n.metadata for n in kb.store.get(kb.store.ids()) if n is not None)
    with KnowledgeBase.open(tmp_path / "kb", context_headers=False) as kb:
        kb.sync()
        nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
        assert nodes and all(HEADER_KEY not in n.metadata for n in nodes)
