"""`graph ask`: the router, the vector tool and text-to-Cypher together, over the real DevOps graph.

The embedder is the real all-MiniLM-L6-v2 (onnx-int8); the LLM is a scripted model on a real
loopback OpenAI server (tests/devops_support.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from devops_support import NOTEBOOK_SCRIPTS, ScriptedLLM, devops_dir, import_devops, questions, serving
from kvgraph.embed.base import Embedder
from kvgraph.embed.factory import embedder_from_spec
from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.graphqa.ask import GraphQA
from kvgraph.graphqa.node_index import NodeIndex
from kvgraph.graphqa.router import GRAPH_TOOL, VECTOR_TOOL
from kvgraph.llm.base import LLMUnavailableError
from kvgraph.testing.openai_server import FakeOpenAIServer

EXPECTED_TOOL = {"devops-01": VECTOR_TOOL} | {f"devops-0{i}": GRAPH_TOOL for i in range(2, 7)}


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return embedder_from_spec("onnx-int8")


@pytest.fixture(scope="module")
def devops(tmp_path_factory: pytest.TempPathFactory, minilm: Embedder) -> Iterator[tuple[LadybugGraphStore, NodeIndex]]:
    root = tmp_path_factory.mktemp("devops-ask")
    store = import_devops(root / "graph")
    index = NodeIndex.open(store, root / "graph-index", minilm)
    index.index_nodes("Task", ["name", "description", "status"])
    try:
        yield store, index
    finally:
        index.close()
        store.close()


def gold_task_key(store: LadybugGraphStore) -> str:
    q = questions()["devops-01"]
    key = store.node_key_expr("t")
    return str(store.query(f"MATCH (t:Task) WHERE t.name = $n RETURN {key}", {"n": q["gold_task"]}).scalar())


def check_graph_rows(qid: str, rows: list[list[Any]]) -> None:
    gold = questions()[qid]["gold_answer"]
    if qid in ("devops-02", "devops-03"):
        assert rows == [[gold]]
    elif qid == "devops-04":
        assert rows == [[gold["team"], gold["open_tasks"]]]
    else:
        assert sorted({r[0] for r in rows}) == gold


def test_graph_ask_answers_the_six_questions_with_an_llm(
    devops: tuple[LadybugGraphStore, NodeIndex], minilm: Embedder
) -> None:
    store, index = devops
    qs = questions()
    scripted = ScriptedLLM(
        {qs[qid]["question"]: script for qid, script in NOTEBOOK_SCRIPTS.items()},
        routes={qs[qid]["question"]: tool for qid, tool in EXPECTED_TOOL.items()},
    )
    with serving(scripted) as (llm, server):
        qa = GraphQA(store, minilm, index, llm)
        results = {qid: qa.ask(q["question"]) for qid, q in qs.items()}
        tool_requests = [r.body for r in server.requests_to("/v1/chat/completions") if "tools" in r.body]
    assert {qid: r.tool for qid, r in results.items()} == EXPECTED_TOOL
    assert all(r.decision.method == "llm" for r in results.values())
    assert len(tool_requests) == 6 and "Task nodes (name, description, status)" in json.dumps(tool_requests[0])

    vector = results["devops-01"]
    assert vector.citations[0].node_id == gold_task_key(store)
    assert "RecommendationService" in vector.answer_text and vector.answer_text.endswith("[1]")
    assert vector.graph is None and vector.hits[0].name == qs["devops-01"]["gold_task"]
    for qid in ("devops-02", "devops-03", "devops-04", "devops-05", "devops-06"):
        r = results[qid]
        assert r.graph is not None and r.cypher
        check_graph_rows(qid, r.graph.rows)
        gold = qs[qid]["gold_answer"]
        for value in gold if isinstance(gold, list) else gold.values() if isinstance(gold, dict) else [gold]:
            assert str(value) in r.answer_text
    assert len(results["devops-06"].graph.attempts) == 2  # type: ignore[union-attr]


def test_offline_the_vector_question_is_answered_from_the_nodes(
    devops: tuple[LadybugGraphStore, NodeIndex], minilm: Embedder
) -> None:
    store, index = devops
    qs = questions()
    qa = GraphQA(store, minilm, index)
    assert {qid: qa.route(q["question"]).tool for qid, q in qs.items()} == EXPECTED_TOOL

    result = qa.ask(qs["devops-01"]["question"])
    assert result.tool == VECTOR_TOOL and result.decision.method == "embedding"
    assert result.citations[0].node_id == gold_task_key(store)
    assert result.citations[0].source == "Task RecommendationFeature"
    assert "personalized and accurate product recommendations" in result.answer_text
    assert "description:" not in result.answer_text  # property names stay out of the quotes


def test_offline_a_graph_question_says_what_to_do(
    devops: tuple[LadybugGraphStore, NodeIndex], minilm: Embedder
) -> None:
    store, index = devops
    qa = GraphQA(store, minilm, index)
    question = questions()["devops-02"]["question"]
    with pytest.raises(LLMUnavailableError) as err:
        qa.ask(question)
    message = str(err.value)
    assert "needs a graph query" in message and "cues: 'How many'" in message  # the routing, with its cue
    assert "KVGRAPH_LLM_BASE_URL" in message and "kvgraph graph query" in message and "--tool vector" in message
    # asked for the vector tool, the same question gets the (unreliable, but available) text answer
    forced = qa.ask(question, tool="vector")
    assert forced.tool == VECTOR_TOOL and forced.decision.method == "forced" and forced.hits


def test_without_a_node_index_only_the_graph_tool_is_offered(
    devops: tuple[LadybugGraphStore, NodeIndex], minilm: Embedder
) -> None:
    store, _ = devops
    qa = GraphQA(store, minilm)
    assert [t.name for t in qa.tools()] == [GRAPH_TOOL]
    assert qa.route("How will recommendation service be updated?").method == "forced"
    with pytest.raises(InvalidInputError, match="index-nodes"):
        qa.ask("How will recommendation service be updated?", tool="vector")
    with pytest.raises(InvalidInputError, match="tool must be one of"):
        qa.ask("x", tool="sql")
    with pytest.raises(InvalidInputError, match="question"):
        qa.ask("  ")


# ---------------------------------------------------------------------- the CLI


def make_cli() -> click.Group:
    from kvgraph.cli import main

    return main


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KVGRAPH_LLM_BASE_URL", "OPENAI_BASE_URL", "KVGRAPH_LLM_MODEL", "KVGRAPH_NEO4J_URI", "KVGRAPH_KB"):
        monkeypatch.delenv(name, raising=False)


def test_cli_index_nodes_and_ask(tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    qs = questions()
    kb = str(tmp_path / "kb")
    cli = make_cli()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--kb", kb, "graph", *args], catch_exceptions=False)

    assert run("import", str(devops_dir() / "microservices.cypher")).exit_code == 0
    first = run("index-nodes", "--label", "Task", "--text", "name,description,status")
    assert first.exit_code == 0, first.output
    assert "Task: 10 added, 0 updated, 0 removed, 0 unchanged (10 embedded" in first.output
    again = run("index-nodes", "--label", "Task", "--text", "name, description, status", "--json")
    report = json.loads(again.output)
    assert (report["unchanged"], report["embedded"]) == (10, 0)
    assert (Path(kb) / "graph-index" / "records.sqlite").is_file()

    bad = run("index-nodes", "--label", "Nope", "--text", "name")
    assert bad.exit_code == 1 and "Nope" in bad.output

    vector = run("ask", qs["devops-01"]["question"], "--json")
    assert vector.exit_code == 0, vector.output
    out = json.loads(vector.output)
    assert out["tool"] == VECTOR_TOOL and out["route"]["method"] == "embedding"
    assert set(out["route"]["scores"]) == {VECTOR_TOOL, GRAPH_TOOL}
    assert out["citations"][0]["source"] == "Task RecommendationFeature"

    human = run("ask", qs["devops-01"]["question"])
    assert "[1] Task RecommendationFeature (Task:" in human.output and "route: vector by embedding" in human.output

    graph_offline = run("ask", qs["devops-02"]["question"])
    assert graph_offline.exit_code == 1
    assert "needs an LLM" in graph_offline.output and "kvgraph graph query" in graph_offline.output

    scripted = ScriptedLLM(
        {qs["devops-04"]["question"]: NOTEBOOK_SCRIPTS["devops-04"]},
        routes={qs["devops-04"]["question"]: GRAPH_TOOL},
    )
    server = FakeOpenAIServer(reply=scripted.reply, tool_reply=scripted.tool_reply).start()
    try:
        monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
        online = run("ask", qs["devops-04"]["question"])
        as_json = json.loads(run("ask", qs["devops-04"]["question"], "--tool", "graph", "--json").output)
    finally:
        server.stop()
    assert online.exit_code == 0, online.output
    assert "From 1 rows: TeamA, 3." in online.output
    assert "Cypher (run read-only):\nMATCH (t:Task)-[:ASSIGNED_TO]->(team:Team)" in online.output
    assert "TeamA | 3" in online.output and "route: graph by llm" in online.output
    assert as_json["graph"]["rows"] == [["TeamA", 3]] and as_json["route"]["method"] == "forced"
