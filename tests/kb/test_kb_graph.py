"""``kb.graph`` on the DevOps graph: import, Cypher, node index and the vector question, through the KB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvgraph.errors import KvgraphError
from kvgraph.eval.sources import datasets_root
from kvgraph.kb import KnowledgeBase

DEVOPS = datasets_root() / "devops_graph"
pytestmark = pytest.mark.skipif(not DEVOPS.is_dir(), reason=f"{DEVOPS} not found (set KVGRAPH_DATASETS)")


def test_kb_graph_import_query_index_and_vector_question(tmp_path: Path) -> None:
    questions = json.loads((DEVOPS / "questions.json").read_text())["questions"]
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.graph.import_cypher(DEVOPS / "microservices.cypher") >= 1
        open_tasks = kb.graph.query("MATCH (t:Task) WHERE toLower(t.status) = $s RETURN count(*)", {"s": "open"})
        assert open_tasks.scalar() == sum(1 for _ in kb.graph.store.nodes("Task") if _[1]["status"] == "open")
        report = kb.graph.index_nodes("Task", ["name", "description", "status"])
        assert report.added == kb.graph.query("MATCH (t:Task) RETURN count(*)").scalar()
        again = kb.graph.index_nodes("Task", ["name", "description", "status"])
        assert again.added == again.updated == again.embedded == 0

        vector_q = next(q for q in questions if "recommendation" in q["question"].lower())
        hits = kb.graph.search_nodes(vector_q["question"], k=3, label="Task")
        assert vector_q["gold_task"] in [h.name for h in hits]
        # the hit joins back into Cypher by its node key
        clause = kb.graph.store.match_keys_clause("t", "keys")
        rows = kb.graph.query(f"MATCH (t:Task) WHERE {clause} RETURN t.name", {"keys": [hits[0].node_key]}).rows
        assert rows == [[hits[0].name]]

        answer = kb.graph.ask(vector_q["question"], tool="vector")
        assert answer.citations

    with KnowledgeBase.open(tmp_path / "kb", read_only=True) as kb:
        assert kb.graph.query("MATCH (m:Microservice) RETURN count(*)").scalar() == 13
        with pytest.raises(KvgraphError):
            kb.graph.write("CREATE (:Team {name: $n})", {"n": "TeamZ"})


def test_graph_mode_search_through_the_kb(tmp_path: Path) -> None:
    """Build the document graph of real sample documents, search in graph mode, keep it current on sync."""
    import shutil

    samples = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("rosetta-stone.txt", "honeybees.html"):
        shutil.copy(samples / name, docs / name)
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
        with pytest.raises(KvgraphError, match="graph build"):
            kb.search("Who deciphered the hieroglyphs?", mode="graph")
        report = kb.graph.build(export=True)
        assert report["chunks"] == kb.store.count() and report["entities"] > 10
        assert report["exported"]["Chunk"] == report["chunks"]
        hits = kb.search("Who deciphered the hieroglyphs?", k=3, mode="graph")
        assert hits and hits[0].node.metadata["file_name"] == "rosetta-stone.txt"
        assert all(h.path[-1] == h.node.id for h in hits)
        # the exported graph answers Cypher: which chunks mention Champollion?
        n = kb.graph.query(
            "MATCH (c:Chunk)-[:MENTIONS]->(e:Entity) WHERE e.name CONTAINS $name RETURN count(DISTINCT c)",
            {"name": "Champollion"},
        ).scalar()
        assert n >= 1
        # a new file is in the graph after the next sync, without another build
        (docs / "note.txt").write_text("Quokkas are small marsupials that live on Rottnest Island near Perth.\n")
        kb.sync()
        assert (
            kb.search("Which marsupials live on Rottnest Island?", k=1, mode="graph")[0].node.metadata["file_name"]
            == "note.txt"
        )
