"""LLM query expansion (HyDE, multi-query) over a loopback OpenAI-protocol server, and the sentence reranker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import LLMUnavailableError
from kvgraph.kb import KnowledgeBase
from kvgraph.llm.openai_compat import OpenAICompatibleLLM
from kvgraph.retrieve.expansion import ExpandedRetriever, parse_rewrites
from kvgraph.retrieve.fusion import FusionRetriever
from kvgraph.retrieve.sentences import SentenceReranker, chunk_sentences
from kvgraph.schema import Node, NodeWithScore
from kvgraph.testing.openai_server import FakeOpenAIServer

DOCS = {
    "annotators.md": "# Data annotation\n\nWe measured inter-rater reliability with Gwet's AC2 statistic, "
    "which stayed between 0.37 and 0.55 across batches of annotations.",
    "compute.md": "# Compute\n\nPretraining used 3.3 million GPU hours on A100 accelerators, and the carbon "
    "emitted was fully offset by the sustainability programme.",
    "tokenizer.md": "# Tokenizer\n\nThe tokenizer is byte-pair encoding with a vocabulary of 32 thousand tokens; "
    "numbers are split into individual digits.",
}
QUESTION = "How did they check that the people rating answers agreed with each other?"


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("expansion")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    with KnowledgeBase.open(root / "kb") as kb:
        kb.ingest(root / "docs")
    return root / "kb"


def _chat_prompts(server: FakeOpenAIServer) -> list[str]:
    return [str(r.body["messages"][-1]["content"]) for r in server.requests_to("/v1/chat/completions")]


def test_hyde_searches_with_the_llm_passage(
    kb_path: Path, embedder: OnnxEmbedder, start_openai_server: Callable[..., FakeOpenAIServer]
) -> None:
    passage = "Agreement between annotators was measured with an inter-rater reliability statistic (Gwet's AC2)."
    server = start_openai_server(reply=lambda messages: passage)
    with KnowledgeBase.open(kb_path, read_only=True) as kb, OpenAICompatibleLLM(server.base_url, "test-model") as llm:
        retriever = ExpandedRetriever(FusionRetriever(kb.store, embedder), llm, "hyde")
        hits = retriever.retrieve(QUESTION, 3)
        assert retriever.last_expansion == [passage]
        assert hits[0].node.metadata["file_name"] == "annotators.md"
        (prompt,) = _chat_prompts(server)
        assert QUESTION in prompt


def test_multi_query_fuses_the_rewrites(
    kb_path: Path, embedder: OnnxEmbedder, start_openai_server: Callable[..., FakeOpenAIServer]
) -> None:
    reply = "1. inter-rater reliability of annotators\n2. annotator agreement statistic\n- Gwet AC2 reliability"
    server = start_openai_server(reply=lambda messages: reply)
    with KnowledgeBase.open(kb_path, read_only=True) as kb, OpenAICompatibleLLM(server.base_url, "test-model") as llm:
        retriever = ExpandedRetriever(FusionRetriever(kb.store, embedder), llm, "multi", n_queries=3)
        hits = retriever.retrieve(QUESTION, 3)
        assert retriever.last_expansion == [
            "inter-rater reliability of annotators",
            "annotator agreement statistic",
            "Gwet AC2 reliability",
        ]
        assert hits[0].node.metadata["file_name"] == "annotators.md"
        assert len({h.node.id for h in hits}) == len(hits)


def test_parse_rewrites_drops_marks_repeats_and_the_question() -> None:
    reply = '1) alpha\n\n- alpha\n* Question\n"beta"\n3. gamma\n4. delta'
    assert parse_rewrites(reply, "question", 3) == ["alpha", "beta", "gamma"]


def test_the_setting_needs_an_llm(kb_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KVGRAPH_LLM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    with (
        KnowledgeBase.open(kb_path, read_only=True, query_expansion="hyde") as kb,
        pytest.raises(LLMUnavailableError, match="query_expansion = hyde"),
    ):
        kb.search(QUESTION)


def test_the_knowledge_base_wires_expansion_from_its_settings(
    kb_path: Path, start_openai_server: Callable[..., FakeOpenAIServer]
) -> None:
    server = start_openai_server(reply=lambda messages: "annotator agreement")
    with KnowledgeBase.open(
        kb_path, read_only=True, query_expansion="multi", llm_base_url=server.base_url, llm_model="test-model"
    ) as kb:
        assert kb.search(QUESTION, k=1)[0].node.metadata["file_name"] == "annotators.md"
        assert len(_chat_prompts(server)) == 1


def _hit(text: str, score: float, nid: str) -> NodeWithScore:
    return NodeWithScore(Node(id=nid, text=text), score)


def test_sentence_reranker_prefers_the_chunk_with_the_answering_sentence(embedder: OnnxEmbedder) -> None:
    vague = _hit(
        "Models are trained on data. Training data matters for models. Data quality is important for training.",
        0.9,
        "vague",
    )
    answer = _hit(
        "The appendix lists hyper-parameters. The tokenizer vocabulary has 32,000 tokens. Tables follow below.",
        0.5,
        "answer",
    )
    reranker = SentenceReranker(embedder, weight=0.3)
    ranked = reranker.rerank("How many tokens are in the tokenizer vocabulary?", [vague, answer], 2)
    assert [h.node.id for h in ranked] == ["answer", "vague"]
    assert SentenceReranker(embedder, weight=1.0).rerank("x y z", [vague, answer], 2)[0].node.id == "vague"
    assert chunk_sentences("Too short. This sentence is long enough to count.") == [
        "This sentence is long enough to count."
    ]


def test_rerank_sentences_setting(kb_path: Path) -> None:
    with KnowledgeBase.open(kb_path, read_only=True, rerank="sentences") as kb:
        retriever: Any = kb.retriever()
        assert isinstance(retriever.reranker, SentenceReranker)
        assert kb.search("vocabulary size of the tokenizer", k=1)[0].node.metadata["file_name"] == "tokenizer.md"
