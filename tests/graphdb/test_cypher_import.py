"""Cypher script import (dialect adaptation for Ladybug) and JSON/CSV node and edge lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.base import GraphError
from kvgraph.graphdb.cypher_import import (
    analyze_script,
    csv_value,
    import_edges_file,
    import_nodes_file,
    quote_reserved_variables,
)
from kvgraph.graphdb.ladybug import LadybugGraphStore

SCRIPT = """
// a small mixed graph: several label pairs for one type, typed literals, a reserved variable name
CREATE (order:Order {code: 'o1', total: 12.5, items: 3, paid: true, tags: ['a', 'b']});
MERGE (c:Customer {name: 'Ann', age: 41})
MERGE (p:Product {name: 'Lamp', price: 20})
MERGE (s:Supplier {name: 'Acme'})
MERGE (c)-[:LINKS {since: 2020}]->(p)
MERGE (p)<-[:LINKS]-(s)
MERGE (s)-[:SUPPLIES {qty: 5}]->(p);
MATCH (order:Order {code: 'o1'}), (c:Customer {name: 'Ann'}) MERGE (c)-[:PLACED]->(order)
"""


def test_analyze_infers_tables_and_pairs() -> None:
    plan = analyze_script(quote_reserved_variables(SCRIPT))
    assert len(plan.statements) == 3
    assert plan.rel_pairs["LINKS"] == {("Customer", "Product"), ("Supplier", "Product")}
    assert plan.rel_pairs["PLACED"] == {("Customer", "Order")}
    assert set(plan.labels["Order"]) == {"code", "total", "items", "paid", "tags"}
    assert plan.labels["Order"]["tags"] == ["STRING[]"]
    assert plan.labels["Order"]["paid"] == ["BOOL"]


def test_reserved_variables_are_quoted_only_where_used_as_variables() -> None:
    out = quote_reserved_variables("MERGE (order:O {x: 1}) SET order.y = 2 WITH order MATCH (n) RETURN n ORDER BY n.x")
    assert out.startswith("MERGE (`order`:O {x: 1}) SET `order`.y = 2")
    assert out.endswith("ORDER BY n.x")
    assert quote_reserved_variables("MATCH (n) RETURN n") == "MATCH (n) RETURN n"


def test_script_loads_into_ladybug(tmp_path: Path) -> None:
    s = LadybugGraphStore.open(tmp_path / "g")
    assert s.import_cypher(SCRIPT) == 3
    sch = s.schema()
    assert sorted(sch.rel_endpoints["LINKS"]) == [("Customer", "Product"), ("Supplier", "Product")]
    types = {p.name: p.type for p in sch.node_labels["Order"]}
    assert types == {
        "id": "SERIAL",
        "code": "STRING",
        "total": "DOUBLE",
        "items": "INT64",
        "paid": "BOOL",
        "tags": "STRING[]",
    }
    row = s.query("MATCH (c:Customer)-[:PLACED]->(o:`Order`) RETURN o.tags, o.paid, c.age").rows
    assert row == [[["a", "b"], True, 41]]
    assert s.query("MATCH (x)-[:LINKS]->(p:Product) RETURN count(x)").scalar() == 2
    # running it again: MERGE matches, only the CREATE adds a second order
    s.import_cypher(SCRIPT)
    assert s.query("MATCH (o:`Order`) RETURN count(o)").scalar() == 2
    assert s.query("MATCH (c:Customer) RETURN count(c)").scalar() == 1
    # a later script adds a column and a label pair to existing tables
    s.import_cypher(
        "MATCH (c:Customer {name: 'Ann'}) MERGE (w:Warehouse {name: 'W1', city: 'Oslo'}) "
        "MERGE (w)-[:LINKS]->(c) MERGE (c2:Customer {name: 'Bo', vip: true})"
    )
    assert ("Warehouse", "Customer") in s.schema().rel_endpoints["LINKS"]
    assert s.query("MATCH (c:Customer {name: 'Bo'}) RETURN c.vip").scalar() is True
    s.close()


def test_failed_script_changes_nothing(tmp_path: Path) -> None:
    s = LadybugGraphStore.open(tmp_path / "g")
    s.import_cypher("CREATE (:A {name: 'kept'})")
    with pytest.raises(GraphError):
        s.import_cypher("CREATE (:A {name: 'x'}) CREATE (:B {n: 1}); CREATE (:A {name: 1 +})")
    assert s.query("MATCH (a:A) RETURN a.name").rows == [["kept"]]
    assert "B" not in s.schema().node_labels
    with pytest.raises(GraphError, match="labels of \\[:R\\]"):
        s.import_cypher("MATCH (a), (b) CREATE (a)-[:R]->(b)")
    s.close()


def test_id_property_becomes_the_key(tmp_path: Path) -> None:
    s = LadybugGraphStore.open(tmp_path / "g")
    s.import_cypher("MERGE (a:P {id: 7, name: 'x'}) MERGE (b:P {id: 8, name: 'y'}) MERGE (a)-[:K]->(b)")
    assert s.edges().keys == ["P:7", "P:8"]
    assert s.query(f"MATCH (n:P {{name: 'y'}}) RETURN {s.node_key_expr('n')}").scalar() == "P:8"
    s.close()


def test_csv_values() -> None:
    assert [csv_value(x) for x in ["12", "-3", "007", "1.5", "2e3", "true", "FALSE", "", "a b"]] == [
        12,
        -3,
        "007",
        1.5,
        2000.0,
        True,
        False,
        None,
        "a b",
    ]


def write_lists(tmp_path: Path) -> dict[str, Path]:
    files = {
        "people": ("people.csv", "id,name,age\np1,Ann,41\np2,Bo,\np3,Cy,29\n"),
        "cities": (
            "cities.jsonl",
            '{"code": "OSL", "name": "Oslo", "pop": 700000}\n\n{"code": "BER", "name": "Berlin"}\n',
        ),
        "lives": (
            "lives.json",
            json.dumps([{"who": "Ann", "where": "Oslo", "since": 2019}, {"who": "Bo", "where": "Berlin"}]),
        ),
        "knows": ("knows.csv", "source,target,weight\nPerson:p1,Person:p2,0.5\nPerson:p2,Person:p3,1\n"),
    }
    out = {}
    for k, (name, text) in files.items():
        out[k] = tmp_path / name
        out[k].write_text(text, encoding="utf-8")
    return out


def test_json_csv_node_and_edge_lists(tmp_path: Path) -> None:
    f = write_lists(tmp_path)
    s = LadybugGraphStore.open(tmp_path / "g")
    assert import_nodes_file(s, f["people"], "Person") == 3
    assert import_nodes_file(s, f["cities"], "City", key="code", properties={"code": "code", "name": "city"}) == 2
    assert dict(s.nodes("Person", ["age"])) == {
        "Person:p1": {"age": 41},
        "Person:p2": {"age": None},
        "Person:p3": {"age": 29},
    }
    assert dict(s.nodes("City", ["city"])) == {"City:BER": {"city": "Berlin"}, "City:OSL": {"city": "Oslo"}}
    # endpoints given as node keys
    assert import_edges_file(s, f["knows"], "KNOWS") == 2
    rows = s.query("MATCH (a:Person)-[k:KNOWS]->(b:Person) RETURN a.name, b.name, k.weight ORDER BY a.name").rows
    assert rows == [["Ann", "Bo", 0.5], ["Bo", "Cy", 1.0]]
    s.close()


def test_edges_by_property_lookup(tmp_path: Path) -> None:
    f = write_lists(tmp_path)
    s = LadybugGraphStore.open(tmp_path / "g")
    import_nodes_file(s, f["people"], "Person")
    import_nodes_file(s, f["cities"], "City", key="code")
    assert (
        import_edges_file(
            s,
            f["lives"],
            "LIVES_IN",
            source="who",
            target="where",
            source_label="Person",
            target_label="City",
            key="name",
        )
        == 2
    )
    rows = s.query("MATCH (p:Person)-[l:LIVES_IN]->(c:City) RETURN p.name, c.code, l.since ORDER BY p.name").rows
    assert rows == [["Ann", "OSL", 2019], ["Bo", "BER", None]]
    s.close()


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    f = write_lists(tmp_path)
    s = LadybugGraphStore.open(tmp_path / "g")
    import_nodes_file(s, f["people"], "Person")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,name\nx1,A\n,B\n")
    with pytest.raises(InvalidInputError, match=r"bad.csv:3: the key column 'id'"):
        import_nodes_file(s, bad_csv, "Person")
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"id": "q1"}\n{"id": \n')
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:2: invalid JSON"):
        import_nodes_file(s, bad_jsonl, "Person")
    missing = tmp_path / "missing.csv"
    missing.write_text("source,target\nPerson:p1,Person:p2\nPerson:p1,Person:nobody\n")
    with pytest.raises(InvalidInputError, match="Person:nobody"):
        import_edges_file(s, missing, "KNOWS")
    by_name = tmp_path / "by_name.csv"
    by_name.write_text("a,b\nAnn,Bo\nAnn,Zed\n")
    with pytest.raises(InvalidInputError, match=r"by_name.csv:3: no Person node has name = 'Zed'"):
        import_edges_file(
            s, by_name, "KNOWS", source="a", target="b", source_label="Person", target_label="Person", key="name"
        )
    with pytest.raises(InvalidInputError, match="item 1: expected an object"):
        (tmp_path / "arr.json").write_text('[{"id": "z"}, 3]')
        import_nodes_file(s, tmp_path / "arr.json", "Person")
    assert s.query("MATCH (p:Person) RETURN count(p)").scalar() == 3  # nothing from the bad files landed
    assert s.query("MATCH ()-[k]->() RETURN count(k)").scalar() == 0
    s.close()
