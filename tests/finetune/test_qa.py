"""Answers written through the RAG pipeline (cached, resumable, malformed replies counted), answers loaded
from files, and hard negatives mined from a real knowledge base."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvgraph.errors import InvalidInputError, LLMUnavailableError
from kvgraph.finetune.negatives import mine_hard_negatives
from kvgraph.finetune.pairs import TrainingPair
from kvgraph.finetune.qa import AnswerStats, answer_questions, context, load_responses
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document
from kvgraph.testing.openai_server import FakeOpenAIServer

FACTS = [
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair and is about 330 metres tall.",
    "Worker honeybees perform a waggle dance that tells nest mates the direction and distance of flowers.",
    "A healthy compost pile mixes three parts carbon rich browns with one part nitrogen rich greens.",
    "Change the default administrator password of a home router before connecting it to the internet.",
    "The Danube flows through ten countries before it empties into the Black Sea in Romania.",
]


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    kb = KnowledgeBase.open(tmp_path / "kb")
    kb.add_documents([Document(f"doc{i}", text) for i, text in enumerate(FACTS)])
    return kb


def test_answers_come_from_the_ask_pipeline_and_are_cached(
    kb: KnowledgeBase,
    tmp_path: Path,
    start_openai_server: Callable[..., FakeOpenAIServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        question = messages[-1]["content"].rsplit("Question: ", 1)[-1]
        return "" if "Danube" in question else f"From the context [1]: {question}"

    server = start_openai_server(reply=reply)
    monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
    questions = [
        TrainingPair("When was the Eiffel Tower completed?", source="llm", doc_id="doc0"),
        TrainingPair("Why do bees dance?", source="llm", doc_id="doc1"),
        TrainingPair("Where does the Danube end?", source="llm", doc_id="doc4"),
    ]
    cache = tmp_path / "answers.jsonl"
    seen: list[AnswerStats] = []
    pairs, stats = answer_questions(kb, questions, cache, k=2, concurrency=2, progress=seen.append)
    assert [p.query for p in pairs] == [questions[0].query, questions[1].query]  # the empty reply is dropped
    assert pairs[0].answer == "From the context [1]: When was the Eiffel Tower completed?"
    assert (stats.answered, stats.empty, stats.cached, stats.requests) == (2, 1, 0, 3)
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0 and seen[-1].done == 3
    # the prompt is the one `ask` sends, over the chunks `ask` retrieves
    sent = next(
        r.body["messages"]
        for r in server.requests_to("/v1/chat/completions")
        if r.body["messages"][-1]["content"].endswith(questions[0].query)
    )
    hits = context(kb, questions[0].query, 2)
    assert hits[0].node.text in sent[1]["content"]
    assert kb.ask(questions[0].query, k=2).text == pairs[0].answer
    # a re-run asks only what has no answer yet: the empty one
    before = len(server.requests_to("/v1/chat/completions"))
    again, stats = answer_questions(kb, questions, cache, k=2)
    assert [p.answer for p in again] == [p.answer for p in pairs]
    assert (stats.cached, stats.empty) == (2, 1)
    assert len(server.requests_to("/v1/chat/completions")) == before + 1
    assert len(cache.read_text().splitlines()) == 2
    kb.close()


def test_answers_need_an_llm(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KVGRAPH_LLM_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LLMUnavailableError, match="KVGRAPH_LLM_BASE_URL"):
        answer_questions(kb, [TrainingPair("q?")])
    kb.close()


def test_load_responses_reads_llamaindex_json_and_jsonl(tmp_path: Path) -> None:
    qr = tmp_path / "qr.json"
    qr.write_text(json.dumps({"queries": {"a": "What is X?", "b": " "}, "responses": {"a": "X is Y.", "b": "z"}}))
    assert load_responses(qr) == [TrainingPair("What is X?", answer="X is Y.", source="file")]
    lines = tmp_path / "qr.jsonl"
    lines.write_text('{"query": "One?", "response": "1."}\n\n{"query": "Two?", "response": "2."}\n')
    assert [(p.query, p.answer) for p in load_responses(lines)] == [("One?", "1."), ("Two?", "2.")]
    lines.write_text('{"query": "One?", "response": 1}\n')
    with pytest.raises(InvalidInputError, match=r"qr.jsonl:1: 'response' must be a string"):
        load_responses(lines)
    qr.write_text(json.dumps({"queries": ["not", "an", "object"], "responses": {}}))
    with pytest.raises(InvalidInputError, match="needs 'queries' and 'responses' objects"):
        load_responses(qr)
    with pytest.raises(InvalidInputError, match="answers file not found"):
        load_responses(tmp_path / "missing.json")


def test_hard_negatives_come_from_the_index_and_skip_the_positive(kb: KnowledgeBase) -> None:
    ids = {n.ref_doc_id: n.id for n in kb.store.get(kb.store.ids()) if n is not None}
    pairs = [
        TrainingPair("How tall is the tower in Paris?", FACTS[0], doc_id="doc0", positive_id=ids["doc0"]),
        TrainingPair("What do bees tell each other?", FACTS[1], doc_id="doc1", positive_id=ids["doc1"]),
    ]
    mined = mine_hard_negatives(pairs, kb.retriever(mode="dense"), k=5)
    for pair in mined:
        assert pair.negative and pair.negative != pair.positive and pair.negative in FACTS
    assert mine_hard_negatives(pairs, kb.retriever(mode="dense"), k=1)[0].negative == ""  # only the positive in k=1
    kb.close()
