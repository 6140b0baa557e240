"""The issue's must-show on the Llama 2 paper, through the whole pipeline (real model, real store)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kvgraph.eval.sources import llama2_pages
from kvgraph.kb import KnowledgeBase
from support import require_dataset

QUESTION = "Can you tell me about the key concepts for safety finetuning"


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory):
    root = require_dataset("llama2").parent
    with KnowledgeBase.open(tmp_path_factory.mktemp("llama2") / "kb") as kb:
        nodes = kb.add_documents(llama2_pages(root))
        assert len(nodes) > 300
        yield kb


def test_safety_fine_tuning_pages_rank_in_the_top_two(kb: KnowledgeBase) -> None:
    hits = kb.search(QUESTION, k=2)
    assert {h.node.metadata["page"] for h in hits} & {23, 24}, [h.node.metadata["page"] for h in hits]


def test_extractive_answer_names_the_three_techniques_with_citations(kb: KnowledgeBase) -> None:
    answer = kb.ask(QUESTION)
    lines = answer.text.splitlines()
    by_number = {c.number: c for c in answer.citations}
    for concept in (r"supervised safety fine-?tuning", r"safety rlhf", r"safety context distillation"):
        line = next((ln for ln in lines if re.search(concept, ln, re.I)), None)
        assert line is not None, f"{concept!r} missing from:\n{answer.text}"
        numbers = [int(n) for n in re.findall(r"\[(\d+)\]", line)]
        assert numbers and all(by_number[n].page in (23, 24) for n in numbers), line


def test_pages_become_documents_with_page_metadata(kb: KnowledgeBase) -> None:
    hits = kb.search("Ghost Attention for multi-turn consistency", k=3, filters={"page": {"$gte": 15, "$lte": 20}})
    assert hits and all(15 <= h.node.metadata["page"] <= 20 for h in hits)
    assert all(h.node.metadata["total_pages"] == 77 for h in hits)


def test_real_pdf_excerpt_ingests_with_page_metadata(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = kb.ingest([require_dataset("llama2", "llama2_pages1-4_excerpt.pdf")])
        assert report.documents == 4 and not report.skipped
        hits = kb.search("pretrained and fine-tuned large language models from 7 to 70 billion parameters", k=1)
        node = hits[0].node
        assert node.metadata["page"] == 1 and node.metadata["total_pages"] == 4
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", node.text)
