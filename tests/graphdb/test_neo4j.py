"""Neo4j behind the same protocol; runs only against a real server named by KVGRAPH_NEO4J_URI."""

from __future__ import annotations

import os

import pytest

from kvgraph.graphdb.base import GraphStore, WriteRejectedError
from support import datasets_root

URI = os.environ.get("KVGRAPH_NEO4J_URI")
pytestmark = pytest.mark.skipif(
    not URI, reason="KVGRAPH_NEO4J_URI is not set: no Neo4j server to test against (set it, plus USER/PASSWORD)"
)
SHARED = datasets_root()


def test_neo4j_round_trip_guard_and_devops() -> None:
    from kvgraph.graphdb.neo4j import Neo4jGraphStore

    password = os.environ.get("KVGRAPH_NEO4J_PASSWORD") or ""
    s = Neo4jGraphStore(URI or "", os.environ.get("KVGRAPH_NEO4J_USER"), password)
    assert isinstance(s, GraphStore)
    assert not password or password not in repr(s)
    try:
        s.query("MATCH (n:KvTest) DETACH DELETE n", read_only=False)
        keys = s.upsert_nodes("KvTest", [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}])
        assert s.upsert_edges("KV_REL", [(keys[0], keys[1], {"w": 1.0})]) == 1
        hit = s.query(f"MATCH (n:KvTest) WHERE {s.match_keys_clause('n', 'ks')} RETURN n.name", {"ks": [keys[1]]})
        assert hit.rows == [["B"]]
        with pytest.raises(WriteRejectedError):
            s.query("MATCH (n:KvTest) DETACH DELETE n")
        assert s.query("MATCH (n:KvTest) RETURN count(n)").scalar() == 2
        assert s.delete_nodes(keys) == 2
        script = SHARED / "devops_graph" / "microservices.cypher"
        if script.is_file():
            s.query("MATCH (n) WHERE n:Microservice OR n:Task OR n:Team OR n:Person DETACH DELETE n", read_only=False)
            s.import_cypher(script.read_text(encoding="utf-8"))
            assert s.query("MATCH (t:Task) WHERE toLower(t.status) = $s RETURN count(t)", {"s": "open"}).scalar() == 5
    finally:
        s.close()
