"""LLMAnswerer against the real loopback OpenAI-protocol server, with scripted replies."""

from __future__ import annotations

from typing import Any

import pytest

from kvgraph.answer.extractive import ExtractiveAnswerer
from kvgraph.answer.synthesize import Answerer, LLMAnswerer, StreamingAnswer, cited_numbers
from kvgraph.errors import InvalidInputError
from kvgraph.llm import LLMError, OpenAICompatibleLLM
from kvgraph.llm.prompts import NO_CONTEXT
from kvgraph.schema import Node, NodeWithScore
from kvgraph.testing.openai_server import FakeOpenAIServer

QUESTION = "What are the key concepts of safety fine-tuning?"
REPLY = (
    "Safety fine-tuning combines supervised safety fine-tuning and safety RLHF [1], "
    "and then safety context distillation [3]. The red-teaming results are not covered [9]."
)

TEXTS = [
    "Supervised Safety Fine-Tuning: adversarial prompts and safe demonstrations are added to SFT.",
    "The pretraining corpus has 2 trillion tokens.",
    "Safety Context Distillation: a safety preprompt is distilled into the model.",
    "Ghost Attention keeps a system message in force across the turns of a dialogue.",
]


def hits() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            Node(
                id=f"n{i}",
                text=text,
                metadata={"file_name": "llama2.pdf", "file_path": "/docs/llama2.pdf", "page": 23 + i},
            ),
            0.9 - 0.1 * i,
        )
        for i, text in enumerate(TEXTS)
    ]


def make_llm(server: FakeOpenAIServer, reply: str = REPLY) -> OpenAICompatibleLLM:
    server.reply = lambda messages: reply
    return OpenAICompatibleLLM(server.base_url, "test-model", timeout=5.0, backoff_base=0.01)


def user_prompt(server: FakeOpenAIServer) -> str:
    [request] = server.requests_to("/v1/chat/completions")
    messages: list[dict[str, Any]] = request.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    return str(messages[1]["content"])


def test_answer_cites_the_numbers_the_model_used(openai_server: FakeOpenAIServer) -> None:
    nodes = hits()
    answer = LLMAnswerer(make_llm(openai_server)).answer(QUESTION, nodes)
    assert answer.mode == "llm"
    assert answer.text == REPLY
    assert answer.source_nodes == nodes
    # [1] and [3] are cited; [2] and [4] were not used; [9] names no source and is dropped.
    assert [(c.number, c.node_id) for c in answer.citations] == [(1, "n0"), (3, "n2")]
    first = answer.citations[0]
    assert (first.source, first.file_path, first.page, first.score) == ("llama2.pdf p. 23", "/docs/llama2.pdf", 23, 0.9)


def test_prompt_has_numbered_context_and_question(openai_server: FakeOpenAIServer) -> None:
    LLMAnswerer(make_llm(openai_server)).answer(QUESTION, hits())
    prompt = user_prompt(openai_server)
    for n, text in enumerate(TEXTS, start=1):
        assert f"[{n}] llama2.pdf p. {22 + n}\n{text}" in prompt
    assert prompt.index("[1] ") < prompt.index("[2] ") < prompt.index("[3] ") < prompt.index("[4] ")
    assert prompt.rstrip().endswith(f"Question: {QUESTION}")
    body = openai_server.requests[0].body
    assert body["temperature"] == 0.0 and body["stream"] is False


def test_stream_yields_deltas_then_the_answer(openai_server: FakeOpenAIServer) -> None:
    nodes = hits()
    streaming = LLMAnswerer(make_llm(openai_server)).stream(QUESTION, nodes)
    assert isinstance(streaming, StreamingAnswer)
    deltas = list(streaming)
    assert len(deltas) > 5  # word-sized deltas from the server, not one block
    answer = streaming.answer()
    assert answer.text == "".join(deltas) == REPLY
    assert [(c.number, c.node_id) for c in answer.citations] == [(1, "n0"), (3, "n2")]
    assert answer.mode == "llm" and answer.source_nodes == nodes
    assert openai_server.requests[0].body["stream"] is True
    assert "[3] llama2.pdf p. 25" in user_prompt(openai_server)


def test_answer_without_iterating_reads_the_whole_stream(openai_server: FakeOpenAIServer) -> None:
    streaming = LLMAnswerer(make_llm(openai_server)).stream(QUESTION, hits())
    first = next(iter(streaming))
    assert streaming.text == first
    assert streaming.answer().text == REPLY
    assert streaming.text == REPLY


def test_stream_errors_reach_the_reader(openai_server: FakeOpenAIServer) -> None:
    openai_server.stream_error = "model crashed"
    streaming = LLMAnswerer(make_llm(openai_server)).stream(QUESTION, hits())
    with pytest.raises(LLMError, match="model crashed"):
        streaming.answer()


def test_context_budget_keeps_the_best_nodes(openai_server: FakeOpenAIServer) -> None:
    nodes = hits()
    budget = len(TEXTS[0]) + len(TEXTS[1]) + 5  # room for two passages
    llm = make_llm(openai_server, "From the first [1] and the third [3] passage.")
    answer = LLMAnswerer(llm, max_context_chars=budget).answer(QUESTION, nodes)
    prompt = user_prompt(openai_server)
    assert TEXTS[0] in prompt and TEXTS[1] in prompt and TEXTS[2] not in prompt
    assert [c.number for c in answer.citations] == [1]  # [3] was not in the prompt


def test_first_node_is_cut_to_the_budget_rather_than_dropped(openai_server: FakeOpenAIServer) -> None:
    LLMAnswerer(make_llm(openai_server), max_context_chars=20).answer(QUESTION, hits())
    assert f"[1] llama2.pdf p. 23\n{TEXTS[0][:20]}" in user_prompt(openai_server)


def test_no_nodes_still_asks_with_an_empty_context(openai_server: FakeOpenAIServer) -> None:
    answer = LLMAnswerer(make_llm(openai_server, "I don't know from the given sources [1].")).answer(QUESTION, [])
    assert NO_CONTEXT in user_prompt(openai_server)
    assert answer.citations == [] and answer.source_nodes == []


def test_blank_question_is_an_error(openai_server: FakeOpenAIServer) -> None:
    with pytest.raises(InvalidInputError):
        LLMAnswerer(make_llm(openai_server)).stream(" ", hits())
    assert openai_server.requests == []


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("A [2] and B [1][2].", [2, 1]),
        ("Grouped [1, 3] and [2;4] and [ 5 ].", [1, 3, 2, 4, 5]),
        ("No markers, [a] or [] or [-1].", []),
    ],
)
def test_cited_numbers(text: str, numbers: list[int]) -> None:
    assert cited_numbers(text) == numbers


def test_both_answerers_are_answerers(openai_server: FakeOpenAIServer) -> None:
    class NoEmbedder:
        model_name = "none"
        dim = 1

        def embed(self, texts: Any) -> Any:
            raise AssertionError("not called")

    assert isinstance(LLMAnswerer(make_llm(openai_server)), Answerer)
    assert isinstance(ExtractiveAnswerer(NoEmbedder()), Answerer)
