"""Graph routes (read-only Cypher with bound parameters, schema, neighbourhoods, graph questions)
and evaluation runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from kvgraph.kb import KnowledgeBase

PEOPLE = """
CREATE (:Person {id: 'ada', name: 'Ada Lovelace', role: 'analyst'});
CREATE (:Person {id: 'alan', name: 'Alan Turing', role: 'cryptanalyst'});
CREATE (:Project {id: 'engine', name: 'Analytical Engine'});
CREATE (:Project {id: 'bombe', name: 'Bombe'});
MATCH (p:Person {id: 'ada'}), (q:Project {id: 'engine'}) CREATE (p)-[:WORKS_ON]->(q);
MATCH (p:Person {id: 'alan'}), (q:Project {id: 'bombe'}) CREATE (p)-[:WORKS_ON]->(q);
"""


def people_kb(tmp_path: Path) -> Path:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.graph.import_cypher(PEOPLE)
        kb.graph.index_nodes("Person", ["name", "role"])
    return tmp_path / "kb"


def test_cypher_with_bound_parameters_returns_rows_and_a_graph(serve, tmp_path: Path) -> None:
    s = serve(people_kb(tmp_path))
    with s.client() as c:
        out = c.post(
            "/api/graph/query",
            json={
                "cypher": "MATCH (p:Person)-[r:WORKS_ON]->(q) WHERE p.name = $name RETURN p, r, q",
                "params": {"name": "Ada Lovelace"},
            },
        ).json()
        assert out["columns"] == ["p", "r", "q"] and len(out["rows"]) == 1
        graph = out["graph"]
        assert {n["id"] for n in graph["nodes"]} == {"Person:ada", "Project:engine"}
        assert graph["edges"] == [
            {"source": "Person:ada", "target": "Project:engine", "type": "WORKS_ON", "properties": {}}
        ]
        injected = c.post(
            "/api/graph/query",
            json={"cypher": "MATCH (p:Person) WHERE p.name = $name RETURN p.id", "params": {"name": "x' OR 1=1 //"}},
        ).json()
        assert injected["rows"] == []  # a parameter is a value, never Cypher
        capped = c.post("/api/graph/query", json={"cypher": "MATCH (p:Person) RETURN p.id", "max_rows": 1}).json()
        assert len(capped["rows"]) == 1 and capped["truncated"] is True


def test_writes_through_the_query_route_are_refused_and_change_nothing(serve, tmp_path: Path) -> None:
    s = serve(people_kb(tmp_path))
    with s.client() as c:
        for cypher in [
            "CREATE (:Person {id: 'eve', name: 'Eve'})",
            "MATCH (p:Person) DETACH DELETE p",
            "MATCH (p:Person) SET p.role = 'x' RETURN p",
        ]:
            r = c.post("/api/graph/query", json={"cypher": cypher})
            assert r.status_code == 400, cypher
            assert r.json()["error"]["message"]
        count = c.post("/api/graph/query", json={"cypher": "MATCH (p:Person) RETURN count(p) AS n"}).json()
    assert count["rows"] == [[2]]


def test_schema_neighbourhood_and_graph_questions(serve, tmp_path: Path) -> None:
    s = serve(people_kb(tmp_path))
    with s.client() as c:
        schema = c.get("/api/graph/schema").json()
        assert set(schema["node_labels"]) == {"Person", "Project"}
        assert schema["rel_endpoints"]["WORKS_ON"] == [["Person", "Project"]]
        around = c.get("/api/graph/neighbourhood", params={"key": "Person:ada"}).json()
        assert around["center"] == "Person:ada"
        assert {n["id"] for n in around["nodes"]} == {"Person:ada", "Project:engine"}
        assert c.get("/api/graph/neighbourhood", params={"key": "Person:nobody"}).status_code == 400
        answer = c.post("/api/graph/ask", json={"question": "Who was a cryptanalyst?", "tool": "vector"}).json()
    assert answer["tool"] == "vector"
    assert answer["hits"][0]["node_key"] == "Person:alan"


def test_document_graph_neighbourhood(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        hit = c.post("/api/search", json={"query": "Rosetta Stone decree", "k": 1}).json()["hits"][0]
        around = c.get("/api/graph/neighbourhood", params={"key": hit["id"], "source": "docgraph", "limit": 10}).json()
    assert around["center"] == hit["id"]
    assert 1 <= len(around["edges"]) <= 10
    assert {e["type"] for e in around["edges"]} <= {"NEXT", "PARENT", "MENTIONS", "SIMILAR", "SYNONYM", "RELATED"}
    chunk = next(n for n in around["nodes"] if n["id"] == hit["id"])
    assert chunk["name"].startswith("rosetta-stone.txt")  # chunks are named by source, not by id


def wait_run(c: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        run: dict[str, Any] = c.get(f"/api/eval/runs/{run_id}").json()
        if run["state"] in ("done", "failed") or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_an_evaluation_run_scores_each_mode_and_is_kept(serve, sample_kb: Path) -> None:
    questions = [
        {"question": "How often should rooftop solar panels be cleaned?", "relevant_files": ["solar-maintenance.md"]},
        {"question": "Which Wi-Fi channels do not overlap?", "relevant_files": ["home-network-handbook.pdf"]},
        {"question": "How do forager bees tell others where flowers are?", "relevant_files": ["honeybees.html"]},
        {"question": "When was the Rosetta Stone found?", "relevant_files": ["rosetta-stone.txt"], "answers": ["1799"]},
    ]
    s = serve(sample_kb)
    with s.client() as c:
        started = c.post(
            "/api/eval/runs",
            json={
                "name": "samples",
                "questions": questions,
                "modes": ["dense", "sparse"],
                "ks": [1, 3],
                "score_answers": True,
            },
        )
        assert started.status_code == 202 and started.json()["state"] in ("queued", "running", "done")
        run = wait_run(c, started.json()["id"])
        assert run["state"] == "done", run["error"]
        modes = run["results"]["modes"]
        assert set(modes) == {"dense", "sparse"}
        assert modes["dense"]["means"]["hit_rate@3"] == 1.0
        assert modes["dense"]["n_queries"] == 4
        assert modes["sparse"]["rows"][0]["question"] == questions[0]["question"]
        assert run["results"]["answers"]["means"]["token_f1"] >= 0
        assert [r["id"] for r in c.get("/api/eval/runs").json()] == [run["id"]]
        bad = wait_run(c, c.post("/api/eval/runs", json={"questions": [{"question": "no gold"}]}).json()["id"])
        assert bad["state"] == "failed" and "relevant_ids" in bad["error"]
        assert c.delete(f"/api/eval/runs/{run['id']}").status_code == 200
        assert c.get(f"/api/eval/runs/{run['id']}").status_code == 404
