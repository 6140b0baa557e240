"""``kvgraph graph import|query|schema`` through click's runner, registered the way the lead does."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kvgraph.cli.graph import graph, parse_param
from support import datasets_root

SHARED = datasets_root()
SCRIPT = SHARED / "devops_graph" / "microservices.cypher"


@click.group()
@click.option("--kb", envvar="KVGRAPH_KB", default=None)
@click.pass_context
def main(ctx: click.Context, kb: str | None) -> None:
    ctx.obj = {"kb": kb}


main.add_command(graph)


@pytest.fixture(autouse=True)
def _no_neo4j(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KVGRAPH_NEO4J_URI", raising=False)


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), input=stdin)
    return r.exit_code, r.stdout, r.stderr


def test_parse_param() -> None:
    assert parse_param("n=5") == ("n", 5)
    assert parse_param("xs=[1, 2]") == ("xs", [1, 2])
    assert parse_param("s=open") == ("s", "open")
    assert parse_param('s="5"') == ("s", "5")


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"{SCRIPT} not present")
def test_import_query_schema(tmp_path: Path) -> None:
    kb = str(tmp_path / "kb")
    code, out, err = run("--kb", kb, "graph", "import", str(SCRIPT))
    assert code == 0, err
    assert "33 nodes and 52 relationships" in out
    assert (tmp_path / "kb" / "graph" / "graph.lbug").is_file()
    code, out, err = run(
        "--kb",
        kb,
        "graph",
        "query",
        "MATCH (t:Task) WHERE toLower(t.status) = $s RETURN count(t) AS n",
        "--param",
        "s=open",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert (data["command"], data["schema"]) == ("graph query", 1)  # the envelope, then the query's fields
    assert {k: data[k] for k in ("columns", "rows", "truncated")} == {
        "columns": ["n"],
        "rows": [[5]],
        "truncated": False,
    }
    code, out, err = run(
        "--kb", kb, "graph", "query", "MATCH (m:Microservice) RETURN m.name ORDER BY m.name", "--max-rows", "3"
    )
    assert code == 0 and "CatalogService" in out and "truncated" in err
    code, out, err = run("--kb", kb, "graph", "query", "MATCH (n) DETACH DELETE n")
    assert code == 1 and "DETACH" in err and "--write" in err
    code, out, err = run("--kb", kb, "graph", "query", "MATCH (n:Nope) RETURN n")
    assert code == 1 and "Nope" in err
    code, out, err = run(
        "--kb",
        kb,
        "graph",
        "query",
        "MATCH (t:Task {name: 'Refactor'}) SET t.status = $s",
        "--param",
        "s=done",
        "--write",
    )
    assert code == 0, err
    code, out, err = run("--kb", kb, "graph", "query", "MATCH (t:Task {name: 'Refactor'}) RETURN t.status", "--json")
    assert json.loads(out)["rows"] == [["done"]]
    code, out, err = run("--kb", kb, "graph", "schema")
    assert code == 0 and "(:Microservice)-[:DEPENDS_ON]->(:Microservice)" in out
    code, out, err = run("--kb", kb, "graph", "schema", "--json")
    assert json.loads(out)["rel_endpoints"]["PART_OF"] == [["Person", "Team"]]


def test_csv_lists_and_errors(tmp_path: Path) -> None:
    kb = str(tmp_path / "kb")
    nodes = tmp_path / "people.csv"
    nodes.write_text("id,name\np1,Ann\np2,Bo\n")
    edges = tmp_path / "knows.csv"
    edges.write_text("from,to,since\nAnn,Bo,2020\n")
    code, out, err = run("--kb", kb, "graph", "import", str(nodes), "--label", "Person", "--json")
    assert code == 0, err
    assert json.loads(out)["nodes"] == 2
    code, out, err = run(
        "--kb",
        kb,
        "graph",
        "import",
        str(edges),
        "--rel-type",
        "KNOWS",
        "--source-col",
        "from",
        "--target-col",
        "to",
        "--source-label",
        "Person",
        "--target-label",
        "Person",
        "--key",
        "name",
    )
    assert code == 0, err
    code, out, err = run(
        "--kb", kb, "graph", "query", "MATCH (a)-[k:KNOWS]->(b) RETURN a.name, b.name, k.since", "--json"
    )
    assert json.loads(out)["rows"] == [["Ann", "Bo", 2020]]
    cypher = "MATCH (a)-[k:KNOWS]->(b) RETURN a.name AS a, b.name AS b, k.since AS since"
    code, out, err = run("--kb", kb, "graph", "query", "-", "--csv", stdin=cypher + "\n")  # the query on stdin
    assert code == 0, err
    assert out.splitlines() == ["a,b,since", "Ann,Bo,2020"]
    code, out, err = run("--kb", kb, "graph", "query", cypher, "--nl")
    assert [json.loads(line) for line in out.splitlines()] == [{"a": "Ann", "b": "Bo", "since": 2020}]
    code, out, err = run("--kb", kb, "graph", "import", str(nodes))
    assert code == 1 and "--label" in err
    code, out, err = run("--kb", str(tmp_path / "none"), "graph", "schema")
    assert code == 1 and "no graph here yet" in err
