"""The router between the vector tool and the graph tool: offline by embeddings, online by tool calling."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from kvgraph.embed.base import Embedder
from kvgraph.embed.factory import embedder_from_spec
from kvgraph.errors import InvalidInputError
from kvgraph.graphqa.router import (
    GRAPH_TOOL,
    VECTOR_TOOL,
    EmbeddingRouter,
    LLMRouter,
    Tool,
    graph_tool,
    vector_tool,
)
from kvgraph.llm import ChatMessage, LLMError, OpenAICompatibleLLM
from kvgraph.testing.openai_server import FakeOpenAIServer
from support import datasets_root

SHARED = datasets_root()
QUESTIONS = SHARED / "devops_graph" / "questions.json"
# The notebook answered devops-01 from task descriptions; the others need the whole graph
# (devops-02 is the count the notebook's vector search got wrong: 4 instead of 5).
EXPECTED_TOOL = {
    "devops-01": VECTOR_TOOL,
    "devops-02": GRAPH_TOOL,
    "devops-03": GRAPH_TOOL,
    "devops-04": GRAPH_TOOL,
    "devops-05": GRAPH_TOOL,
    "devops-06": GRAPH_TOOL,
}


def devops_questions() -> dict[str, str]:
    if not QUESTIONS.is_file():
        pytest.skip(f"shared dataset devops_graph not found at {QUESTIONS}")
    return {q["id"]: q["question"] for q in json.loads(QUESTIONS.read_text(encoding="utf-8"))["questions"]}


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return embedder_from_spec("onnx-int8")


def test_the_offline_router_sends_the_six_devops_questions_to_the_right_tool(minilm: Embedder) -> None:
    questions = devops_questions()
    router = EmbeddingRouter(minilm, [vector_tool(), graph_tool()])
    decisions = {qid: router.route(q) for qid, q in questions.items()}
    for qid, d in decisions.items():
        print(qid, d.tool, {k: round(v, 3) for k, v in d.scores.items()}, d.reason)
    assert {qid: d.tool for qid, d in decisions.items()} == EXPECTED_TOOL
    # scores are visible and consistent with the choice
    for d in decisions.values():
        assert set(d.scores) == {VECTOR_TOOL, GRAPH_TOOL} and d.method == "embedding"
        assert d.scores[d.tool] == max(d.scores.values())
        assert d.details[d.tool].total == pytest.approx(d.scores[d.tool])


def test_the_embeddings_alone_route_the_six_questions(minilm: Embedder) -> None:
    # The cues are a tie-breaker, not the mechanism: without them the choice is the same.
    questions = devops_questions()
    router = EmbeddingRouter(minilm, [vector_tool(), graph_tool()], cue_weight=0.0)
    assert {qid: router.route(q).tool for qid, q in questions.items()} == EXPECTED_TOOL


def test_the_offline_router_on_other_questions(minilm: Embedder) -> None:
    router = EmbeddingRouter(minilm, [vector_tool(), graph_tool()])
    assert router.route("What does the caching task involve?").tool == VECTOR_TOOL
    assert router.route("Explain why the payment service is being optimized.").tool == VECTOR_TOOL
    assert router.route("How many people are in each team?").tool == GRAPH_TOOL
    assert router.route("Which team maintains the most services?").tool == GRAPH_TOOL


def test_cues_are_reported_and_weighted() -> None:
    emb = embedder_from_spec("hashing")
    tools = [
        Tool("a", "alpha things", ["alpha"], cues=[r"\bhow many\b"]),
        Tool("b", "beta things", ["beta"], cues=[r"\bzzz\b"]),
    ]
    router = EmbeddingRouter(emb, tools, cue_weight=0.5)
    details = router.score("how many beta")
    assert details["a"].cues == ["how many"] and details["a"].lexical == 0.5
    assert details["b"].cues == [] and details["b"].lexical == 0.0
    assert router.route("How Many beta").to_dict()["details"]["a"]["cues"] == ["How Many"]
    # "beta" is closer to b; the cue of a outweighs that only when cues weigh enough
    assert EmbeddingRouter(emb, tools, cue_weight=0.0).route("how many beta").tool == "b"
    loud = EmbeddingRouter(emb, tools, cue_weight=2.0).route("how many beta")
    assert loud.tool == "a" and "how many" in loud.reason


def test_tool_definitions_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="tool name"):
        Tool("has space", "x")
    with pytest.raises(InvalidInputError, match="description"):
        Tool("t", "  ")
    with pytest.raises(InvalidInputError, match="regular expression"):
        Tool("t", "x", cues=["(unclosed"])
    emb = embedder_from_spec("hashing")
    with pytest.raises(InvalidInputError, match="unique"):
        EmbeddingRouter(emb, [Tool("t", "x"), Tool("t", "y")])
    with pytest.raises(InvalidInputError, match="at least one"):
        EmbeddingRouter(emb, [])
    with pytest.raises(InvalidInputError, match="question"):
        EmbeddingRouter(emb, [Tool("t", "x")]).route(" ")


# ---------------------------------------------------------------------- tool calling


@pytest.fixture
def server(openai_server: FakeOpenAIServer) -> FakeOpenAIServer:
    return openai_server


def calls_by_keyword(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A model that calls the graph tool for counting questions and the vector tool otherwise."""
    question = str(body["messages"][-1]["content"])
    if "no tool" in question:
        return None
    if "bogus" in question:
        return ("delete_everything", {})
    return (GRAPH_TOOL if "how many" in question.lower() else VECTOR_TOOL, {"question": question})


