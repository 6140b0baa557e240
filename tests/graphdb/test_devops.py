"""The DevOps graph loaded from the shared script as it is; the notebook's questions answered by Cypher."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvgraph.graphdb.base import WriteRejectedError
from kvgraph.graphdb.ladybug import LadybugGraphStore
from support import datasets_root

SHARED = datasets_root()
DEVOPS = SHARED / "devops_graph"
pytestmark = pytest.mark.skipif(not (DEVOPS / "microservices.cypher").is_file(), reason=f"{DEVOPS} not present")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = LadybugGraphStore.open(tmp_path_factory.mktemp("devops") / "graph")
    s.import_cypher((DEVOPS / "microservices.cypher").read_text(encoding="utf-8"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def gold() -> dict[str, Any]:
    qs = json.loads((DEVOPS / "questions.json").read_text(encoding="utf-8"))["questions"]
    return {q["id"]: q.get("gold_answer") for q in qs}


def test_counts_match_the_readme(store: LadybugGraphStore) -> None:
    labels = dict(store.query("MATCH (n) RETURN label(n), count(n)").rows)
    assert labels == {"Microservice": 13, "Task": 10, "Team": 4, "Person": 6}
    rels = dict(store.query("MATCH ()-[r]->() RETURN label(r), count(r)").rows)
    assert rels == {"DEPENDS_ON": 17, "ASSIGNED_TO": 10, "LINKED_TO": 10, "MAINTAINED_BY": 9, "PART_OF": 6}


def test_open_tasks(store: LadybugGraphStore, gold: dict[str, Any]) -> None:
    q = "MATCH (t:Task) WHERE toLower(t.status) = $s RETURN count(t)"
    assert store.query(q, {"s": "Open".lower()}).scalar() == gold["devops-02"] == gold["devops-03"]


def test_team_with_most_open_tasks(store: LadybugGraphStore, gold: dict[str, Any]) -> None:
    res = store.query(
        "MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team) WHERE toLower(t.status) = $s "
        "RETURN team.name AS team, count(t) AS open_tasks ORDER BY open_tasks DESC LIMIT 2",
        {"s": "open"},
    )
    top, runner_up = res.records()
    assert top == gold["devops-04"]
    assert runner_up["open_tasks"] < top["open_tasks"]  # the answer is unique


def test_direct_and_indirect_dependants_of_database(store: LadybugGraphStore, gold: dict[str, Any]) -> None:
    direct = store.query(
        "MATCH (m:Microservice)-[:DEPENDS_ON]->(d:Microservice {name: $name}) RETURN m.name ORDER BY m.name",
        {"name": "Database"},
    )
    assert [r[0] for r in direct.rows] == sorted(gold["devops-05"])
    indirect = store.query(
        "MATCH (m:Microservice)-[:DEPENDS_ON*2..5]->(d:Microservice {name: $name}) "
        "RETURN DISTINCT m.name ORDER BY m.name",
        {"name": "Database"},
    )
    assert [r[0] for r in indirect.rows] == sorted(gold["devops-06"])
    with pytest.raises(WriteRejectedError, match="upper bound"):  # the notebook's *2.. is refused
        store.query("MATCH (m:Microservice)-[:DEPENDS_ON*2..]->(d:Microservice {name: 'Database'}) RETURN m.name")


def test_task_for_recommendation_service(store: LadybugGraphStore, gold: dict[str, Any]) -> None:
    qs = json.loads((DEVOPS / "questions.json").read_text(encoding="utf-8"))["questions"]
    want = next(q["gold_task"] for q in qs if q["id"] == "devops-01")
    res = store.query(
        "MATCH (t:Task)-[:LINKED_TO]->(m:Microservice {name: $m}) RETURN t.name, t.status",
        {"m": "RecommendationService"},
    )
    assert res.rows == [[want, "in progress"]]


def test_schema_text_lists_labels_and_directions(store: LadybugGraphStore) -> None:
    text = store.schema().text()
    for label in ("Microservice", "Task", "Team", "Person"):
        assert f"(:{label} {{" in text
    for line in (
        "(:Microservice)-[:DEPENDS_ON]->(:Microservice)",
        "(:Task)-[:ASSIGNED_TO]->(:Team)",
        "(:Task)-[:LINKED_TO]->(:Microservice)",
        "(:Microservice)-[:MAINTAINED_BY]->(:Team)",
        "(:Person)-[:PART_OF]->(:Team)",
    ):
        assert line in text
    assert "status: STRING" in text
