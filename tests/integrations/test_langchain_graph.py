"""KvgraphGraphStore: LangChain's graph store protocol over a real knowledge-base graph (Ladybug).

It imports no LangChain, so these tests need none. What GraphCypherQAChain calls is checked
here: ``get_structured_schema`` / ``get_schema`` / ``refresh_schema`` and ``query`` with
bound parameters, rows as dicts, writes refused by kvgraph's read-only guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pytest

from kvgraph.errors import InvalidInputError, ReadOnlyError
from kvgraph.graphdb.base import CypherSyntaxError, WriteRejectedError
from kvgraph.integrations.langchain_graph import KvgraphGraphStore
from kvgraph.kb import KnowledgeBase

SCRIPT = """
CREATE (:Person {name: 'Ada Lovelace', born: 1815});
CREATE (:Person {name: 'Charles Babbage', born: 1791});
CREATE (:Machine {name: 'Analytical Engine', year: 1837});
CREATE (:Machine {name: 'Difference Engine', year: 1822});
MATCH (p:Person {name: 'Charles Babbage'}), (m:Machine) CREATE (p)-[:DESIGNED {role: 'inventor'}]->(m);
MATCH (p:Person {name: 'Ada Lovelace'}), (m:Machine {name: 'Analytical Engine'}) CREATE (p)-[:PROGRAMMED]->(m);
"""


@runtime_checkable
class LangChainGraphStore(Protocol):
    """The members of langchain-neo4j's ``GraphStore`` protocol (what its GraphCypherQAChain type-checks)."""

    @property
    def get_schema(self) -> str: ...

    @property
    def get_structured_schema(self) -> dict[str, Any]: ...

    def query(self, query: str, params: dict[str, Any] = ...) -> list[dict[str, Any]]: ...

    def refresh_schema(self) -> None: ...

    def add_graph_documents(self, graph_documents: list[Any], include_source: bool = False) -> None: ...


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.graph.import_cypher(SCRIPT)
        yield kb


def test_structured_schema_and_prompt_text(kb: KnowledgeBase) -> None:
    graph = KvgraphGraphStore(kb)
    assert isinstance(graph, LangChainGraphStore)
    schema = graph.get_structured_schema
    props = {label: {p["property"]: p["type"] for p in ps} for label, ps in schema["node_props"].items()}
    assert props["Person"]["name"] == "STRING" and props["Person"]["born"] == "INT64"
    assert props["Machine"]["year"] == "INT64"
    assert schema["rel_props"]["DESIGNED"] == [{"property": "role", "type": "STRING"}]
    assert sorted((r["start"], r["type"], r["end"]) for r in schema["relationships"]) == [
        ("Person", "DESIGNED", "Machine"),
        ("Person", "PROGRAMMED", "Machine"),
    ]
    assert graph.structured_schema == schema
    text = graph.get_schema.splitlines()
    assert text[0] == "Node properties:"
    assert any(line.startswith("Person {") and "born: INT64" in line for line in text)
    assert "DESIGNED {role: STRING}" in text and "(:Person)-[:PROGRAMMED]->(:Machine)" in text
    assert not any(line.startswith("PROGRAMMED {") for line in text)  # no properties: not listed


def test_query_binds_params_and_returns_rows_as_dicts(kb: KnowledgeBase) -> None:
    graph = KvgraphGraphStore(kb)
    rows = graph.query(
        "MATCH (p:Person)-[:DESIGNED]->(m:Machine) WHERE m.year > $after RETURN p.name AS designer, m.name AS machine",
        {"after": 1830},
    )
    assert rows == [{"designer": "Charles Babbage", "machine": "Analytical Engine"}]
    assert graph.query("MATCH (m:Machine) RETURN count(m) AS n") == [{"n": 2}]
    # what a ```cypher fence leaves behind once langchain-community strips the backticks
    assert graph.query("cypher\nMATCH (m:Machine) RETURN count(m) AS n") == [{"n": 2}]


