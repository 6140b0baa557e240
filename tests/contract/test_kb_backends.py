"""The same KnowledgeBase, CLI and questions on Postgres + pgvector and a Bolt server, chosen by URI only;
and ``kvgraph migrate`` from the embedded engines to the servers and back."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from contract.servers import bolt_uri, postgres_uri
from kvgraph.cli import main
from kvgraph.graphdb.open import open_bolt_store, parse_bolt_uri
from kvgraph.kb import KnowledgeBase
from support import require_dataset

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"
QUESTIONS = {
    "Who deciphered the hieroglyphs?": "rosetta-stone.txt",
    "How do honeybees tell each other where flowers are?": "honeybees.html",
    "How long should sourdough starter ferment?": "sourdough.md",
}


@pytest.fixture
def pg_uri() -> Iterator[str]:
    """A Postgres URI with a fresh schema, dropped afterwards."""
    base = postgres_uri()
    schema = "kb_" + uuid.uuid4().hex[:12]
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    import psycopg
    from psycopg import sql

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    out = tmp_path / "docs"
    shutil.copytree(SAMPLES, out)
    return out


def answers(kb: KnowledgeBase) -> dict[str, list[str]]:
    return {q: [h.node.id for h in kb.search(q, k=4, mode="dense")] for q in QUESTIONS}


def test_a_knowledge_base_on_postgres(tmp_path: Path, pg_uri: str, docs: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", store_uri=pg_uri) as kb:
        report = kb.ingest([docs])
        assert report.files_ingested == 5 and report.chunks == kb.store.count() > 10
        assert type(kb.store).__name__ == "PostgresVectorStore"
        for question, source in QUESTIONS.items():
            for mode in ("dense", "sparse", "hybrid", "mmr"):
                hits = kb.search(question, k=3, mode=mode)
                assert hits and hits[0].node.metadata["file_name"] == source, (mode, question)
        hits = kb.search("hieroglyphs", k=5, filters={"file_type": {"$ne": "txt"}})
        assert all(h.node.metadata["file_type"] != "txt" for h in hits)
        answer = kb.ask("Who deciphered the hieroglyphs?")
        assert answer.citations and "Champollion" in answer.text
        assert kb.delete(docs / "sourdough.md") > 0
        assert not any(h.node.metadata["file_name"] == "sourdough.md" for h in kb.search("sourdough starter", k=5))
        (docs / "sourdough.md").unlink()  # or the next sync would bring it back from the folder
        (docs / "note.txt").write_text("Quokkas are small marsupials that live on Rottnest Island near Perth.\n")
        (docs / "honeybees.html").unlink()
        synced = kb.sync()
        assert (synced.files_ingested, synced.files_removed) == (1, 1)
        stats = kb.stats()
        assert stats["chunks"] == kb.store.count() and stats["dim"] == 384
    assert "store_uri" in (tmp_path / "kb" / "kvgraph.toml").read_text()
    assert not (tmp_path / "kb" / "store").exists()  # the vectors live on the server only
    with KnowledgeBase.open(tmp_path / "kb", read_only=True) as kb:  # a reader, as kvgraph serve opens it
        assert kb.search("Which marsupials live on Rottnest Island?", k=1)[0].node.metadata["file_name"] == "note.txt"
    # the CLI, by URI only
    out = CliRunner().invoke(main, ["--kb", str(tmp_path / "kb"), "search", "quokkas", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["results"][0]["metadata"]["file_name"] == "note.txt"


def test_migrate_to_postgres_and_bolt_and_back(
    tmp_path: Path, pg_uri: str, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Path(require_dataset("devops_graph", "microservices.cypher"))
    target = parse_bolt_uri(bolt_uri())
    if target.password:  # passwords come from the environment, never from kvgraph.toml
        monkeypatch.setenv("KVGRAPH_NEO4J_PASSWORD", target.password)
    with open_bolt_store(bolt_uri(), read_only=False) as g:
        g.query("MATCH (n) DETACH DELETE n", read_only=False)
    kb_path = tmp_path / "kb"
    graph_q = "MATCH (m:Microservice)-[:DEPENDS_ON*1..3]->(d:Microservice {name: $n}) RETURN DISTINCT m.name AS s"
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
        kb.graph.import_cypher(script)
        before = answers(kb)
        deps = sorted(r[0] for r in kb.graph.query(graph_q, {"n": "Database"}).rows)
        counts = kb.graph.counts()
    plain = bolt_uri().replace(f"{target.user}:{target.password}@", f"{target.user}@")

    out = CliRunner().invoke(main, ["--kb", str(kb_path), "migrate", "--store", pg_uri, "--graph", plain, "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["nodes"] > 10 and report["graph_nodes"] == counts[0] and report["graph_edges"] == counts[1]
    assert (kb_path / "graph").exists() is False and len(report["kept"]) == 2
    with KnowledgeBase.open(kb_path) as kb:
        assert type(kb.store).__name__ == "PostgresVectorStore"
        assert answers(kb) == before
        assert sorted(r[0] for r in kb.graph.query(graph_q, {"n": "Database"}).rows) == deps
        assert kb.graph.counts() == counts

    for kept in report["kept"]:  # back into the directory: the old copies must be out of the way
        shutil.rmtree(kept)
    out = CliRunner().invoke(main, ["--kb", str(kb_path), "migrate", "--store", "embedded", "--graph", "embedded"])
    assert out.exit_code == 0, out.output
    with KnowledgeBase.open(kb_path) as kb:
        assert type(kb.store).__name__ == "EmbeddedVectorStore"
        assert answers(kb) == before
        assert sorted(r[0] for r in kb.graph.query(graph_q, {"n": "Database"}).rows) == deps
        assert kb.graph.counts() == counts
    # a second migration into a target that is not empty is refused, and nothing switches
    with open_bolt_store(bolt_uri(), read_only=True) as g:
        assert g.query("MATCH (n) RETURN count(n)").scalar() == counts[0]
    out = CliRunner().invoke(main, ["--kb", str(kb_path), "migrate", "--graph", plain])
    assert out.exit_code != 0 and "not empty" in out.output
    assert "bolt" not in (kb_path / "kvgraph.toml").read_text()
