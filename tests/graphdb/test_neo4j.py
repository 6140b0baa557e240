"""The Bolt backend against a real server: ArcadeDB started by the test (or the server named by
KVGRAPH_TEST_BOLT_URI): credentials stay secret, the DevOps questions are answered by
text-to-Cypher over Bolt, and a knowledge base exports its document graph to the server."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from contract.servers import bolt_uri
from devops_support import NOTEBOOK_SCRIPTS, ScriptedLLM, devops_dir, questions, serving
from kvgraph.graphdb.base import GraphError, GraphStore
from kvgraph.graphdb.open import open_bolt_store, open_graph_store, parse_bolt_uri
from kvgraph.graphqa.text2cypher import TextToCypher
from kvgraph.kb import KnowledgeBase

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"


@pytest.fixture
def bolt() -> Any:
    """A writable store on the server, emptied."""
    store = open_bolt_store(bolt_uri(), read_only=False)
    store.query("MATCH (n) DETACH DELETE n", read_only=False)
    yield store
    store.close()


def test_uri_parsing_and_secrets(bolt: Any) -> None:
    target = parse_bolt_uri("bolt://alice:s3cr%40t@db.example:7687?database=kb1", env={})
    assert (target.uri, target.user, target.password, target.database) == (
        "bolt://db.example:7687",
        "alice",
        "s3cr@t",
        "kb1",
    )
    env = {"KVGRAPH_NEO4J_USER": "bob", "KVGRAPH_NEO4J_PASSWORD": "pw", "KVGRAPH_NEO4J_DATABASE": "d"}
    assert parse_bolt_uri("neo4j://h", env=env) == type(target)("neo4j://h", "bob", "pw", "d")
    assert isinstance(bolt, GraphStore)
    real = parse_bolt_uri(bolt_uri())
    assert real.password is None or real.password not in repr(bolt)
    wrong = real.uri + f"?database={real.database}" if real.database else real.uri
    scheme = real.uri.split("://", 1)[0]
    wrong = wrong.replace(f"{scheme}://", f"{scheme}://{real.user or 'neo4j'}:not-the-password-x9@", 1)
    with pytest.raises(GraphError) as err:
        open_bolt_store(wrong)
    assert "not-the-password-x9" not in str(err.value)


def test_devops_questions_by_text_to_cypher_over_bolt(bolt: Any) -> None:
    bolt.import_cypher((devops_dir() / "microservices.cypher").read_text(encoding="utf-8"))
    qs = questions()
    scripted = ScriptedLLM({qs[qid]["question"]: script for qid, script in NOTEBOOK_SCRIPTS.items()})
    with serving(scripted) as (llm, _):
        t2c = TextToCypher(llm, bolt)
        answers = {qid: t2c.ask(qs[qid]["question"]) for qid in NOTEBOOK_SCRIPTS}
    for qid in ("devops-02", "devops-03"):
        assert answers[qid].rows == [[qs[qid]["gold_answer"]]]
    gold4 = qs["devops-04"]["gold_answer"]
    assert answers["devops-04"].rows == [[gold4["team"], gold4["open_tasks"]]]
    assert sorted(r[0] for r in answers["devops-05"].rows) == qs["devops-05"]["gold_answer"]
    assert sorted({r[0] for r in answers["devops-06"].rows}) == qs["devops-06"]["gold_answer"]
    # the open-ended traversal was refused by the guard (before the server saw it) and fixed by the retry
    attempts = answers["devops-06"].attempts
    assert len(attempts) == 2 and "upper bound" in (attempts[0].error or "")
    # the schema in the prompt came from the server's data, directions included
    assert all("(:Task)-[:ASSIGNED_TO]->(:Team)" in r[0]["content"] for r in scripted.cypher_requests)


def test_knowledge_base_exports_its_graph_to_the_bolt_server(
    bolt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the settings file never holds the password: it comes from the environment, as in production
    target = parse_bolt_uri(bolt_uri())
    if target.password:
        monkeypatch.setenv("KVGRAPH_NEO4J_PASSWORD", target.password)
    uri = bolt_uri()
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("rosetta-stone.txt", "honeybees.html"):
        shutil.copy(SAMPLES / name, docs / name)
    with KnowledgeBase.open(tmp_path / "kb", graph_uri=uri) as kb:
        assert target.password is None or target.password not in (tmp_path / "kb" / "kvgraph.toml").read_text()
        kb.ingest([docs])
        report = kb.graph.build(export=True)
        assert report["exported"]["Chunk"] == report["chunks"] == kb.store.count()
        assert not (tmp_path / "kb" / "graph").exists()  # nothing went to the embedded graph
        n = kb.graph.query(
            "MATCH (c:Chunk)-[:MENTIONS]->(e:Entity) WHERE e.name CONTAINS $name RETURN count(DISTINCT c)",
            {"name": "Champollion"},
        ).scalar()
        assert n >= 1
        hits = kb.search("Who deciphered the hieroglyphs?", k=3, mode="graph")
        assert hits and hits[0].node.metadata["file_name"] == "rosetta-stone.txt"
    # the server holds the export: a fresh handle, not the knowledge base, counts the chunks
    with open_graph_store(tmp_path / "kb", read_only=True, uri=bolt_uri()) as g:
        assert g.query("MATCH (c:Chunk) RETURN count(c)").scalar() == report["chunks"]
        docs_n = g.query("MATCH (d:Document) RETURN count(d)").scalar()
        assert docs_n == report["exported"]["Document"] >= 2
