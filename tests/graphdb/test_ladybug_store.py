"""The embedded Ladybug graph store on real database files, with real child processes for locking and crashes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kvgraph.errors import InvalidInputError, ReadOnlyError, StoreClosedError, StoreLockedError
from kvgraph.graphdb.base import CypherSyntaxError, GraphStore, QueryTimeoutError, WriteRejectedError
from kvgraph.graphdb.guard import UnboundedTraversalError
from kvgraph.graphdb.ladybug import LadybugGraphStore

WORKER = Path(__file__).with_name("_graph_worker.py")


def small_graph(path: Path) -> LadybugGraphStore:
    s = LadybugGraphStore.open(path)
    s.upsert_nodes("Entity", [{"id": "a", "name": "Alpha", "w": 1}, {"id": "b", "name": "Beta", "w": 2.5}])
    s.upsert_nodes("Doc", [{"title": "d1", "pages": 3}], key="title")
    s.upsert_edges("MENTIONS", [("Doc:d1", "Entity:a", {"weight": 0.5}), ("Doc:d1", "Entity:b", {})])
    s.upsert_edges("RELATED", [("Entity:a", "Entity:b", {"why": "test"})])
    return s


def test_protocol_and_round_trip(tmp_path: Path) -> None:
    s = small_graph(tmp_path / "g")
    assert isinstance(s, GraphStore)
    res = s.query("MATCH (d:Doc)-[m:MENTIONS]->(e:Entity) RETURN d, m, e ORDER BY e.name")
    d, m, e = res.rows[0]
    assert d == {"id": "d1", "title": "d1", "pages": 3, "_label": "Doc", "_key": "Doc:d1"}
    assert m == {"weight": 0.5, "_type": "MENTIONS", "_src": "Doc:d1", "_dst": "Entity:a"}
    assert e["_key"] == "Entity:a" and e["w"] == 1.0  # INT and DOUBLE values in one column become DOUBLE
    # relationship endpoints are resolved to node keys even when the nodes are not in the result
    only_rel = s.query("MATCH ()-[r:RELATED]->() RETURN r").rows[0][0]
    assert (only_rel["_src"], only_rel["_dst"], only_rel["why"]) == ("Entity:a", "Entity:b", "test")
    # node keys in Cypher, and joining a list of keys back into a query
    keys = s.query(f"MATCH (n) RETURN {s.node_key_expr('n')} AS k ORDER BY k").rows
    assert [k[0] for k in keys] == ["Doc:d1", "Entity:a", "Entity:b"]
    hit = s.query(f"MATCH (n:Entity) WHERE {s.match_keys_clause('n', 'ks')} RETURN n.name", {"ks": ["Entity:b"]})
    assert hit.rows == [["Beta"]]
    assert dict(s.nodes("Entity", ["name"])) == {"Entity:a": {"name": "Alpha"}, "Entity:b": {"name": "Beta"}}
    el = s.edges()
    pairs = {(el.keys[a], el.keys[b], t) for a, b, t in zip(el.src, el.dst, el.types)}
    assert pairs == {
        ("Doc:d1", "Entity:a", "MENTIONS"),
        ("Doc:d1", "Entity:b", "MENTIONS"),
        ("Entity:a", "Entity:b", "RELATED"),
    }
    assert el.src.dtype == np.int64 and len(el.labels) == len(el.keys)
    assert s.edges(["RELATED"]).types == ["RELATED"]
    # upsert updates in place, and edges upserted twice stay one edge
    s.upsert_nodes("Entity", [{"id": "a", "name": "Alpha2"}])
    s.upsert_edges("RELATED", [("Entity:a", "Entity:b", {"why": "again"})])
    assert s.query("MATCH (n:Entity {id: 'a'}) RETURN n.name, n.w").rows == [["Alpha2", 1.0]]
    assert s.query("MATCH ()-[r:RELATED]->() RETURN r.why").rows == [["again"]]
    # paths come back as plain nodes and relationships
    path = s.query("MATCH p = (d:Doc)-[:MENTIONS]->(:Entity)-[:RELATED*1..2]->(:Entity) RETURN p").rows[0][0]
    assert [n["_key"] for n in path["nodes"]] == ["Doc:d1", "Entity:a", "Entity:b"]
    assert [r["_type"] for r in path["relationships"]] == ["MENTIONS", "RELATED"]
    assert s.delete_nodes(["Entity:b", "Entity:zz"]) == 1
    assert s.query("MATCH ()-[r]->() RETURN count(r)").scalar() == 1
    s.close()
    with pytest.raises(StoreClosedError):
        s.query("MATCH (n) RETURN n")


def test_schema_and_errors(tmp_path: Path) -> None:
    s = small_graph(tmp_path / "g")
    sch = s.schema()
    assert {p.name: p.type for p in sch.node_labels["Entity"]} == {"id": "STRING", "name": "STRING", "w": "DOUBLE"}
    assert sch.rel_endpoints == {"MENTIONS": [("Doc", "Entity")], "RELATED": [("Entity", "Entity")]}
    assert "(:Doc)-[:MENTIONS]->(:Entity)" in sch.text()
    with pytest.raises(CypherSyntaxError, match="Nope"):
        s.query("MATCH (n:Nope) RETURN n")
    with pytest.raises(CypherSyntaxError, match="MATCH \\(n RETURN n"):
        s.explain("MATCH (n RETURN n")
    s.explain("MATCH (n:Entity) WHERE n.name = $x RETURN n", {"x": "a"})
    with pytest.raises(InvalidInputError, match="Entity:zz"):
        s.upsert_edges("RELATED", [("Entity:a", "Entity:zz", {})])
    with pytest.raises(InvalidInputError, match=r"row 1.*'id'"):
        s.upsert_nodes("Entity", [{"id": "c"}, {"name": "no key"}])
    with pytest.raises(InvalidInputError, match=r"'many'.*DOUBLE"):
        s.upsert_nodes("Entity", [{"id": "c", "w": "many"}])
    with pytest.raises(InvalidInputError, match="node label 'bad label'"):
        s.upsert_nodes("bad label", [{"id": 1}])
    assert s.query("MATCH (n:Entity) RETURN count(n)").scalar() == 2  # nothing of the failed batches landed
    s.close()


def test_parameters_stay_data_and_read_only_rejects_writes(tmp_path: Path) -> None:
    s = small_graph(tmp_path / "g")
    evil = "x'}) DETACH DELETE n //\" `"
    s.upsert_nodes("Entity", [{"id": "evil", "name": evil}])
    assert s.query("MATCH (n:Entity) WHERE n.name = $v RETURN n.id", {"v": evil}).rows == [["evil"]]
    before = s.query("MATCH (n) RETURN count(n)").scalar(), s.query("MATCH ()-[r]->() RETURN count(r)").scalar()
    for q in [
        "CREATE (:Entity {id: 'z'})",
        "MATCH (n:Entity) MERGE (n)-[:RELATED]->(n)",
        "MATCH (n:Entity) SET n.name = 'x'",
        "MATCH (n) DETACH DELETE n",
        "MATCH (n:Entity) DELETE n",
        "LOAD FROM 'x.csv' RETURN *",
        "COPY Entity FROM 'x.csv'",
        "MATCH (n) RETURN n; MATCH (m) DETACH DELETE m",
        "MATCH (n) RETURN n; CREATE (:Entity {id: 'q'})",
        "DROP TABLE Entity",
        "CALL some_writer()",
    ]:
        with pytest.raises(WriteRejectedError):
            s.query(q)
    with pytest.raises(UnboundedTraversalError, match="upper bound"):
        s.query("MATCH (a)-[*]->(b) RETURN count(*)")
    after = s.query("MATCH (n) RETURN count(n)").scalar(), s.query("MATCH ()-[r]->() RETURN count(r)").scalar()
    assert after == before
    assert s.query("MATCH (n:Entity {id: 'evil'}) RETURN n.name").scalar() == evil
    # allowed: keywords inside strings and read procedures
    assert s.query("MATCH (n:Entity) WHERE n.name <> 'CREATE (x) DELETE' RETURN count(n)").scalar() == 3
    assert s.query("CALL show_tables() RETURN count(*)").scalar() == 4
    # explicit writes
    s.query("MATCH (n:Entity {id: 'evil'}) SET n.name = $v", {"v": "ok"}, read_only=False)
    assert s.query("MATCH (n:Entity {id: 'evil'}) RETURN n.name").scalar() == "ok"
    s.close()


def test_max_rows_truncates(tmp_path: Path) -> None:
    s = LadybugGraphStore.open(tmp_path / "g")
    s.upsert_nodes("N", [{"id": i} for i in range(50)])
    res = s.query("MATCH (n:N) RETURN n.id ORDER BY n.id", max_rows=7)
    assert res.truncated and [r[0] for r in res.rows] == list(range(7))
    full = s.query("MATCH (n:N) RETURN n.id", max_rows=50)
    assert not full.truncated and len(full.rows) == 50
    s.close()


def dense_graph(path: Path, n: int = 2000, m: int = 20000) -> LadybugGraphStore:
    s = LadybugGraphStore.open(path)
    s.upsert_nodes("N", [{"id": i} for i in range(n)])
    s.ensure_rel_table("E", [("N", "N")], {})
    s.query(
        "UNWIND range(0, $m - 1) AS i MATCH (a:N {id: i % $n}), (b:N {id: (i * 7 + 13) % $n}) CREATE (a)-[:E]->(b)",
        {"n": n, "m": m},
        read_only=False,
        timeout_s=None,
    )
    return s


def test_timeout_interrupts_a_long_query(tmp_path: Path) -> None:
    s = dense_graph(tmp_path / "g")
    q = "MATCH (a:N)-[:E*1..5]->(b:N) RETURN count(*)"
    t = time.perf_counter()
    with pytest.raises(QueryTimeoutError, match="timeout"):
        s.query(q, timeout_s=0.05)
    assert time.perf_counter() - t < 5  # stopped, not run to completion
    assert s.query("MATCH (a:N)-[:E]->(b:N) RETURN count(*)", timeout_s=5).scalar() == 20000  # still usable
    s.close()


def _worker(*args: str, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "g"
    small_graph(path).close()
    holder = _worker("hold", str(path), stdin=True)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.startswith("ready"), holder.stderr.read() if holder.stderr else line
        pid = line.split()[1]
        with pytest.raises(StoreLockedError, match=f"pid {pid}"):
            LadybugGraphStore.open(path)
        out = json.loads(_worker("try-open", str(path)).communicate(timeout=60)[0])
        assert out["ok"] is False and out["error"] == "StoreLockedError" and f"pid {pid}" in out["message"]
        # a reader may open while the writer holds the graph, and sees what was committed
        ro = json.loads(_worker("try-open", str(path), "ro").communicate(timeout=60)[0])
        assert ro == {"ok": True, "count": 3}
    finally:
        assert holder.stdin is not None
        holder.stdin.write("close\n")
        holder.stdin.flush()
        holder.wait(60)
    LadybugGraphStore.open(path).close()  # free again


def test_reader_keeps_its_snapshot_while_another_process_writes(tmp_path: Path) -> None:
    """Measured on Ladybug 0.22: a writer may open while a reader is open; the reader keeps its snapshot.

    Untrusted reads run in the store's sandbox process, whose read-only handle opens on the first
    query: the snapshot is taken there (and the store's own handle, for schema and node lists, at open).
    """
    path = tmp_path / "g"
    small_graph(path).close()
    reader = LadybugGraphStore.open(path, read_only=True)
    try:
        assert reader.query("MATCH (n:Entity) RETURN count(n)").scalar() == 2
        code = (
            "from kvgraph.graphdb.ladybug import LadybugGraphStore as S\n"
            f"s = S.open({str(path)!r}); s.upsert_nodes('Entity', [{{'id': f'n{{i}}'}} for i in range(500)]); s.close()"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert reader.query("MATCH (n:Entity) RETURN count(n)").scalar() == 2
        with pytest.raises(ReadOnlyError):
            reader.upsert_nodes("Entity", [{"id": "z"}])
        with pytest.raises(ReadOnlyError):
            reader.query("CREATE (:Entity {id: 'z'})", read_only=False)
    finally:
        reader.close()
    again = LadybugGraphStore.open(path, read_only=True)
    assert again.query("MATCH (n:Entity) RETURN count(n)").scalar() == 502
    again.close()


def test_reopen_sees_the_data_and_read_only_needs_a_graph(tmp_path: Path) -> None:
    path = tmp_path / "g"
    small_graph(path).close()
    s = LadybugGraphStore.open(path, read_only=True)
    assert s.query("MATCH (n) RETURN count(n)").scalar() == 3
    assert s.query("MATCH (d:Doc)-[:MENTIONS]->(e) RETURN count(e)").scalar() == 2
    s.close()
    w = LadybugGraphStore.open(path)
    assert dict(w.nodes("Doc")) == {"Doc:d1": {"id": "d1", "title": "d1", "pages": 3}}
    w.close()
    from kvgraph.graphdb.base import GraphError

    with pytest.raises(GraphError, match="no graph here yet"):
        LadybugGraphStore.open(tmp_path / "empty", read_only=True)


def test_crash_mid_import_keeps_whole_transactions(tmp_path: Path) -> None:
    """SIGKILL a writer while it imports a batch; the reopened graph has each batch fully or not at all."""
    path = tmp_path / "g"
    n = 4000
    rng = random.Random(5)
    committed: list[int] = []
    outcomes = {"all": 0, "none": 0}
    for rnd in range(4):
        child = _worker("import", str(path), str(rnd), str(n))
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("begin"), child.stderr.read() if child.stderr else line
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        rest = child.communicate(timeout=60)[0]
        if "committed" in rest:
            committed.append(rnd)
        s = LadybugGraphStore.open(path, read_only=True)
        rounds = dict(s.query("MATCH (n:Item) RETURN n.round, count(n)").rows) if s.schema().node_labels else {}
        edges = (
            dict(s.query("MATCH ()-[e:NEXT]->() RETURN e.round, count(e)").rows)
            if "NEXT" in s.schema().rel_types
            else {}
        )
        s.close()
        for r in committed:
            assert rounds.get(r) == n and edges.get(r) == n - 1, f"committed round {r} is incomplete"
        got = rounds.get(rnd, 0)
        assert got in (0, n), f"round {rnd}: {got} of {n} nodes survived the crash"
        assert edges.get(rnd, 0) == (n - 1 if got else 0)
        outcomes["all" if got else "none"] += 1
        if got:
            committed.append(rnd) if rnd not in committed else None
    assert sum(outcomes.values()) == 4