def test_writes_and_bad_cypher_are_refused(kb: KnowledgeBase) -> None:
    graph = KvgraphGraphStore(kb)
    with pytest.raises(WriteRejectedError):
        graph.query("MATCH (p:Person) DETACH DELETE p")
    with pytest.raises(WriteRejectedError):
        graph.query("cypher CREATE (:Person {name: 'Mallory'})")
    with pytest.raises(CypherSyntaxError):
        graph.query("MATCH (p:Robot) RETURN p")
    with pytest.raises(ReadOnlyError, match="import"):
        graph.add_graph_documents([])
    assert graph.query("MATCH (p:Person) RETURN count(p) AS n") == [{"n": 2}]


def test_max_rows_bounds_every_query(kb: KnowledgeBase) -> None:
    assert len(KvgraphGraphStore(kb, max_rows=1).query("MATCH (n) RETURN n.name AS name")) == 1


def test_refresh_schema_sees_new_labels(kb: KnowledgeBase) -> None:
    graph = KvgraphGraphStore(kb.graph)
    assert "Paper" not in graph.get_structured_schema["node_props"]
    kb.graph.import_cypher("CREATE (:Paper {title: 'Sketch of the Analytical Engine', year: 1843});")
    assert "Paper" not in graph.get_structured_schema["node_props"]  # read once...
    graph.refresh_schema()
    assert "Paper" in graph.get_structured_schema["node_props"]  # ...and again when asked


def test_read_only_knowledge_base(kb: KnowledgeBase) -> None:
    path = kb.path
    kb.close()
    with KnowledgeBase.open(path, read_only=True) as ro:
        assert KvgraphGraphStore(ro).query("MATCH (m:Machine) RETURN count(m) AS n") == [{"n": 2}]
    with pytest.raises(InvalidInputError, match="KnowledgeBase"):
        KvgraphGraphStore(path)  # type: ignore[arg-type]


# ---------------------------------------------------------------- in LangChain's GraphCypherQAChain
# Opt-in: kvgraph does not depend on either package (docs/langchain.md); these run where one is
# installed. The LLM is LangChain's scripted chat model: the chain, not the model, is under test.

DESIGNER_CYPHER = (
    "```cypher\nMATCH (p:Person)-[:DESIGNED]->(m:Machine {name: 'Analytical Engine'}) RETURN p.name AS designer\n```"
)


def _run_chain(chain_class: Any, graph: Any) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    llm = FakeListChatModel(responses=[DESIGNER_CYPHER, "Charles Babbage designed it."])
    chain = chain_class.from_llm(llm, graph=graph, allow_dangerous_requests=True, return_intermediate_steps=True)
    out = chain.invoke({"query": "Who designed the Analytical Engine?"})
    assert out["result"] == "Charles Babbage designed it."
    assert out["intermediate_steps"][1]["context"] == [{"designer": "Charles Babbage"}]
    writer = FakeListChatModel(responses=["CREATE (:Person {name: 'Mallory'})", "done"])
    with pytest.raises(WriteRejectedError):
        chain_class.from_llm(writer, graph=graph, allow_dangerous_requests=True).invoke({"query": "add Mallory"})


def test_graph_cypher_qa_chain_of_langchain_neo4j(kb: KnowledgeBase) -> None:
    neo4j_chains = pytest.importorskip("langchain_neo4j")
    from langchain_neo4j.graphs.graph_store import GraphStore

    graph = KvgraphGraphStore(kb)
    assert isinstance(graph, GraphStore)
    _run_chain(neo4j_chains.GraphCypherQAChain, graph)


def test_graph_cypher_qa_chain_of_langchain_community(kb: KnowledgeBase) -> None:
    cypher = pytest.importorskip("langchain_community.chains.graph_qa.cypher")
    from langchain_community.graphs.graph_store import GraphStore

    class CommunityKvgraphGraphStore(KvgraphGraphStore, GraphStore):  # type: ignore[misc]
        pass

    _run_chain(cypher.GraphCypherQAChain, CommunityKvgraphGraphStore(kb))
