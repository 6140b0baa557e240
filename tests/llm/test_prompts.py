"""The answer prompt: numbered context, instructions, and a round trip through a real server."""

from __future__ import annotations

from typing import Any

from kvgraph.llm import ChatMessage, OpenAICompatibleLLM
from kvgraph.llm.prompts import ANSWER_SYSTEM, answer_messages, format_context
from kvgraph.testing.openai_server import FakeOpenAIServer


def test_format_context_numbers_sources() -> None:
    ctx = format_context([(1, "paper.pdf p. 23", "  Cats sleep 16 hours.\n"), (2, "notes.md", "Dogs bark.")])
    assert ctx == "[1] paper.pdf p. 23\nCats sleep 16 hours.\n\n[2] notes.md\nDogs bark."


def test_format_context_empty() -> None:
    assert "no passages" in format_context([])


def test_system_prompt_rules() -> None:
    text = ANSWER_SYSTEM.lower()
    assert "only" in text and "[1]" in text and "don't know" in text


def test_answer_messages() -> None:
    msgs = answer_messages("How long do cats sleep?", "[1] a.pdf\nCats sleep 16 hours.")
    assert [m.role for m in msgs] == ["system", "user"]
    assert msgs[0].content == ANSWER_SYSTEM
    user = msgs[1].content
    assert user.index("[1] a.pdf") < user.index("Question: How long do cats sleep?")
    assert "no passages" in answer_messages("q?", "  ")[1].content


def test_prompt_reaches_the_server(openai_server: FakeOpenAIServer) -> None:
    def cite(messages: list[dict[str, Any]]) -> str:
        return "Sixteen hours [1]." if "[1] a.pdf" in messages[-1]["content"] else "I don't know."

    openai_server.reply = cite
    llm = OpenAICompatibleLLM(openai_server.base_url, "test-model")
    msgs = answer_messages("How long?", format_context([(1, "a.pdf", "Cats sleep 16 hours.")]))
    assert llm.complete(msgs) == "Sixteen hours [1]."
    sent = openai_server.requests[0].body["messages"]
    assert sent == [m.to_dict() for m in msgs] and all(isinstance(m, ChatMessage) for m in msgs)
