"""Neo4j behind the GraphStore protocol, through the official ``neo4j`` driver (imported lazily).

Read-only queries pass the same guard as with Ladybug and then run in a read transaction
(``session.execute_read``), so the server refuses writes too. Timeouts use the driver's
``Query(text, timeout=...)``, which the server enforces. A node key is Neo4j's ``elementId``.
Neo4j is schema-free, so Cypher import scripts run as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError, MissingDependencyError, ReadOnlyError, StoreClosedError
from kvgraph.graphdb.base import (
    DEFAULT_MAX_ROWS,
    DEFAULT_TIMEOUT_S,
    CypherSyntaxError,
    EdgeList,
    GraphError,
    GraphSchema,
    PropertyInfo,
    QueryResult,
    QueryTimeoutError,
)
from kvgraph.graphdb.cypher_import import analyze_script
from kvgraph.graphdb.guard import DEFAULT_MAX_HOPS, check_read_only
from kvgraph.graphdb.types import check_name, quote


class Neo4jGraphStore:
    """A :class:`~kvgraph.graphdb.base.GraphStore` on a Neo4j server."""

    def __init__(
        self,
        uri: str,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        *,
        read_only: bool = False,
        max_hops: int = DEFAULT_MAX_HOPS,
    ) -> None:
        try:
            import neo4j
        except ImportError as e:
            raise MissingDependencyError("neo4j", "neo4j") from e
        self._neo4j = neo4j
        self.uri = uri
        self.database = database
        self.read_only = read_only
        self.max_hops = max_hops
        auth = (user or "neo4j", password or "") if (user or password) else None
        try:
            self._driver = neo4j.GraphDatabase.driver(uri, auth=auth)
            self._driver.verify_connectivity()
        except Exception as e:  # the password never appears: only the URI and the driver's reason
            raise GraphError(
                f"cannot connect to Neo4j at {uri} as {user or 'neo4j'}: {type(e).__name__}: {e}"
            ) from None
        self._closed = False

    def __repr__(self) -> str:
        return f"Neo4jGraphStore({self.uri!r}, database={self.database!r}, read_only={self.read_only})"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._driver.close()

    def __enter__(self) -> Neo4jGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ queries

    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        read_only: bool = True,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        if self._closed:
            raise StoreClosedError(f"{self!r} was closed")
        if read_only:
            check_read_only(cypher, self.max_hops)
        elif self.read_only:
            raise ReadOnlyError(f"{self.uri}: a write query needs a writable graph store (it was opened read-only)")
        neo4j = self._neo4j
        q = neo4j.Query(cypher, timeout=timeout_s) if timeout_s else neo4j.Query(cypher)

        def work(tx: Any) -> QueryResult:
            res = tx.run(q, dict(params or {}))
            columns = list(res.keys())
            rows: list[list[Any]] = []
            truncated = False
            for rec in res:
                if max_rows is not None and len(rows) >= max_rows:
                    truncated = True
                    break
                rows.append([_plain(v) for v in rec.values()])
            return QueryResult(columns, rows, truncated)

        try:
            with self._driver.session(database=self.database) as session:
                result: QueryResult = session.execute_read(work) if read_only else session.execute_write(work)
                return result
        except neo4j.exceptions.ClientError as e:
            code = e.code or ""
            if "Timeout" in code or "TransactionTimedOut" in code:
                raise QueryTimeoutError(f"query ran past its timeout of {timeout_s} s: {cypher}") from None
            if "Syntax" in code or "Statement" in code:
                raise CypherSyntaxError(f"{e.message}\nQuery: {cypher}") from None
            if "WriteOnReadOnlyAccess" in code or "Forbidden" in code:
                from kvgraph.graphdb.base import WriteRejectedError

                raise WriteRejectedError(f"{e.message}\nQuery: {cypher}") from None
            raise GraphError(f"{e.message}\nQuery: {cypher}") from None
        except neo4j.exceptions.Neo4jError as e:
            raise GraphError(f"{e}\nQuery: {cypher}") from None

    def explain(self, cypher: str, params: Mapping[str, Any] | None = None) -> None:
        self.query("EXPLAIN " + cypher, params, read_only=True, max_rows=0)

    def schema(self) -> GraphSchema:
        s = GraphSchema()
        for r in self.query("CALL db.schema.nodeTypeProperties()", max_rows=None).records():
            for label in r["nodeLabels"] or []:
                props = s.node_labels.setdefault(label, [])
                if r["propertyName"] and all(p.name != r["propertyName"] for p in props):
                    props.append(PropertyInfo(r["propertyName"], "/".join(r["propertyTypes"] or [])))
        for r in self.query("CALL db.schema.relTypeProperties()", max_rows=None).records():
            rel = r["relType"].strip(":`")
            props = s.rel_types.setdefault(rel, [])
            if r["propertyName"] and all(p.name != r["propertyName"] for p in props):
                props.append(PropertyInfo(r["propertyName"], "/".join(r["propertyTypes"] or [])))
        res = self.query(
            "MATCH (a)-[r]->(b) RETURN DISTINCT type(r) AS t, labels(a)[0] AS a, labels(b)[0] AS b", max_rows=None
        )
        for t, a, b in res.rows:
            s.rel_endpoints.setdefault(t, []).append((a, b))
        return s

    # ------------------------------------------------------------------ writes

    def import_cypher(self, script: str) -> int:
        plan = analyze_script(script)
        for stmt in plan.statements:
            self.query(stmt, read_only=False, timeout_s=None, max_rows=0)
        return len(plan.statements)

    def upsert_nodes(self, label: str, rows: Sequence[Mapping[str, Any]], key: str = "id") -> list[str]:
        check_name(label, "node label")
        check_name(key, "key property")
        for i, row in enumerate(rows):
            if row.get(key) is None:
                raise InvalidInputError(f"{label} row {i}: the key property {key!r} is missing or null")
        res = self.query(
            f"UNWIND $rows AS r MERGE (n:{quote(label)} {{{quote(key)}: r.{quote(key)}}}) SET n += r "
            "RETURN elementId(n)",
            {"rows": [dict(r) for r in rows]},
            read_only=False,
            max_rows=None,
        )
        return [r[0] for r in res.rows]

    def upsert_edges(self, rel_type: str, edges: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        check_name(rel_type, "relationship type")
        batch = [{"s": s, "d": d, "p": dict(p or {})} for s, d, p in edges]
        if not batch:
            return 0
        res = self.query(
            "UNWIND $rows AS r MATCH (a) WHERE elementId(a) = r.s MATCH (b) WHERE elementId(b) = r.d "
            f"MERGE (a)-[e:{quote(rel_type)}]->(b) SET e += r.p RETURN count(e)",
            {"rows": batch},
            read_only=False,
        )
        n = int(res.scalar())
        if n != len(batch):
            raise InvalidInputError(f"{len(batch) - n} of {len(batch)} edges refer to node keys that do not exist")
        return n

    def delete_nodes(self, node_keys: Sequence[str]) -> int:
        res = self.query(
            "MATCH (n) WHERE elementId(n) IN $ks DETACH DELETE n RETURN count(*)",
            {"ks": list(node_keys)},
            read_only=False,
        )
        return int(res.scalar())

    def node_key_expr(self, var: str) -> str:
        return f"elementId({var})"

    def match_keys_clause(self, var: str, param: str) -> str:
        return f"elementId({var}) IN ${param}"

    def nodes(self, label: str, properties: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        check_name(label, "node label")
        res = self.query(f"MATCH (n:{quote(label)}) RETURN elementId(n), properties(n)", max_rows=None, timeout_s=None)
        out = []
        for k, props in res.rows:
            out.append((k, props if properties is None else {p: props.get(p) for p in properties}))
        return out

    def edges(self, rel_types: Sequence[str] | None = None) -> EdgeList:
        nodes = self.query("MATCH (n) RETURN elementId(n), labels(n)[0]", max_rows=None, timeout_s=None).rows
        keys = [r[0] for r in nodes]
        labels = [r[1] for r in nodes]
        index = {k: i for i, k in enumerate(keys)}
        where = "WHERE type(r) IN $types " if rel_types is not None else ""
        rows = self.query(
            f"MATCH (a)-[r]->(b) {where}RETURN elementId(a), elementId(b), type(r)",
            {"types": list(rel_types or [])},
            max_rows=None,
            timeout_s=None,
        ).rows
        src = np.array([index[r[0]] for r in rows], dtype=np.int64)
        dst = np.array([index[r[1]] for r in rows], dtype=np.int64)
        return EdgeList(keys=keys, labels=labels, src=src, dst=dst, types=[r[2] for r in rows])


def _plain(v: Any) -> Any:
    """Driver values → plain Python: nodes and relationships become property dicts with _label/_key."""
    from neo4j.graph import Node, Path, Relationship

    if isinstance(v, Node):
        d = dict(v.items())
        d["_label"] = next(iter(v.labels), None)
        d["_key"] = v.element_id
        return d
    if isinstance(v, Relationship):
        d = dict(v.items())
        d["_type"] = v.type
        d["_src"] = v.start_node.element_id if v.start_node is not None else None
        d["_dst"] = v.end_node.element_id if v.end_node is not None else None
        return d
    if isinstance(v, Path):
        return {"nodes": [_plain(n) for n in v.nodes], "relationships": [_plain(r) for r in v.relationships]}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if hasattr(v, "to_native"):
        return v.to_native()
    return v
