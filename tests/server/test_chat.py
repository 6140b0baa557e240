"""Conversations: follow-up questions made standalone (offline and with an LLM), stored in the
knowledge base, over HTTP and in the terminal (``kvgraph chat``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from server_support import sse_events

from kvgraph.cli import main
from kvgraph.kb import KnowledgeBase
from kvgraph.kb.conversations import ConversationStore, Exchange, condense_question

LLAMA = """# Llama 2

Llama 2 is a family of language models from Meta, released in 7B, 13B and 70B sizes.

## Context length

Llama 2 doubles the context length of Llama 1 to 4096 tokens.

## The 70B model

The Llama 2 70B model uses grouped-query attention so that inference scales to the larger size.
"""
FALCON = """# Falcon

Falcon is a family of language models from the Technology Innovation Institute.

## The 70B model

A 70B model is large: the Falcon team chose 40B and 180B sizes instead and serves them with multi-query attention.
"""


@pytest.fixture
def models_kb(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "llama2.md").write_text(LLAMA)
    (docs / "falcon.md").write_text(FALCON)
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=40, chunk_overlap=0) as kb:
        kb.ingest([docs])
    return tmp_path / "kb"


def test_offline_follow_up_carries_the_previous_questions_entities() -> None:
    history = [Exchange("What is the context length of Llama 2?", "4096 tokens [1].")]
    follow = condense_question("and what about the 70B model?", history, None)
    assert follow.method == "entities"
    assert "Llama 2" in follow.added
    assert follow.question.startswith("and what about the 70B model?")
    assert "Llama 2" in follow.question
    first = condense_question("What is the context length of Llama 2?", [], None)
    assert first.method == "as-is" and first.question == "What is the context length of Llama 2?"
    named = condense_question("What does Llama 2 70B use?", [Exchange("Tell me about Llama 2", "...")], None)
    assert "Llama 2" not in named.added  # already named: nothing to add


def test_offline_follow_up_retrieves_what_the_conversation_is_about(serve, models_kb: Path) -> None:
    s = serve(models_kb)
    with s.client() as c:
        alone = c.post("/api/search", json={"query": "and what about the 70B model?", "k": 1}).json()["hits"][0]
        cid = c.post("/api/conversations", json={}).json()["id"]
        first = c.post(f"/api/conversations/{cid}/messages", json={"message": "How long is the context of Llama 2?"})
        assert first.status_code == 200
        second = c.post(f"/api/conversations/{cid}/messages", json={"message": "and what about the 70B model?"}).json()
    assert second["followup"]["method"] == "entities"
    assert "Llama 2" in second["followup"]["standalone"]
    assert second["citations"][0]["file_name"] == "llama2.md"
    assert "grouped-query attention" in second["answer"]
    # without the conversation the same words find the other model's 70B paragraph
    assert alone["file_name"] == "falcon.md"


def test_with_an_llm_the_follow_up_is_rewritten_from_the_history(serve, models_kb: Path, start_openai_server) -> None:
    def reply(messages: list[dict[str, str]]) -> str:
        if "standalone question" in messages[0]["content"]:
            return "What attention does the Llama 2 70B model use?"
        return "It uses grouped-query attention [1]."

    llm = start_openai_server(reply=reply)
    s = serve(models_kb, kb_overrides={"llm_base_url": llm.base_url, "llm_model": "test-model"})
    with s.client() as c:
        cid = c.post("/api/conversations", json={"title": "models"}).json()["id"]
        c.post(f"/api/conversations/{cid}/messages", json={"message": "Tell me about Llama 2."})
        body = {"message": "and what about the 70B model?", "stream": True}
        with c.stream("POST", f"/api/conversations/{cid}/messages", json=body) as r:
            events = sse_events(r)
        stored = c.get(f"/api/conversations/{cid}").json()
    names = [n for n, _ in events]
    assert names[0] == "question" and names[-1] == "answer" and "delta" in names
    assert events[0][1] == {
        "message": "and what about the 70B model?",
        "standalone": "What attention does the Llama 2 70B model use?",
        "method": "llm",
        "added": [],
    }
    condense = [
        r.body for r in llm.requests_to("/v1/chat/completions") if "standalone" in r.body["messages"][0]["content"]
    ]
    assert len(condense) == 1  # the first turn needs no rewriting
    assert "User: Tell me about Llama 2." in condense[0]["messages"][1]["content"]
    assert "Last message: and what about the 70B model?" in condense[0]["messages"][1]["content"]
    answer_prompt = llm.requests_to("/v1/chat/completions")[-1].body["messages"][-1]["content"]
    assert "Question: What attention does the Llama 2 70B model use?" in answer_prompt
    assert events[-1][1]["citations"][0]["file_name"] == "llama2.md"
    assert [t["question"] for t in stored["turns"]] == ["Tell me about Llama 2.", "and what about the 70B model?"]
    assert stored["turns"][1]["standalone"] == "What attention does the Llama 2 70B model use?"
    assert stored["title"] == "models"


def test_conversations_are_listed_and_deleted_and_survive_a_restart(serve, models_kb: Path) -> None:
    s = serve(models_kb)
    with s.client() as c:
        a = c.post("/api/conversations", json={}).json()["id"]
        b = c.post("/api/conversations", json={}).json()["id"]
        c.post(f"/api/conversations/{a}/messages", json={"message": "How long is the context of Llama 2?"})
        listed = c.get("/api/conversations").json()
        assert [x["id"] for x in listed] == [a, b]  # most recently used first
        assert listed[0]["title"] == "How long is the context of Llama 2?" and listed[0]["n_turns"] == 1
        assert c.delete(f"/api/conversations/{b}").status_code == 200
        assert c.delete(f"/api/conversations/{b}").status_code == 404
        assert c.post(f"/api/conversations/{b}/messages", json={"message": "hi"}).status_code == 404
    s.stop()
    with ConversationStore.for_kb(models_kb) as store:
        (kept,) = store.list()
        assert kept.id == a and store.get(a).turns[0].citations[0]["file_name"] == "llama2.md"


def test_kvgraph_chat_in_the_terminal_keeps_the_conversation(models_kb: Path) -> None:
    runner = CliRunner()
    lines = "How long is the context of Llama 2?\nand what about the 70B model?\n/quit\nnot asked\n"
    result = runner.invoke(main, ["--kb", str(models_kb), "chat"], input=lines)
    assert result.exit_code == 0, result.output
    assert "(searching for: and what about the 70B model? (Llama 2" in result.output
    assert "grouped-query attention" in result.output
    assert "llama2.md" in result.output
    listed = runner.invoke(main, ["--kb", str(models_kb), "chat", "--list", "--json"])
    (conversation,) = json.loads(listed.output)["results"]  # rows in the CLI's JSON envelope
    assert conversation["n_turns"] == 2
    more = runner.invoke(
        main, ["--kb", str(models_kb), "chat", "--conversation", conversation["id"]], input="and the license?\n"
    )
    assert more.exit_code == 0
    with ConversationStore.for_kb(models_kb) as store:
        assert len(store.get(conversation["id"]).turns) == 3
    gone = runner.invoke(main, ["--kb", str(models_kb), "chat", "--delete", conversation["id"]])
    assert gone.exit_code == 0
    missing = runner.invoke(main, ["--kb", str(models_kb), "chat", "--delete", conversation["id"]])
    assert missing.exit_code == 1 and "no conversation" in missing.output
