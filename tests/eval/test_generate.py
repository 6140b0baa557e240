"""Question generation from nodes against a real loopback OpenAI server with scripted replies."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvgraph.eval.generate import (
    GeneratedQuestion,
    GeneratedQuestions,
    generate_questions,
    parse_questions,
    save_json,
    to_llamaindex_qa,
)
from kvgraph.llm import OpenAICompatibleLLM
from kvgraph.schema import Node
from kvgraph.testing.openai_server import FakeOpenAIServer

Messages = list[dict[str, Any]]


def topic(messages: Messages) -> str:
    """The topic word of the node text in a generation prompt ("Topic: alpha. ...")."""
    match = re.search(r"Topic: (\w+)", messages[1]["content"])
    assert match, messages
    return match.group(1)


def messy_reply(messages: Messages) -> str:
    """A chatty numbered list with an answer line, a duplicate and a closing remark."""
    t = topic(messages)
    return (
        f"Here are the questions:\n\n"
        f"1. What is {t} used for?\n"
        f"   Answer: many things\n"
        f"2) **How does {t} work in practice?**\n"
        f"3. What is {t} used for?\n"
        f"Q4: Why was {t} invented? (see the context)\n\n"
        f"I hope these help!"
    )


def make_nodes(*topics: str) -> list[Node]:
    return [Node(id=f"n-{t}", text=f"Topic: {t}. Some facts about {t}.") for t in topics]


def chat_requests(server: FakeOpenAIServer) -> list[Messages]:
    return [r.body["messages"] for r in server.requests_to("/v1/chat/completions")]


def scripted(*replies: str) -> Callable[[Messages], str]:
    queue = list(replies)
    lock = threading.Lock()

    def reply(messages: Messages) -> str:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return reply


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "Here are the questions:\n\n1. What is X made of?\n\n2) Where is X found?",
            ["What is X made of?", "Where is X found?"],
        ),
        ("- What is X made of?\n* Where is X found?\n• When was X found?", ["What is X made of?", "Where is X found?"]),
        ("Q1: What is X made of? A: iron\nQ2: Where is X found?", ["What is X made of?", "Where is X found?"]),
        ('Question 1 - "What is X made of?"\n(2) where is X found?', ["What is X made of?", "where is X found?"]),
        ("**1.** *What is X made of?*\n**2.** **Where is X found?**", ["What is X made of?", "Where is X found?"]),
        ("1. What is X made of? 2. Where is X found? 3. Why?", ["What is X made of?", "Where is X found?"]),
        (
            'Sure!\n```json\n["What is X made of?", "Where is X found?"]\n```',
            ["What is X made of?", "Where is X found?"],
        ),
        ('{"questions": ["What is X made of?"]}', ["What is X made of?"]),
        ("What is X made of?\nwhat is x made of\nWHAT IS X MADE OF?!", ["What is X made of?"]),
        ("### Questions\nDescribe how X is made\nX is a metal.\nList of questions", ["Describe how X is made"]),
        ("Sure, here you go:\nWhat is X made of?\nLet me know if you want more.", ["What is X made of?"]),
        ("I cannot write questions about this.", []),
        ("", []),
    ],
)
def test_parse_questions_handles_messy_output(reply: str, expected: list[str]) -> None:
    assert parse_questions(reply, 2) == expected


def test_parse_questions_truncates_to_n() -> None:
    reply = "\n".join(f"{i}. What is fact number {i}?" for i in range(1, 8))
    assert parse_questions(reply, 3) == [f"What is fact number {i}?" for i in (1, 2, 3)]
    assert len(parse_questions(reply)) == 7


# -- generation -------------------------------------------------------------------------------


def test_generate_parses_messy_replies_per_node(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = messy_reply
    nodes = make_nodes("alpha", "beta")
    questions = generate_questions(llm, nodes, per_node=3, concurrency=2)
    assert questions == [
        GeneratedQuestion("What is alpha used for?", "n-alpha", "test-model"),
        GeneratedQuestion("How does alpha work in practice?", "n-alpha", "test-model"),
        GeneratedQuestion("Why was alpha invented?", "n-alpha", "test-model"),
        GeneratedQuestion("What is beta used for?", "n-beta", "test-model"),
        GeneratedQuestion("How does beta work in practice?", "n-beta", "test-model"),
        GeneratedQuestion("Why was beta invented?", "n-beta", "test-model"),
    ]
    requests = chat_requests(openai_server)
    assert len(requests) == 2
    user = requests[0][1]["content"]
    assert "exactly 3" in user and "Some facts about" in user


def test_generate_keeps_fewer_and_cuts_more(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = messy_reply  # three distinct questions per node
    assert len(generate_questions(llm, make_nodes("alpha"), per_node=2)) == 2
    assert len(generate_questions(llm, make_nodes("alpha"), per_node=5)) == 3


def test_generate_preserves_node_order_under_concurrency(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM
) -> None:
    topics = [f"t{i}" for i in range(8)]

    def reply(messages: Messages) -> str:
        t = topic(messages)
        time.sleep(0.005 * (8 - int(t[1:])))  # earlier nodes answer later
        return f"What is {t} about?"

    openai_server.reply = reply
    seen: list[tuple[int, int]] = []
    questions = generate_questions(
        llm, make_nodes(*topics), per_node=1, concurrency=4, progress=lambda d, t: seen.append((d, t))
    )
    assert [q.node_id for q in questions] == [f"n-{t}" for t in topics]
    assert seen[-1] == (8, 8)


def test_unusable_reply_gets_a_corrective_retry(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = scripted("Sure! I can do that.", "What is alpha used for?")
    questions = generate_questions(llm, make_nodes("alpha"), per_node=2)
    assert [q.question for q in questions] == ["What is alpha used for?"]
    requests = chat_requests(openai_server)
    assert len(requests) == 2
    assert requests[1][2] == {"role": "assistant", "content": "Sure! I can do that."}
    assert "one per line" in requests[1][3]["content"]
    assert questions.stats.requests == 2


def test_empty_nodes_are_skipped(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    questions = generate_questions(llm, [Node(id="blank", text="  \n")], per_node=2)
    assert questions == []
    assert questions.stats.nodes_skipped == 1
    assert openai_server.requests == []


def test_stats_record_token_usage(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = messy_reply
    questions = generate_questions(llm, make_nodes("alpha", "beta"), per_node=2)
    assert isinstance(questions, GeneratedQuestions)
    stats = questions.stats
    assert (stats.nodes, stats.nodes_generated, stats.nodes_cached, stats.requests) == (2, 2, 0, 2)
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0
    assert stats.total_tokens == llm.usage.total_tokens


# -- cache ------------------------------------------------------------------------------------


def test_cache_resumes_without_requests_and_sends_only_new_nodes(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, tmp_path: Path
) -> None:
    openai_server.reply = messy_reply
    cache = tmp_path / "cache" / "questions.jsonl"
    nodes = make_nodes("alpha", "beta")
    first = generate_questions(llm, nodes, per_node=2, cache_path=cache)
    assert len(chat_requests(openai_server)) == 2
    assert len(cache.read_text().splitlines()) == 2

    second = generate_questions(llm, nodes, per_node=2, cache_path=cache)
    assert second == first
    assert len(chat_requests(openai_server)) == 2  # nothing new was asked
    assert second.stats.nodes_cached == 2 and second.stats.requests == 0 and second.stats.total_tokens == 0

    more = [*nodes, *make_nodes("gamma")]
    third = generate_questions(llm, more, per_node=2, cache_path=cache)
    requests = chat_requests(openai_server)
    assert len(requests) == 3
    assert topic(requests[-1]) == "gamma"
    assert [q.node_id for q in third] == ["n-alpha", "n-alpha", "n-beta", "n-beta", "n-gamma", "n-gamma"]


def test_cache_key_covers_text_per_node_and_model(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, tmp_path: Path
) -> None:
    openai_server.reply = messy_reply
    cache = tmp_path / "q.jsonl"
    nodes = make_nodes("alpha")
    generate_questions(llm, nodes, per_node=2, cache_path=cache)
    assert len(chat_requests(openai_server)) == 1

    edited = [Node(id="n-alpha", text="Topic: alpha. Rewritten facts.")]
    generate_questions(llm, edited, per_node=2, cache_path=cache)  # changed text
    generate_questions(llm, nodes, per_node=3, cache_path=cache)  # different per_node
    with OpenAICompatibleLLM(openai_server.base_url, "embed-model", max_retries=0) as other:
        generate_questions(other, nodes, per_node=2, cache_path=cache)  # different model
    assert len(chat_requests(openai_server)) == 4

    generate_questions(llm, edited, per_node=2, cache_path=cache)
    generate_questions(llm, nodes, per_node=3, cache_path=cache)
    assert len(chat_requests(openai_server)) == 4  # all four variants are cached now


def test_cache_tolerates_a_truncated_last_line(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, tmp_path: Path
) -> None:
    openai_server.reply = messy_reply
    cache = tmp_path / "q.jsonl"
    generate_questions(llm, make_nodes("alpha"), per_node=2, cache_path=cache)
    with cache.open("a") as f:
        f.write('{"model": "test-model", "node_id": "n-be')  # a run killed mid-write
    questions = generate_questions(llm, make_nodes("alpha", "beta"), per_node=2, cache_path=cache)
    assert len(chat_requests(openai_server)) == 2  # only beta
    assert len(questions) == 4
    lines = cache.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["node_id"] == "n-beta"
    generate_questions(llm, make_nodes("alpha", "beta"), per_node=2, cache_path=cache)
    assert len(chat_requests(openai_server)) == 2


def test_failed_nodes_are_not_cached(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, tmp_path: Path) -> None:
    openai_server.reply = scripted("No questions, sorry.")
    cache = tmp_path / "q.jsonl"
    questions = generate_questions(llm, make_nodes("alpha"), per_node=2, cache_path=cache, retries=1)
    assert questions == [] and questions.stats.nodes_failed == 1
    assert len(chat_requests(openai_server)) == 2  # the first try and one corrective retry
    assert not cache.exists()
    openai_server.reply = messy_reply
    assert len(generate_questions(llm, make_nodes("alpha"), per_node=2, cache_path=cache)) == 2


def test_transport_error_propagates_and_keeps_finished_nodes(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, tmp_path: Path
) -> None:
    from kvgraph.llm import LLMError

    openai_server.reply = messy_reply
    cache = tmp_path / "q.jsonl"
    generate_questions(llm, make_nodes("alpha"), per_node=2, cache_path=cache)
    openai_server.fail_next(1, status=400)
    with pytest.raises(LLMError):
        generate_questions(llm, make_nodes("alpha", "beta"), per_node=2, cache_path=cache, concurrency=1)
    questions = generate_questions(llm, make_nodes("alpha", "beta"), per_node=2, cache_path=cache)
    assert questions.stats.nodes_cached == 1 and questions.stats.nodes_generated == 1


def test_invalid_arguments(llm: OpenAICompatibleLLM) -> None:
    with pytest.raises(ValueError, match="per_node"):
        generate_questions(llm, make_nodes("alpha"), per_node=0)
    with pytest.raises(ValueError, match="concurrency"):
        generate_questions(llm, make_nodes("alpha"), concurrency=0)


# -- export -----------------------------------------------------------------------------------


def test_llamaindex_qa_export_shape(tmp_path: Path) -> None:
    nodes = make_nodes("alpha", "beta", "gamma")
    questions = [
        GeneratedQuestion("What is alpha?", "n-alpha", "m"),
        GeneratedQuestion("Why beta?", "n-beta", "m"),
        GeneratedQuestion("How is beta built?", "n-beta", "m"),
    ]
    data = to_llamaindex_qa(questions, nodes)
    assert set(data) == {"queries", "corpus", "relevant_docs", "mode"}
    assert data["mode"] == "text"
    assert data["corpus"] == {n.id: n.text for n in nodes}  # distractor nodes too
    assert list(data["queries"].values()) == [q.question for q in questions]
    assert set(data["relevant_docs"]) == set(data["queries"])
    assert [data["relevant_docs"][qid] for qid in data["queries"]] == [["n-alpha"], ["n-beta"], ["n-beta"]]
    assert to_llamaindex_qa(questions, nodes) == data  # deterministic ids

    path = save_json(data, tmp_path / "out" / "qa.json")
    assert json.loads(path.read_text(encoding="utf-8")) == data
    assert [p.name for p in path.parent.iterdir()] == ["qa.json"]  # no temporary left behind


def test_llamaindex_qa_export_rejects_unknown_nodes() -> None:
    with pytest.raises(ValueError, match="n-missing"):
        to_llamaindex_qa([GeneratedQuestion("What?", "n-missing")], make_nodes("alpha"))