def test_the_llm_router_takes_the_tool_the_model_calls(server: FakeOpenAIServer) -> None:
    server.tool_reply = calls_by_keyword
    with OpenAICompatibleLLM(server.base_url, "test-model") as llm:
        router = LLMRouter(llm, [vector_tool(), graph_tool()])
        graph = router.route("How many open tickets there are?")
        vector = router.route("How will recommendation service be updated?")
    assert (graph.tool, graph.method, graph.scores) == (GRAPH_TOOL, "llm", {VECTOR_TOOL: 0.0, GRAPH_TOOL: 1.0})
    assert vector.tool == VECTOR_TOOL and "called vector(question=" in vector.reason
    body = server.requests_to("/v1/chat/completions")[0].body
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == [VECTOR_TOOL, GRAPH_TOOL]
    assert body["tools"][1]["function"]["parameters"]["required"] == ["question"]
    assert "Example questions:" in body["tools"][1]["function"]["description"]
    assert llm.usage.requests == 2


def test_no_or_unknown_tool_call_falls_back(server: FakeOpenAIServer) -> None:
    server.tool_reply = calls_by_keyword
    emb = embedder_from_spec("hashing")
    tools = [vector_tool(), graph_tool()]
    with OpenAICompatibleLLM(server.base_url, "test-model") as llm:
        router = LLMRouter(llm, tools, fallback=EmbeddingRouter(emb, tools))
        d = router.route("Which services have no tool here?")
        assert d.method == "embedding" and d.reason.startswith("the LLM called no tool;")
        d = router.route("a bogus question")
        assert d.method == "embedding" and "unknown tool 'delete_everything'" in d.reason
        with pytest.raises(LLMError, match="called no tool"):
            LLMRouter(llm, tools).route("again no tool")


def test_a_server_rejecting_tool_choice_is_asked_without_it(server: FakeOpenAIServer) -> None:
    server.tool_reply = calls_by_keyword
    server.reject_fields = ("tool_choice",)
    with OpenAICompatibleLLM(server.base_url, "test-model", max_retries=0) as llm:
        d = LLMRouter(llm, [vector_tool(), graph_tool()]).route("How many teams?")
    assert d.tool == GRAPH_TOOL
    bodies = [r.body for r in server.requests_to("/v1/chat/completions")]
    assert "tool_choice" in bodies[0] and "tool_choice" not in bodies[1] and "tools" in bodies[1]


class PlainChat:
    """An LLM that offers chat only (no tool calling), over the same real client."""

    def __init__(self, llm: OpenAICompatibleLLM) -> None:
        self.llm = llm
        self.model = llm.model

    def complete(self, messages: Sequence[ChatMessage], **kwargs: Any) -> str:
        return self.llm.complete(messages, **kwargs)

    def stream(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        return self.llm.stream(messages, **kwargs)


def test_a_model_without_tool_calling_names_the_tool(server: FakeOpenAIServer) -> None:
    server.reply = lambda messages: "graph" if "How many" in messages[-1]["content"] else "I'd use vector."
    with OpenAICompatibleLLM(server.base_url, "test-model") as llm:
        router = LLMRouter(PlainChat(llm), [vector_tool(), graph_tool()])
        assert router.route("How many open tasks?").tool == GRAPH_TOOL
        assert router.route("What is the login task about?").tool == VECTOR_TOOL
    body = server.requests_to("/v1/chat/completions")[0].body
    assert "tools" not in body and "Answer with the tool name only" in body["messages"][-1]["content"]
