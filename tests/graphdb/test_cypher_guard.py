"""The read-only guard decides from the text alone; keywords in strings, comments and names are data.

It is an allow-list: statements, clauses, functions and procedures it does not know are refused,
and size limits are checked before the engine parses anything.
"""

from __future__ import annotations

import pytest

from kvgraph.graphdb.base import WriteRejectedError
from kvgraph.graphdb.guard import (
    CypherLimits,
    FunctionNotAllowedError,
    QueryLimitError,
    UnboundedTraversalError,
    check_limits,
    check_read_only,
    tokenize,
)

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


# ---------------------------------------------------------------------- the allow-list (issue 12)

# Reading queries an LLM or a person writes, in both dialects: none may be refused.
MORE_READS = [
    "MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team) WHERE t.status = 'open' "
    "RETURN team.name, COUNT(t) AS OpenTasks ORDER BY OpenTasks DESC LIMIT 1",
    "MATCH (a:T)-[e:R* SHORTEST 1..3]->(b:T) WHERE a.id = 1 AND b.id = 3 RETURN length(e)",
    "MATCH (a:T) WHERE a.id = 1 RETURN COUNT { MATCH (a)-->(b) }",
    "MATCH (a:T) WHERE EXISTS { MATCH (a)-->(b) } RETURN count(a)",
    "RETURN CAST(1 AS STRING), list_transform([1, 2], x -> x + 1)",
    "MATCH p = shortestPath((a)-[*..5]-(b)) RETURN p",
    "MATCH (n) RETURN n {.name, .age}, n {.*, x}",
    "UNWIND [1, 2] AS x WITH x WHERE x > 1 RETURN collect(x) AS xs",
    "MATCH (n) RETURN CASE WHEN n.x > 1 THEN 'a' ELSE 'b' END AS y, reduce(t = 0, x IN [1, 2] | t + x)",
    "MATCH (n) WHERE any(x IN n.tags WHERE x = 'a') AND NOT n.x IS NULL RETURN n",
    "MATCH (n:A|B)-[r:KNOWS|LIKES]->() RETURN r",
    "CALL db.labels() YIELD label RETURN label",
    "MATCH (n) RETURN date.truncate('day', n.d), toLower(n.name) =~ 'x.*'",
    "OPTIONAL MATCH (n) RETURN n UNION ALL MATCH (m) RETURN m",
    "MATCH (n) RETURN count(*) AS c SKIP 1 LIMIT $k",
    "MATCH (n) WITH * RETURN n",
    "RETURN [1, 2, 3][0:2], range(1, 1000000), -9223372036854775807",
    "CALL show_tables() RETURN name, comment",  # column names spelled like statements are data
    "UNWIND [1] AS update RETURN update",
    "MATCH (n) CALL (n) { MATCH (n)-->(m) RETURN m } RETURN m",
    "MATCH ((a)-->(b)){1,3} RETURN a",
]

# The audit's statements and their relatives: each refused, naming what.
REFUSED = [
    ("UNINSTALL json", "UNINSTALL"),
    ("UPDATE json", "UPDATE"),
    ("COMMENT ON TABLE Task IS 'x'", "COMMENT"),
    ("CHECKPOINT", "CHECKPOINT"),
    ("LOAD EXTENSION json", "LOAD"),
    ("EXPLAIN UNINSTALL json", "UNINSTALL"),
    ("PROFILE CHECKPOINT", "CHECKPOINT"),
    ("MATCH (n) WITH * SET n.name = 'y' RETURN n", "SET"),  # runs on Ladybug: * then a clause
    ("MATCH (n) RETURN n UNION UNINSTALL json", "json"),
    ("MATCH (n) RETURN n FOO", "FOO"),  # an unknown clause is refused by default
    ("MATCH (n) CALL { UNINSTALL json } RETURN n", "UNINSTALL"),
    ("MATCH (n) LOAD FROM '/etc/passwd' RETURN *", "LOAD"),
    ("CALL threads=1", "CALL threads"),
    ("CALL read_csv('/etc/passwd') RETURN *", "CALL read_csv"),
    ("CALL current_setting('home_directory') RETURN *", "CALL current_setting"),
    ("MATCH (n) //x\rSET n.x = 1", "SET"),  # a comment ended by a lone CR: the guard reads on
]


@pytest.mark.parametrize("cypher", MORE_READS)
def test_reading_queries_of_both_dialects_pass(cypher: str) -> None:
    check_read_only(cypher)


@pytest.mark.parametrize(("cypher", "named"), REFUSED)
def test_statements_and_clauses_off_the_list_are_refused(cypher: str, named: str) -> None:
    with pytest.raises(WriteRejectedError, match=named):
        check_read_only(cypher)


@pytest.mark.parametrize(
    "cypher",
    [
        "MATCH (n) RETURN nextval('s')",
        "RETURN {a: nextval('s')}",  # a map value
        "RETURN [1][0:nextval('s')]",  # a slice bound
        "RETURN `nextval`('s')",  # a quoted name is still a call
        "RETURN setseed(0.5)",
        "RETURN apoc.cypher.runFirstColumn('CREATE (n)', {})",
        "RETURN my_macro(1)",
    ],
)
def test_functions_off_the_allow_list_are_refused(cypher: str) -> None:
    with pytest.raises(FunctionNotAllowedError, match="allow-list"):
        check_read_only(cypher)


@pytest.mark.parametrize(
    ("cypher", "params", "why"),
    [
        ("RETURN " + "(" * 5000 + "1" + ")" * 5000, None, "characters"),
        ("RETURN " + "[" * 2500, None, "tokens"),
        ("RETURN " + "(" * 40 + "1" + ")" * 40, None, "nested deeper than 32"),
        ("RETURN 1" + " + 1" * 600, None, "more than 500 operators"),
        ("RETURN 99999999999999999999", None, "larger than"),
        ("UNWIND range(1,300000000) AS x RETURN count(x)", None, "300,000,000 items"),
        ("UNWIND range(-5, $n, 2) AS x RETURN x", {"n": 10_000_000}, "5,000,003 items"),
        ("RETURN repeat('x', $n)", {"n": 10**9}, "repeat"),
        ("RETURN lpad('x', 1000000000, 'y')", None, "lpad"),
        ("MATCH (n) RETURN n \x00", None, "control character"),
    ],
)
def test_size_limits_refuse_before_the_engine_parses(cypher: str, params: dict | None, why: str) -> None:
    with pytest.raises(QueryLimitError, match=why):
        check_read_only(cypher, params=params)


def test_limits_are_configurable_and_unknown_sizes_pass() -> None:
    big = CypherLimits(max_chars=100_000, max_tokens=100_000, max_depth=100, max_terms=10_000)
    check_limits("RETURN " + "(" * 40 + "1" + ")" * 40, big)
    # a size the guard cannot compute (an expression, a parameter it was not given) is left to the sandbox
    check_read_only("UNWIND range(1, 1000*1000*1000) AS x RETURN count(x)")
    check_read_only("UNWIND range(1, $n) AS x RETURN count(x)")
    with pytest.raises(QueryLimitError, match="limit is 10"):
        check_read_only("RETURN range(1, 20)", limits=CypherLimits(max_size=10))


def test_messages_are_one_line_and_short() -> None:
    with pytest.raises(QueryLimitError) as e:
        check_read_only("MATCH (n) WHERE " + " OR ".join(["n.id = 1"] * 20000) + " RETURN n")
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
