"""The DevOps graph of the shared datasets, and a scripted LLM for it on a real loopback OpenAI server.

The scripted model answers like a text-to-Cypher model would: its Cypher replies are the queries
the DevOps notebook recorded (GPT-4), adapted to the saved data (lowercase status,
``:Microservice`` instead of ``:Dependency``), some wrapped in fences or followed by template
tokens as local models write them. A retry reply is given only when the retry message carries the
engine's error text named in the script, so a passing retry proves the error reached the model.
Answers are written from the rows (or passages) found in the prompt, as a model would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.llm import OpenAICompatibleLLM
from kvgraph.llm.prompts import ANSWER_SYSTEM, CYPHER_SYSTEM, GRAPH_ANSWER_SYSTEM
from kvgraph.testing.openai_server import FakeOpenAIServer
from support import datasets_root

SHARED = datasets_root()
DEVOPS = SHARED / "devops_graph"


def devops_dir() -> Path:
    if not (DEVOPS / "microservices.cypher").is_file():
        pytest.skip(f"shared dataset devops_graph not found at {DEVOPS}")
    return DEVOPS


def questions() -> dict[str, dict[str, Any]]:
    data = json.loads((devops_dir() / "questions.json").read_text(encoding="utf-8"))
    return {q["id"]: q for q in data["questions"]}


def import_devops(path: Path) -> LadybugGraphStore:
    """A writable Ladybug store at ``path`` holding the DevOps graph."""
    store = LadybugGraphStore.open(path)
    store.import_cypher((devops_dir() / "microservices.cypher").read_text(encoding="utf-8"))
    return store


@dataclass
class Script:
    """Replies for one question: ``replies[i]`` on attempt i; a retry reply only when ``needs[i-1]`` is in the error."""

    replies: list[str]
    needs: list[str] = field(default_factory=list)


# The notebook's generated Cypher (questions.json), adapted to the saved data.
NOTEBOOK_SCRIPTS: dict[str, Script] = {
    "devops-02": Script(
        ["```cypher\nMATCH (t:Task {status:'open'}) RETURN count(*)\n```\nThis counts the open tasks."]
    ),
    "devops-03": Script(["cypher\nMATCH (t:Task {status: 'open'}) RETURN COUNT(t)"]),
    "devops-04": Script(
        [
            "MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team)\nWHERE t.status = 'open'\n"
            "RETURN team.name, COUNT(t) AS OpenTasks\nORDER BY OpenTasks DESC\nLIMIT 1<|im_end|>"
        ]
    ),
    "devops-05": Script(
        ["MATCH (m:Microservice)-[:DEPENDS_ON]->(d:Microservice) WHERE d.name = 'Database' RETURN m.name"]
    ),
    # The notebook's open-ended *2.. is refused by the read-only guard; its message asks for a bound.
    "devops-06": Script(
        [
            "MATCH (m:Microservice)-[:DEPENDS_ON*2..]->(d:Microservice {name: 'Database'}) RETURN m.name",
            "MATCH (m:Microservice)-[:DEPENDS_ON*2..5]->(d:Microservice {name: 'Database'}) RETURN m.name",
        ],
        needs=["upper bound"],
    ),
}


def _rows_in_prompt(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.split("\nRows (", 1)[1].splitlines()[1:]:
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


class ScriptedLLM:
    """Programs a FakeOpenAIServer: Cypher by script, answers from the prompt, tool calls by ``routes``."""

    def __init__(self, scripts: dict[str, Script], routes: dict[str, str] | None = None) -> None:
        self.scripts = scripts  # question text -> script
        self.routes = routes or {}  # question text -> tool name to call
        self.cypher_requests: list[list[dict[str, Any]]] = []
        self.answer_requests: list[list[dict[str, Any]]] = []

    def reply(self, messages: list[dict[str, Any]]) -> str:
        system = str(messages[0].get("content", ""))
        last = str(messages[-1]["content"])
        if system.startswith(CYPHER_SYSTEM):
            self.cypher_requests.append(messages)
            question = next(
                str(m["content"]).removeprefix("Question: ")
                for m in reversed(messages)
                if m["role"] == "user" and str(m["content"]).startswith("Question: ")
            )
            script = self.scripts[question]
            attempt = sum(1 for m in messages if m["role"] == "user" and str(m["content"]).startswith("That query"))
            if attempt and attempt <= len(script.needs) and script.needs[attempt - 1] not in last:
                return script.replies[attempt - 1]  # the error did not reach us: repeat the mistake
            return script.replies[min(attempt, len(script.replies) - 1)]
        if system == GRAPH_ANSWER_SYSTEM:
            self.answer_requests.append(messages)
            rows = _rows_in_prompt(last)
            values = [str(v) for row in rows for v in row.values()]
            return f"From {len(rows)} rows: {', '.join(values)}."
        if system == ANSWER_SYSTEM:
            self.answer_requests.append(messages)
            m = re.search(r"\[1\] [^\n]*\n(.+?)(?:\n\n\[2\]|\n\nQuestion:)", last, re.S)
            return f"{m.group(1).strip() if m else 'I do not know.'} [1]"
        return "unexpected prompt"

    def tool_reply(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        question = str(body["messages"][-1]["content"])
        tool = self.routes.get(question)
        return (tool, {"question": question}) if tool else None


@contextmanager
def serving(scripted: ScriptedLLM) -> Iterator[tuple[OpenAICompatibleLLM, FakeOpenAIServer]]:
    """A client of a loopback OpenAI server programmed by ``scripted``."""
    server = FakeOpenAIServer(reply=scripted.reply, tool_reply=scripted.tool_reply).start()
    try:
        with OpenAICompatibleLLM(server.base_url, "test-model") as llm:
            yield llm, server
    finally:
        server.stop()
