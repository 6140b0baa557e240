"""The seed workflow's question over the Llama 2 paper, ingested as a new user would: one Markdown
file per page, default settings.

"Can you tell me about the key concepts for safety finetuning" is answered on page 23, the page
with "4.2 Safety Fine-Tuning". With the defaults (hybrid search, confidence fusion, contextual
headers, merged sections) that page ranks first. Until the BM25 analyzer dropped two-word requests
such as "key concepts" from questions, page 68 (a model's answer about starting a car *without a
key* under "Safety considerations") won BM25 on the words "key" and "safety" and page 23 was 2nd
to 5th (docs/eval.md, "The seed question").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.eval.datasets import page_id
from kvgraph.eval.sources import paged_text
from kvgraph.ingest.context import embedding_text
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import NodeWithScore
from support import require_dataset

SEED = "Can you tell me about the key concepts for safety finetuning"
ANSWER_PAGE = 23


def ranked_pages(hits: list[NodeWithScore]) -> list[int]:
    """Pages in rank order of their best chunk."""
    pages: list[int] = []
    for hit in hits:
        page = hit.node.metadata.get("page")
        assert isinstance(page, int), f"{hit.node.metadata.get('file_name')}: no page metadata"
        if page not in pages:
            pages.append(page)
    return pages


@pytest.fixture(scope="module")
def llama2_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = require_dataset("llama2", "llama2_paper_pdftext.txt")
    root = tmp_path_factory.mktemp("seed")
    files = root / "files"
    files.mkdir()
    for number, text in paged_text(source):
        if text.strip():
            (files / f"{page_id(number)}.md").write_text(text, encoding="utf-8")
    assert "# 4.2 Safety Fine-Tuning" in (files / f"{page_id(ANSWER_PAGE)}.md").read_text(encoding="utf-8")
    with KnowledgeBase.open(root / "kb") as kb:  # the defaults a new user gets
        kb.ingest(files)
    return root / "kb"


def test_the_seed_question_finds_the_safety_fine_tuning_page_in_the_top_5(llama2_kb: Path) -> None:
    with KnowledgeBase.open(llama2_kb, read_only=True) as kb:
        assert kb.settings.mode == "hybrid" and kb.settings.context_headers
        hits = kb.search(SEED, k=10)
    assert ANSWER_PAGE in ranked_pages(hits)[:5]
    best = next(h for h in hits if h.node.metadata["page"] == ANSWER_PAGE)
    # the page's chunk is the section itself, shown as its own text (the header is only embedded)
    assert best.node.text.startswith("# 4.2 Safety Fine-Tuning")
    assert "4.2 Safety Fine-Tuning" in str(best.node.metadata["context_header"])


def test_the_answer_chunk_is_embedded_with_its_section_header(llama2_kb: Path, embedder: OnnxEmbedder) -> None:
    with KnowledgeBase.open(llama2_kb, read_only=True) as kb:
        assert kb.embedder.model_name == embedder.model_name
        hit = next(h for h in kb.search(SEED, k=10) if h.node.text.startswith("# 4.2 Safety Fine-Tuning"))
        stored = hit.node.embedding_array()
        if stored is None:
            found = kb.store.get([hit.node.id])[0]
            assert found is not None
            stored = found.embedding_array()
    assert stored is not None
    with_header, text_only = embedder.embed([embedding_text(hit.node), hit.node.text])
    assert float(np.dot(stored, with_header)) == pytest.approx(1.0, abs=1e-3)
    assert float(np.dot(stored, text_only)) < 0.999


def test_the_seed_question_ranks_the_safety_fine_tuning_page_first(llama2_kb: Path) -> None:
    with KnowledgeBase.open(llama2_kb, read_only=True) as kb:
        hits = kb.search(SEED, k=10)
    assert ranked_pages(hits)[0] == ANSWER_PAGE
