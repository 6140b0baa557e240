"""``kb.graph`` on the DevOps graph: import, Cypher, node index and the vector question, through the KB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvgraph.datasets import datasets_root
from kvgraph.errors import KvgraphError
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
