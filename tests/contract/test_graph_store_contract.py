"""The GraphStore contract, run against embedded Ladybug and a real Bolt server (ArcadeDB unless
KVGRAPH_TEST_BOLT_URI names another), through kvgraph's one Cypher (graphdb/dialect.py lists
where the engines differ and how each difference is handled)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kvgraph.errors import InvalidInputError, ReadOnlyError
from kvgraph.graphdb.base import CypherSyntaxError, GraphStore, QueryTimeoutError, WriteRejectedError
from support import require_dataset


def devops(open_graph: Any) -> Any:
    script = require_dataset("devops_graph", "microservices.cypher")
    store = open_graph()
    assert store.import_cypher(Path(script).read_text(encoding="utf-8")) >= 1
    return store


def gold() -> dict[str, Any]:
    data = json.loads(Path(require_dataset("devops_graph", "questions.json")).read_text(encoding="utf-8"))
    return {q["id"]: q.get("gold_answer") for q in data["questions"]}


def test_upserts_parameters_and_node_keys(graph_backend: Any) -> None:
    store = graph_backend()
    assert isinstance(store, GraphStore)
    keys = store.upsert_nodes("Service", [{"id": "a", "name": "Auth", "port": 80}, {"id": "b", "name": "Billing"}])
    assert len(keys) == 2 and len(set(keys)) == 2
    again = store.upsert_nodes("Service", [{"id": "a", "name": "Auth v2", "port": 81}])
    assert again == keys[:1]  # same key property: the same node, updated in place
    assert store.upsert_edges("CALLS", [(keys[0], keys[1], {"weight": 0.5})]) == 1
    hit = store.query(
        f"MATCH (s:Service) WHERE {store.match_keys_clause('s', 'ks')} RETURN s.name AS name, s.port AS port",
        {"ks": [keys[0]]},
    )
    assert hit.records() == [{"name": "Auth v2", "port": 81}]
    by_key = store.query(f"MATCH (s:Service) RETURN {store.node_key_expr('s')} AS k, s.id AS id ORDER BY id")
    assert [r[0] for r in by_key.rows] == keys
    res = store.query(
        "MATCH (a:Service)-[c:CALLS]->(b:Service) WHERE a.name STARTS WITH $p RETURN b.id, c.weight", {"p": "Auth"}
    )
    assert res.rows == [["b", 0.5]]
    with pytest.raises(InvalidInputError):
        store.upsert_edges("CALLS", [(keys[0], "no-such-key" if graph_backend.backend == "bolt" else "Service:zz", {})])
    with pytest.raises(InvalidInputError):
        store.upsert_nodes("Service", [{"name": "no id"}])
    assert store.delete_nodes([keys[1]]) == 1
    assert store.query("MATCH (s:Service) RETURN count(s)").scalar() == 1
    assert store.query("MATCH ()-[c:CALLS]->() RETURN count(c)").scalar() == 0


def test_the_read_only_guard_refuses_before_the_engine(graph_backend: Any) -> None:
    store = graph_backend()
    store.upsert_nodes("Item", [{"id": "x"}])
    refused = [
        "CREATE (n:Item {id: 'y'})",
        "MATCH (n:Item) DETACH DELETE n",
        "MATCH (n:Item) SET n.flag = true",
        "MERGE (n:Item {id: 'z'})",
        "MATCH (a)-[*]->(b) RETURN count(*)",  # unbounded traversal
        "CALL apoc.help('x')",
        "RETURN 1; MATCH (n) DETACH DELETE n",
    ]
    for cypher in refused:
        with pytest.raises(WriteRejectedError):
            store.query(cypher)
    # nothing reached the engine: on ArcadeDB, whose read transactions would accept a write, too
    assert store.query("MATCH (n:Item) RETURN count(n), collect(n.id)").rows == [[1, ["x"]]]
    assert store.query("MATCH (n:Item) WHERE n.id = $id RETURN n.id", {"id": "x"}).rows == [["x"]]


def test_read_only_store_refuses_writes(graph_backend: Any) -> None:
    writer = graph_backend()
    writer.upsert_nodes("Item", [{"id": "x"}])
    if graph_backend.backend == "ladybug":
        writer.close()  # one embedded database handle writes at a time
    reader = graph_backend(read_only=True)
    with pytest.raises((ReadOnlyError, WriteRejectedError)):
        reader.query("CREATE (n:Item {id: 'y'})", read_only=False)
    with pytest.raises((ReadOnlyError, WriteRejectedError)):
        reader.upsert_nodes("Item", [{"id": "y"}])
    assert reader.query("MATCH (n:Item) RETURN count(n)").scalar() == 1


def test_syntax_errors_name_the_query(graph_backend: Any) -> None:
    store = graph_backend()
    with pytest.raises(CypherSyntaxError, match="RETURN"):
        store.query("MATCH (n RETURN n")
    with pytest.raises(CypherSyntaxError):
        store.explain("MATCH (n RETURN n")
    store.explain("MATCH (n) RETURN count(n)")  # a valid query explains without error


def test_devops_import_schema_and_questions(graph_backend: Any) -> None:
    store = devops(graph_backend)
    g = gold()
    counts = dict(store.query("MATCH (n:Microservice) RETURN 'Microservice', count(n)").rows)
    assert counts == {"Microservice": 13}
    assert store.query("MATCH (t:Task) WHERE toLower(t.status) = $s RETURN count(t)", {"s": "open"}).scalar() == 5
    top = store.query(
        "MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team) WHERE toLower(t.status) = $s "
        "RETURN team.name AS team, count(t) AS open_tasks ORDER BY open_tasks DESC LIMIT 1",
        {"s": "open"},
    ).records()
    assert top == [g["devops-04"]]
    direct = store.query(
        "MATCH (m:Microservice)-[:DEPENDS_ON]->(d:Microservice {name: $name}) RETURN m.name ORDER BY m.name",
        {"name": "Database"},
    )
    assert [r[0] for r in direct.rows] == g["devops-05"]
    indirect = store.query(
        "MATCH (m:Microservice)-[:DEPENDS_ON*2..5]->(d:Microservice {name: $name}) "
        "RETURN DISTINCT m.name ORDER BY m.name",
        {"name": "Database"},
    )
    assert [r[0] for r in indirect.rows] == g["devops-06"]
    schema = store.schema()
    assert set(schema.node_labels) == {"Microservice", "Task", "Team", "Person"}
    task_props = {p.name for p in schema.node_labels["Task"]}
    assert {"name", "description", "status"} <= task_props
    assert ("Task", "Team") in schema.rel_endpoints["ASSIGNED_TO"]
    assert set(schema.rel_types) == {"DEPENDS_ON", "ASSIGNED_TO", "LINKED_TO", "MAINTAINED_BY", "PART_OF"}
    assert "(:Task)-[:ASSIGNED_TO]->(:Team)" in schema.text()


def test_nodes_and_edges_for_the_walk(graph_backend: Any) -> None:
    store = devops(graph_backend)
    services = store.nodes("Microservice", ["name"])
    assert len(services) == 13 and {"Database", "AuthService"} <= {p["name"] for _, p in services}
    edges = store.edges()
    assert len(edges.keys) == 33 and len(edges.src) == 52
    by_type = {"DEPENDS_ON": 17, "ASSIGNED_TO": 10, "LINKED_TO": 10, "MAINTAINED_BY": 9, "PART_OF": 6}
    assert Counter(edges.types) == by_type
    deps = store.edges(["DEPENDS_ON"])
    assert len(deps.src) == 17 and set(deps.types) == {"DEPENDS_ON"}
    name_of = {k: p["name"] for k, p in services}
    database = [i for i, k in enumerate(deps.keys) if name_of.get(k) == "Database"]
    into_db = {name_of[deps.keys[s]] for s, d in zip(deps.src, deps.dst) if d in database}
    assert sorted(into_db) == gold()["devops-05"]
    assert {deps.labels[i] for i in deps.src} == {"Microservice"}


# A query that runs for seconds on each engine (each optimises different things away); on ArcadeDB,
# which does not stop it, the server finishes it within a few seconds after kvgraph gave up.
SLOW = {
    "ladybug": "UNWIND range(1, 1000000) AS x UNWIND range(1, 1000) AS y WITH x, y "
    "WHERE (x + y) % 7 = 3 RETURN count(*)",
    "bolt": "MATCH (a), (b), (c), (d) WHERE a.name + b.name + c.name + d.name CONTAINS 'zzz' RETURN count(*)",
}


def test_a_slow_query_times_out(graph_backend: Any) -> None:
    store = devops(graph_backend)
    t0 = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        store.query(SLOW[graph_backend.backend], timeout_s=0.5)
    assert time.monotonic() - t0 < 10
    assert store.query("MATCH (t:Task) RETURN count(t)").scalar() == 10  # the store still answers
