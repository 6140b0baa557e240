"""The Cypher audit of issue 12 as data, and a fingerprint of everything an attack could change.

Shared by tests/graphdb/test_cypher_fuzz.py and the audit re-run in bench/cypher_sandbox.py.
Every attack is a read-only query someone (a CLI user, a Python caller, an LLM writing Cypher,
an HTTP client) could send; none may change the graph, its catalog or a file, or take the
caller's process down.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where Ladybug 0.22 keeps installed extensions, under $HOME (UNINSTALL deletes from here).
EXTENSION_DIR = Path(".lbdb") / "extension" / "0.22.0" / "linux_amd64"


@dataclass(frozen=True)
class Attack:
    kind: str  # the attack class, a row of the audit table
    name: str
    cypher: str
    params: dict[str, Any] = field(default_factory=dict)


# The attack classes: the rows of the audit table in docs/security.md.
EXTENSIONS = "extensions (files under $HOME, downloads)"
CATALOG = "catalog writes"
DATA = "data writes"
CONTROL = "database/session control"
FILES = "file and setting reads"
PARSER = "parser crash (segfault)"
MEMORY = "memory exhaustion"
TIME = "runaway time"


def _nest(open_: str, close: str, n: int, closed: bool = True) -> str:
    return "RETURN " + open_ * n + "1" + (close * n if closed else "")


AUDIT: list[Attack] = [
    # 1. extensions: files under $HOME and downloads
    Attack(EXTENSIONS, "UNINSTALL json", "UNINSTALL json"),
    Attack(EXTENSIONS, "UPDATE json", "UPDATE json"),
    Attack(EXTENSIONS, "INSTALL json", "INSTALL json"),
    Attack(EXTENSIONS, "LOAD EXTENSION", "LOAD EXTENSION json"),
    Attack(EXTENSIONS, "LOAD EXTENSION path", "LOAD EXTENSION '/tmp/evil.lbug_extension'"),
    Attack(EXTENSIONS, "EXPLAIN UNINSTALL", "EXPLAIN UNINSTALL json"),
    Attack(EXTENSIONS, "after UNION", "MATCH (n) RETURN n UNION UNINSTALL json"),
    # 2. the catalog
    Attack(CATALOG, "COMMENT ON", "COMMENT ON TABLE Team IS 'owned'"),
    Attack(CATALOG, "CREATE NODE TABLE", "CREATE NODE TABLE X(id INT64, PRIMARY KEY(id))"),
    Attack(CATALOG, "DROP TABLE", "DROP TABLE Team"),
    Attack(CATALOG, "ALTER TABLE", "ALTER TABLE Team ADD x INT64"),
    Attack(CATALOG, "CREATE MACRO", "CREATE MACRO m(x) AS x + 1"),
    Attack(CATALOG, "CREATE SEQUENCE", "CREATE SEQUENCE s"),
    # 3. the data
    Attack(DATA, "CREATE", "CREATE (:Team {id: 'evil', name: 'x'})"),
    Attack(DATA, "MERGE", "MATCH (a:Team), (b:Team) MERGE (a)-[:MEMBER]->(b)"),
    Attack(DATA, "SET", "MATCH (n:Team) SET n.name = 'x'"),
    Attack(DATA, "WITH * SET", "MATCH (n:Team) WITH * SET n.name = 'x' RETURN n"),
    Attack(DATA, "DETACH DELETE", "MATCH (n) DETACH DELETE n"),
    Attack(DATA, "REMOVE", "MATCH (n:Team) REMOVE n.name"),
    Attack(DATA, "CALL { CREATE }", "MATCH (n) CALL { CREATE (:Team {id: 'z'}) } RETURN n"),
    Attack(DATA, "FOREACH", "MATCH (n) FOREACH (x IN [1] | CREATE (:Team {id: 'f'}))"),
    Attack(DATA, "second statement", "MATCH (n) RETURN n; MATCH (m) DETACH DELETE m"),
    Attack(DATA, "comment ended by CR", "MATCH (n:Team) //x\rSET n.name = 'cr' RETURN n"),
    Attack(DATA, "nextval()", "RETURN nextval('s')"),
    Attack(DATA, "quoted nextval()", "RETURN `nextval`('s')"),
    # 4. database and session control
    Attack(CONTROL, "CHECKPOINT", "CHECKPOINT"),
    Attack(CONTROL, "BEGIN", "BEGIN TRANSACTION"),
    Attack(CONTROL, "ROLLBACK", "ROLLBACK"),
    Attack(CONTROL, "ATTACH", "ATTACH '/tmp/other.lbug' AS o (dbtype lbug)"),
    Attack(CONTROL, "USE", "USE o"),
    Attack(CONTROL, "EXPORT DATABASE", "EXPORT DATABASE '/tmp/kvgraph-export'"),
    Attack(CONTROL, "IMPORT DATABASE", "IMPORT DATABASE '/tmp/kvgraph-export'"),
    Attack(CONTROL, "CALL option", "CALL threads=1"),
    Attack(CONTROL, "setseed()", "RETURN setseed(0.5)"),
    # 5. reading files and settings
    Attack(FILES, "LOAD FROM", "LOAD FROM '/etc/passwd' RETURN *"),
    Attack(FILES, "MATCH ... LOAD FROM", "MATCH (n) LOAD FROM '/etc/passwd' RETURN *"),
    Attack(FILES, "LOAD CSV", "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l"),
    Attack(FILES, "COPY", "COPY Team FROM '/etc/passwd'"),
    Attack(FILES, "read_csv", "CALL read_csv('/etc/passwd') RETURN *"),
    Attack(FILES, "current_setting", "CALL current_setting('home_directory') RETURN *"),
    Attack(FILES, "apoc function", "RETURN apoc.load.json('file:///etc/passwd')"),
    # 6. the parser
    Attack(PARSER, "5,000 nested (", _nest("(", ")", 5000)),
    Attack(PARSER, "3,000 nested [", _nest("[", "]", 3000)),
    Attack(PARSER, "5,000 open (", _nest("(", ")", 5000, closed=False)),
    Attack(PARSER, "2,000 nested (", _nest("(", ")", 2000)),
    Attack(PARSER, "control character", "MATCH (n) RETURN n \x00 // x"),
    # 7. memory
    Attack(MEMORY, "range 3e8", "UNWIND range(1,300000000) AS x RETURN count(x)"),
    Attack(MEMORY, "range $n", "UNWIND range(1, $n) AS x RETURN count(x)", {"n": 300_000_000}),
    Attack(MEMORY, "400 KB OR chain", "MATCH (n) WHERE " + " OR ".join(["n.id = 'x'"] * 30000) + " RETURN n"),
    Attack(MEMORY, "repeat 1e9", "RETURN size(repeat('x', 1000000000))"),
    Attack(MEMORY, "lpad 1e9", "RETURN size(lpad('x', 1000000000, 'y'))"),
    Attack(MEMORY, "huge integer", "RETURN " + "9" * 400),
    # 8. time
    Attack(TIME, "50,000-term sum", "RETURN 1" + "+1" * 50000),
    Attack(TIME, "unbounded *", "MATCH (a)-[*]->(b) RETURN count(*)"),
    Attack(TIME, "*1..30", "MATCH (a)-[*1..30]->(b) RETURN count(*)"),
    Attack(TIME, "quantified {1,}", "MATCH ((a)-->(b)){1,} RETURN count(*)"),
]

# Attacks that pass the guard on purpose: only the engine's limits and the sandbox stand in the way.
PAST_THE_GUARD: list[Attack] = [
    Attack(MEMORY, "range(1, 1000*1000*1000)", "UNWIND range(1, 1000*1000*1000) AS x RETURN count(x)"),
    Attack(MEMORY, "lpad 1e4*1e5", "RETURN size(lpad('x', 10000*100000, 'y'))"),
    Attack(TIME, "cartesian 1e12", "UNWIND range(1,1000000) AS a UNWIND range(1,1000000) AS b RETURN count(*)"),
]


def fake_home(home: Path) -> Path:
    """An extension 'installed' under ``home`` (what UNINSTALL json deleted in the audit)."""
    ext = home / EXTENSION_DIR / "json"
    ext.mkdir(parents=True, exist_ok=True)
    (ext / "libjson.lbug_extension").write_bytes(b"not a real extension")
    return ext


def file_hashes(*roots: Path) -> dict[str, str]:
    """Path -> sha256 of every file under ``roots`` (directories as entries too, so a new empty one shows).

    SQLite's shared-memory index (``-shm``) and an empty ``-wal`` appear when another connection
    opens a database of the knowledge base read-only; they hold no data and are left out.
    """
    out: dict[str, str] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.name.endswith("-shm") or (p.name.endswith("-wal") and p.stat().st_size == 0):
                continue
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def graph_state(store: Any) -> dict[str, Any]:
    """The graph's catalog and contents as the store's own (trusted, in-process) handle sees them."""
    schema = store.schema()
    nodes = {label: sorted(store.nodes(label), key=lambda kv: kv[0]) for label in sorted(schema.node_labels)}
    edges = store.edges()
    return {
        "labels": {k: [(p.name, p.type) for p in v] for k, v in schema.node_labels.items()},
        "rels": {k: [(p.name, p.type) for p in v] for k, v in schema.rel_types.items()},
        "endpoints": schema.rel_endpoints,
        "nodes": nodes,
        "edges": sorted(zip(edges.src.tolist(), edges.dst.tolist(), edges.types)),
    }


def build_graph(store: Any) -> None:
    """A small graph of teams, people and tasks (no dataset needed)."""
    store.upsert_nodes("Team", [{"id": f"t{i}", "name": f"Team {i}"} for i in range(3)])
    store.upsert_nodes("Person", [{"id": f"p{i}", "name": f"Person {i}", "age": 20 + i} for i in range(6)])
    store.upsert_nodes(
        "Task",
        [{"id": f"k{i}", "name": f"Task {i}", "status": ["open", "done"][i % 2], "w": i / 2} for i in range(8)],
    )
    store.upsert_edges("MEMBER", [(f"Person:p{i}", f"Team:t{i % 3}", {"since": 2020 + i}) for i in range(6)])
    store.upsert_edges("ASSIGNED_TO", [(f"Task:k{i}", f"Team:t{i % 3}", {}) for i in range(8)])
    store.upsert_edges("DEPENDS_ON", [(f"Task:k{i}", f"Task:k{i + 1}", {}) for i in range(7)])
