"""The read-only guard decides from the text alone; keywords in strings, comments and names are data."""

from __future__ import annotations

import pytest

from kvgraph.graphdb.base import WriteRejectedError
from kvgraph.graphdb.guard import UnboundedTraversalError, check_read_only, tokenize

READS = [
    "MATCH (n:Task) WHERE toLower(n.status) = $s RETURN count(n)",
    "MATCH (n) WHERE n.name = 'CREATE (x) DETACH DELETE n; DROP TABLE T' RETURN n",
    'MATCH (n) WHERE n.name = "it\\"s; MERGE" RETURN n',
    "MATCH (n) WHERE n.name = 'it''s SET' RETURN n",
    "MATCH (n:`CREATE`) RETURN n.`DELETE`",
    "MATCH (n) RETURN n.set, n.create, {merge: 1, delete: 2} AS m",
    "MATCH (n) // DELETE everything\nRETURN n",
    "MATCH (n) /* SET n.x = 1; CREATE */ RETURN n",
    "MATCH (n) RETURN n;",
    "MATCH (n) RETURN n;   // trailing comment\n",
    "MATCH (set)-[load]->(merge) RETURN set.name, load.w",
    "MATCH (a)-[:DEPENDS_ON*1..5]->(b) RETURN b",
    "MATCH (a)-[:DEPENDS_ON*2..3]->(b) RETURN b",
    "MATCH (a)-[:DEPENDS_ON*..4]->(b) RETURN b",
    "MATCH (a)-[:DEPENDS_ON*3]->(b) RETURN b",
    "MATCH (a)<-[r*1..2]-(b) RETURN b",
    "MATCH (n) WHERE n.x > 2*3 RETURN [x IN range(1, 9) | x * 2]",
    "CALL show_tables() RETURN *",
    "CALL table_info('Task') RETURN *",
    "CALL db.labels()",
    "MATCH (n) CALL { WITH n MATCH (n)-->(m) RETURN count(m) AS c } RETURN n, c",
    "MATCH (n) WHERE n.name STARTS WITH $p RETURN n ORDER BY n.name LIMIT 5",
    "EXPLAIN MATCH (n) RETURN n",
    "MATCH (n {name: $merge}) RETURN n",
]

WRITES = [
    ("CREATE (n:Task {name: 'x'})", "CREATE"),
    ("MATCH (a), (b) MERGE (a)-[:R]->(b)", "MERGE"),
    ("MATCH (n) SET n.x = 1", "SET"),
    ("MATCH (n) DELETE n", "DELETE"),
    ("match (n) detach delete n", "DETACH"),
    ("MATCH (n) REMOVE n.x", "REMOVE"),
    ("DROP TABLE Task", "DROP"),
    ("ALTER TABLE Task ADD x INT64", "ALTER"),
    ("COPY Task FROM 'a.csv'", "COPY"),
    ("LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l", "LOAD"),
    ("LOAD FROM 'x.parquet' RETURN *", "LOAD"),
    ("INSTALL httpfs", "INSTALL"),
    ("ATTACH 'other.db' AS o", "ATTACH"),
    ("IMPORT DATABASE 'dir'", "IMPORT"),
    ("EXPORT DATABASE 'dir'", "EXPORT"),
    ("MATCH (n) FOREACH (x IN [1] | CREATE (:T))", "FOREACH"),
    ("CALL apoc.create.node(['X'], {}) YIELD node RETURN node", "CALL apoc.create.node"),
    ("CALL db.createLabel('X')", "CALL db.createLabel"),
    ("MATCH (n) CALL { CREATE (:X) } RETURN n", "CREATE"),
    ("MATCH (n) RETURN n; MATCH (m) DETACH DELETE m", "several statements"),
    ("MATCH (n) RETURN n; MATCH (m) RETURN m", "several statements"),
    ("BEGIN TRANSACTION", "BEGIN"),
    ("MATCH (n) WITH n /* c */ SET n.a = 'b' RETURN n", "SET"),
]


@pytest.mark.parametrize("cypher", READS)
def test_reading_queries_pass(cypher: str) -> None:
    check_read_only(cypher)


@pytest.mark.parametrize(("cypher", "named"), WRITES)
def test_writing_queries_are_rejected_naming_the_keyword(cypher: str, named: str) -> None:
    with pytest.raises(WriteRejectedError, match=named):
        check_read_only(cypher)


@pytest.mark.parametrize(
    ("cypher", "why"),
    [
        ("MATCH (a)-[*]->(b) RETURN b", "no upper bound"),
        ("MATCH (a)-[:DEPENDS_ON*]->(b) RETURN b", "no upper bound"),
        ("MATCH (a)-[:DEPENDS_ON*2..]->(b) RETURN b", "no upper bound"),
        ("MATCH (a)-[r:X* SHORTEST]->(b) RETURN b", "no upper bound"),
        ("MATCH (a)-[:DEPENDS_ON*1..6]->(b) RETURN b", "allows 6 hops; the limit is 5"),
        ("MATCH (a)-[:DEPENDS_ON*9]->(b) RETURN b", "allows 9 hops"),
    ],
)
def test_traversals_must_be_bounded(cypher: str, why: str) -> None:
    with pytest.raises(UnboundedTraversalError, match=why):
        check_read_only(cypher)


def test_max_hops_is_configurable() -> None:
    check_read_only("MATCH (a)-[*1..8]->(b) RETURN b", max_hops=8)
    with pytest.raises(UnboundedTraversalError, match="limit is 2"):
        check_read_only("MATCH (a)-[*1..3]->(b) RETURN b", max_hops=2)
    check_read_only("MATCH (a)-[*]->(b) RETURN b", max_hops=None)


def test_empty_query_and_tokens() -> None:
    with pytest.raises(WriteRejectedError, match="empty"):
        check_read_only("  // nothing\n")
    kinds = [(t.kind, t.text) for t in tokenize("MATCH (n:`a``b`) WHERE n.x = 'a;b' RETURN $p // c")]
    assert ("ident", "`a``b`") in kinds and ("string", "'a;b'") in kinds and ("param", "$p") in kinds
    assert all(t != ("punct", ";") for t in kinds)
