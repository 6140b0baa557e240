"""Where the Cypher of kvgraph's graph engines differs, in one place.

kvgraph writes one Cypher for every backend; what differs is handled here (Bolt servers) or in
:mod:`kvgraph.graphdb.cypher_import` (Ladybug's schema-first DDL). Every difference met so far:

Each item: Ladybug (embedded) / Neo4j 5 / ArcadeDB 26 (Bolt v4.4, openCypher).

* Schema. Ladybug: typed node and relationship tables must exist before a write (the import
  planner creates them). Neo4j and ArcadeDB: schema-free (ArcadeDB creates types on first write).
* Node key. Ladybug: ``Label:primary-key``. Neo4j: ``elementId(n)`` (``4:uuid:n``). ArcadeDB:
  ``elementId(n)`` is the record id (``#5:0``).
* Labels. Ladybug: a node has one label; ``labels(n)`` returns it as a string (``label(n)`` too),
  so ``labels(n)[0]`` would be its first character. Neo4j, ArcadeDB: ``labels(n)`` is a list. The
  Bolt backend's own queries use ``labels(n)[0]``; Ladybug's use ``label(n)``; portable questions
  name labels in patterns (``MATCH (n:Task)``) instead.
* ``elementId()``: does not exist in Ladybug (its backend builds keys from the primary key).
* Reserved words. Ladybug: ``order``, ``on``... must be quoted where they are names
  (``quote_reserved_variables``). Neo4j, ArcadeDB: none met.
* Schema procedures. Ladybug: ``show_tables`` / ``table_info``. Neo4j:
  ``db.schema.nodeTypeProperties()``. ArcadeDB: missing (``Unknown procedure``), and
  ``db.propertyKeys()`` returns nothing; so the schema of every Bolt server is sampled from the
  data (:func:`sampled_schema`), the same way for all.
* Read transactions. Ladybug: a read-only handle in a sandbox process. Neo4j: refuses writes
  (``WriteOnReadOnlyAccess``). ArcadeDB: **does not** refuse writes in a read transaction, so
  the allow-list guard is the only barrier; every untrusted query passes it first, on every server.
* Transaction timeouts (``unit_of_work(timeout=...)``). Ladybug: the sandbox process is stopped.
  Neo4j: enforced by the server. ArcadeDB: ignored, so kvgraph stops waiting (QueryTimeoutError)
  and drops the connection; the server finishes the query on its own.
* Several statements in one query (``RETURN 1; RETURN 2``): a syntax error on both servers;
  import scripts are split at top-level ``;`` first.
* ``EXPLAIN``: Ladybug parses and binds; Neo4j parses and plans; ArcadeDB parses (syntax only).
* Index on a key property: Ladybug's primary key; Neo4j and ArcadeDB both accept
  ``CREATE INDEX name IF NOT EXISTS FOR (n:L) ON (n.p)`` (MERGE by key becomes an index lookup).
* Paths in results: Ladybug ``{_nodes, _rels}``; both Bolt servers send ``Path`` structures.

Detection is by the server's Bolt agent string (``Neo4j/5.26.0 compatible (ArcadeDB 26.10.2)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kvgraph.graphdb.base import GraphSchema, PropertyInfo
from kvgraph.graphdb.types import merge_types, quote, value_type

SCHEMA_SAMPLE = 1_000  # nodes (or relationships) per label (or type) read to describe the schema


@dataclass(frozen=True)
class BoltDialect:
    """What kvgraph may rely on from one kind of Bolt server."""

    name: str  # neo4j | arcadedb | other
    version: str
    # the server stops a transaction past unit_of_work(timeout=...)
    server_timeouts: bool
    # a read transaction refuses writes on the server (defence in depth behind the guard)
    read_transactions_refuse_writes: bool

    def key_index(self, label: str, key: str) -> str:
        """The statement that makes MERGE on ``(:label {key})`` an index lookup instead of a label scan."""
        name = f"kvgraph_{label}_{key}".lower()
        return f"CREATE INDEX {quote(name)} IF NOT EXISTS FOR (n:{quote(label)}) ON (n.{quote(key)})"


def detect(agent: str) -> BoltDialect:
    """The dialect of a server from its Bolt agent string."""
    text = agent or ""
    if "ArcadeDB" in text:
        version = text.rsplit("ArcadeDB", 1)[1].strip(" )")
        return BoltDialect("arcadedb", version, server_timeouts=False, read_transactions_refuse_writes=False)
    if text.startswith("Neo4j/"):
        return BoltDialect(
            "neo4j", text.split("/", 1)[1].split()[0], server_timeouts=True, read_transactions_refuse_writes=True
        )
    # Memgraph and others: assume nothing beyond the guard and a client-side timeout
    return BoltDialect("other", text, server_timeouts=False, read_transactions_refuse_writes=False)


def sampled_schema(read: Callable[[str, dict[str, Any]], list[list[Any]]]) -> GraphSchema:
    """The schema as seen in the data: labels, relationship types, their properties and endpoints.

    ``read(cypher, params)`` runs a trusted read and returns rows. Each label and relationship
    type is described from up to SCHEMA_SAMPLE of its elements, so the cost stays bounded on a
    large graph; property types are kvgraph's column type names (STRING, INT64, DOUBLE...).
    """
    s = GraphSchema()
    labels = sorted({str(r[0]) for r in read("MATCH (n) UNWIND labels(n) AS l RETURN DISTINCT l", {})})
    for label in labels:
        rows = read(f"MATCH (n:{quote(label)}) RETURN properties(n) LIMIT {SCHEMA_SAMPLE}", {})
        s.node_labels[label] = _properties(r[0] for r in rows)
    types = sorted({str(r[0]) for r in read("MATCH ()-[r]->() RETURN DISTINCT type(r)", {})})
    for rel in types:
        rows = read(
            f"MATCH (a)-[r:{quote(rel)}]->(b) RETURN properties(r), labels(a)[0], labels(b)[0] LIMIT {SCHEMA_SAMPLE}",
            {},
        )
        s.rel_types[rel] = _properties(r[0] for r in rows)
        pairs: list[tuple[str, str]] = []
        for _, a, b in rows:
            if (a, b) not in pairs:
                pairs.append((a, b))
        s.rel_endpoints[rel] = pairs
    return s


def _properties(rows: Any) -> list[PropertyInfo]:
    types: dict[str, list[str | None]] = {}
    for props in rows:
        for name, value in (props or {}).items():
            try:
                types.setdefault(name, []).append(value_type(value))
            except ValueError:  # a server type kvgraph has no column type for (a point, a duration)
                types.setdefault(name, []).append("ANY")
    return [PropertyInfo(name, merge_types(ts) or "ANY") for name, ts in types.items()]
