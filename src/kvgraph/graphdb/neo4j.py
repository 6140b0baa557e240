"""A Bolt server (Neo4j, ArcadeDB) behind the GraphStore protocol, through the official ``neo4j`` driver.

Read-only queries pass the same allow-list guard as with Ladybug (statements, clauses, functions
such as ``apoc.*`` and procedures off the list are refused, as are oversized queries) and then run
in a read transaction (``session.execute_read``). Neo4j refuses writes there too; ArcadeDB does
not, so for it the guard is the barrier (:mod:`kvgraph.graphdb.dialect` lists every difference).
No sandbox process: the engine runs in the server, whose own memory and transaction limits apply.
Timeouts: Neo4j enforces ``unit_of_work(timeout=...)``; for servers that do not, kvgraph stops
waiting after the timeout, raises QueryTimeoutError and drops that connection (the server may
still finish the query). A node key is the server's ``elementId``. Bolt servers are schema-free,
so Cypher import scripts run as they are; the schema is sampled from the data.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    QueryResult,
    QueryTimeoutError,
    WriteRejectedError,
)
from kvgraph.graphdb.cypher_import import analyze_script
from kvgraph.graphdb.dialect import BoltDialect, detect, sampled_schema
from kvgraph.graphdb.guard import DEFAULT_MAX_HOPS, check_read_only
from kvgraph.graphdb.types import check_name, quote
from kvgraph.transport import redact_secrets, redact_url, url_secrets


class Neo4jGraphStore:
    """A :class:`~kvgraph.graphdb.base.GraphStore` on a server that speaks Bolt and Cypher."""

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
        self._auth = (user or "neo4j", password or "") if (user or password) else None
        self._user = user or "neo4j"
        self._lock = threading.Lock()
        self._closed = False
        self._driver = self._connect()
        self.dialect: BoltDialect = detect(self._driver.get_server_info().agent or "")
        self._indexed: set[tuple[str, str]] = set()

    def _connect(self) -> Any:
        try:
            driver = self._neo4j.GraphDatabase.driver(self.uri, auth=self._auth)
            driver.verify_connectivity()
        except Exception as e:  # the password never appears: only the URI and the driver's reason
            secrets = [*url_secrets(self.uri), *([self._auth[1]] if self._auth else [])]
            raise GraphError(
                redact_secrets(
                    f"cannot connect to the Bolt server at {redact_url(self.uri)} as {self._user}: "
                    f"{type(e).__name__}: {e}",
                    secrets,
                )
            ) from None
        return driver

    def __repr__(self) -> str:
        return f"Neo4jGraphStore({redact_url(self.uri)!r}, database={self.database!r}, read_only={self.read_only})"

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
            check_read_only(cypher, self.max_hops, params=params)
        elif self.read_only:
            raise ReadOnlyError(f"{self.uri}: a write query needs a writable graph store (it was opened read-only)")
        return self._run(cypher, params, write=not read_only, timeout_s=timeout_s, max_rows=max_rows)

    def _run(
        self,
        cypher: str,
        params: Mapping[str, Any] | None,
        *,
        write: bool,
        timeout_s: float | None,
        max_rows: int | None,
    ) -> QueryResult:
        """Run trusted (or already guarded) Cypher in a read or write transaction."""
        neo4j = self._neo4j

        def work(tx: Any) -> QueryResult:
            res = tx.run(cypher, dict(params or {}))
            columns = list(res.keys())
            rows: list[list[Any]] = []
            truncated = False
            for rec in res:
                if max_rows is not None and len(rows) >= max_rows:
                    truncated = True
                    break
                rows.append([_plain(v) for v in rec.values()])
            return QueryResult(columns, rows, truncated)

        if timeout_s and self.dialect.server_timeouts:
            work = neo4j.unit_of_work(timeout=timeout_s)(work)
        driver = self._driver

        def run() -> QueryResult:
            with driver.session(database=self.database) as session:
                result: QueryResult = session.execute_write(work) if write else session.execute_read(work)
                return result

        try:
            if not timeout_s or self.dialect.server_timeouts:
                return run()
            return self._run_with_deadline(run, timeout_s, cypher)
        except neo4j.exceptions.Neo4jError as e:
            raise _graph_error(e, cypher, timeout_s) from None
        except neo4j.exceptions.DriverError as e:
            raise GraphError(f"{self.uri}: {type(e).__name__}: {e}\nQuery: {cypher}") from None

    def _run_with_deadline(self, run: Callable[[], QueryResult], timeout_s: float, cypher: str) -> QueryResult:
        """For servers that ignore transaction timeouts: wait at most ``timeout_s``, then give up on
        the connection (a fresh driver serves the next query; the old one closes when the query ends)."""
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kvgraph-bolt")
        future = pool.submit(run)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            with self._lock:
                stale, self._driver = self._driver, self._connect()
            future.add_done_callback(lambda _f: stale.close())
            raise QueryTimeoutError(f"query ran past its timeout of {timeout_s} s: {cypher}") from None
        finally:
            pool.shutdown(wait=False)

    def _read(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """A trusted read of kvgraph's own (schema, nodes, edges): no guard, no row limit."""
        return self._run(cypher, params, write=False, timeout_s=None, max_rows=None).rows

    def explain(self, cypher: str, params: Mapping[str, Any] | None = None) -> None:
        check_read_only(cypher, self.max_hops, params=params)
        self._run("EXPLAIN " + cypher, params, write=False, timeout_s=DEFAULT_TIMEOUT_S, max_rows=0)

    def schema(self) -> GraphSchema:
        return sampled_schema(lambda q, p: self._read(q, p))

    # ------------------------------------------------------------------ writes

    def _write(self, cypher: str, params: Mapping[str, Any] | None = None, max_rows: int | None = None) -> QueryResult:
        if self.read_only:
            raise ReadOnlyError(f"{self.uri}: a write needs a writable graph store (it was opened read-only)")
        return self.query(cypher, params, read_only=False, timeout_s=None, max_rows=max_rows)

    def import_cypher(self, script: str) -> int:
        plan = analyze_script(script)
        if not plan.statements:
            raise InvalidInputError("import script is empty")
        for stmt in plan.statements:
            self._write(stmt, max_rows=0)
        return len(plan.statements)

    def _ensure_key_index(self, label: str, key: str) -> None:
        if (label, key) not in self._indexed:
            # a server without Cypher index DDL still MERGEs, by label scan
            with contextlib.suppress(GraphError):
                self._write(self.dialect.key_index(label, key), max_rows=0)
            self._indexed.add((label, key))

    def upsert_nodes(self, label: str, rows: Sequence[Mapping[str, Any]], key: str = "id") -> list[str]:
        check_name(label, "node label")
        check_name(key, "key property")
        for i, row in enumerate(rows):
            if row.get(key) is None:
                raise InvalidInputError(f"{label} row {i}: the key property {key!r} is missing or null")
        if not rows:
            return []
        self._ensure_key_index(label, key)
        res = self._write(
            f"UNWIND $rows AS r MERGE (n:{quote(label)} {{{quote(key)}: r.{quote(key)}}}) SET n += r "
            "RETURN elementId(n)",
            {"rows": [dict(r) for r in rows]},
        )
        return [r[0] for r in res.rows]

    def upsert_edges(self, rel_type: str, edges: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        check_name(rel_type, "relationship type")
        batch = [{"s": s, "d": d, "p": dict(p or {})} for s, d, p in edges]
        if not batch:
            return 0
        res = self._write(
            "UNWIND $rows AS r MATCH (a) WHERE elementId(a) = r.s MATCH (b) WHERE elementId(b) = r.d "
            f"MERGE (a)-[e:{quote(rel_type)}]->(b) SET e += r.p RETURN count(e)",
            {"rows": batch},
        )
        n = int(res.scalar())
        if n != len(batch):
            raise InvalidInputError(f"{len(batch) - n} of {len(batch)} edges refer to node keys that do not exist")
        return n

    def delete_nodes(self, node_keys: Sequence[str]) -> int:
        res = self._write(
            "MATCH (n) WHERE elementId(n) IN $ks DETACH DELETE n RETURN count(*)", {"ks": list(node_keys)}
        )
        return int(res.scalar())

    def node_key_expr(self, var: str) -> str:
        return f"elementId({var})"

    def match_keys_clause(self, var: str, param: str) -> str:
        return f"elementId({var}) IN ${param}"

    def nodes(self, label: str, properties: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        check_name(label, "node label")
        rows = self._read(f"MATCH (n:{quote(label)}) RETURN elementId(n), properties(n)")
        return [(k, props if properties is None else {p: props.get(p) for p in properties}) for k, props in rows]

    def edges(self, rel_types: Sequence[str] | None = None) -> EdgeList:
        nodes = self._read("MATCH (n) RETURN elementId(n), labels(n)[0]")
        keys = [r[0] for r in nodes]
        labels = [r[1] for r in nodes]
        index = {k: i for i, k in enumerate(keys)}
        where = "WHERE type(r) IN $types " if rel_types is not None else ""
        rows = self._read(
            f"MATCH (a)-[r]->(b) {where}RETURN elementId(a), elementId(b), type(r)", {"types": list(rel_types or [])}
        )
        src = np.array([index[r[0]] for r in rows], dtype=np.int64)
        dst = np.array([index[r[1]] for r in rows], dtype=np.int64)
        return EdgeList(keys=keys, labels=labels, src=src, dst=dst, types=[r[2] for r in rows])


def _graph_error(e: Any, cypher: str, timeout_s: float | None) -> GraphError:
    """The driver's error as kvgraph's: syntax, timeout, refused write, or the engine's reason."""
    code = e.code or ""
    message = e.message or str(e)
    if "Timeout" in code or "TransactionTimedOut" in code:
        return QueryTimeoutError(f"query ran past its timeout of {timeout_s} s: {cypher}")
    if "Syntax" in code or "Statement" in code:
        return CypherSyntaxError(f"{message}\nQuery: {cypher}")
    if "WriteOnReadOnlyAccess" in code or "Forbidden" in code:
        return WriteRejectedError(f"{message}\nQuery: {cypher}")
    return GraphError(f"{message}\nQuery: {cypher}")


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
