"""A :class:`~kvgraph.store.base.VectorStore` on PostgreSQL with the pgvector extension.

Open it with a URI: ``PostgresVectorStore.open("postgresql://user@host:5432/db?schema=kb1")``.
``schema`` (kvgraph's own parameter, taken out before connecting) names the Postgres schema that
holds this knowledge base's tables (:mod:`kvgraph.store.pg_schema`); every other part of the URI
is libpq's. The password comes from the URI, ``PGPASSWORD`` or ``~/.pgpass``; it never appears
in a message, a log line or a repr.

What it does, against the embedded store (the contract in tests/contract/ checks each):

* **Same**: ids, upserts (same id replaces), delete by id and by document, every metadata filter
  with the same results (translated to SQL by :mod:`kvgraph.store.pg_sql`, values always bound
  as parameters), dense search with the same similarities (cosine: inner product of unit
  vectors; dot; L2 as ``1 / (1 + distance)``), MMR, hybrid fusion, batch queries, counts,
  the user keys of :meth:`get_meta` / :meth:`set_meta`, one writer at a time
  (StoreLockedError for a second one: a session advisory lock held while the store is open).
* **A document's nodes appear together**: :meth:`add` runs in one transaction (delete the
  replaced documents and ids, insert the new rows through COPY), so a reader sees all of a
  document's chunks or none, and a killed writer leaves the last committed add.
* **Sparse search is Postgres full-text search, not kvgraph's BM25**: the text's English
  ``tsvector`` (stemmed, stop words dropped) is matched against the query's lexemes OR-ed
  together, ranked by ``ts_rank`` with length normalisation. Every hit contains at least one
  query term (after stemming); scores are ts_rank values, not BM25 scores, so the order of
  close hits can differ from the embedded store's.
* **Dense search** uses an HNSW index (pgvector) once the table is larger than
  ``exact_limit`` rows, else an exact scan. A filter is counted first (up to ``exact_limit``
  rows): a selective one is answered exactly (pgvector before 0.8 filters HNSW results after
  the walk and loses recall), a broad one by HNSW with ``ef_search`` raised to
  ``FILTER_POOL_FACTOR * k / selectivity``, or with iterative index scans on pgvector 0.8+.
  An ANN search that returns fewer than k hits is redone exactly. ``result.plan`` says which.
* **Strings that Postgres cannot store** (NUL characters, lone surrogates) in a node's text or
  metadata are refused with InvalidInputError; the embedded store accepts them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from kvgraph.errors import (
    DimensionMismatchError,
    InvalidInputError,
    KvgraphError,
    MissingDependencyError,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
)
from kvgraph.filters import FilterSpec, is_match_all, parse_filter
from kvgraph.schema import Node, metadata_to_json, validate_id, validate_metadata
from kvgraph.store import fusion
from kvgraph.store.base import Metric, QueryMode, VectorStoreQuery, VectorStoreQueryResult
from kvgraph.store.mmr import mmr
from kvgraph.store.pg_sql import check_schema_name, check_storable, filter_sql, redact_uri, split_uri

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "kvgraph"
MAX_EF = 1_000  # pgvector's largest hnsw.ef_search
FILTER_POOL_FACTOR = 4.0  # as kvgraph.store.planner: ef = factor * k / selectivity keeps recall
SAMPLE_ROWS = 5_000  # rows sampled to estimate a broad filter's selectivity
PLAN_TTL_S = 2.0  # how long the planner reuses the node count and the index's existence
INDEX_DEFAULTS: dict[str, int] = {"hnsw_m": 16, "ef_construction": 64, "ef_search": 40, "exact_limit": 10_000}
STRATEGIES = ("auto", "exact", "ann")


class PostgresError(KvgraphError):
    """The Postgres server refused a connection or a statement; the message carries its reason."""


@dataclass(frozen=True)
class PgPlan:
    kind: str  # "exact", "ann", or "probe" (exact if the filter allows few rows, else ann)
    ef: int = 0
    iterative: bool = False
    selectivity: float | None = None


def choose_plan(
    *,
    k: int,
    n_live: int,
    n_allowed: int | None,
    selectivity: float | None,
    has_index: bool,
    ef_search: int,
    ef_override: int | None,
    strategy: str,
    exact_limit: int,
    iterative: bool,
) -> PgPlan:
    """Exact scan or HNSW, and how deep (a pure function, tested on its own).

    ``n_allowed`` is the filter's count capped at ``exact_limit`` (None: no filter), and
    ``selectivity`` the sampled fraction of rows it keeps when the cap was reached.
    """
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    ef = max(ef_override or ef_search, k)
    if strategy == "exact" or not has_index:
        return PgPlan("exact")
    if strategy == "ann":
        return PgPlan("ann", min(ef, MAX_EF), iterative and n_allowed is not None)
    if n_live <= exact_limit or (n_allowed is not None and n_allowed < exact_limit):
        return PgPlan("exact")  # a scan of this many rows is as quick as the index, and exact
    if n_allowed is None:
        return PgPlan("ann", min(ef, MAX_EF))
    if iterative:  # pgvector 0.8+: the index walk continues until k rows pass the filter
        return PgPlan("ann", min(ef, MAX_EF), True)
    s = max(selectivity or 0.0, exact_limit / max(n_live, 1))
    wanted = max(ef, math.ceil(FILTER_POOL_FACTOR * k / s))
    if wanted > MAX_EF:
        return PgPlan("exact")
    return PgPlan("ann", wanted)


class PostgresVectorStore:
    """A vector store in a Postgres schema. Open with :meth:`open`; close it when done."""

    schema: str
    uri: str  # without the password
    path: str  # the URI and the schema: what messages name, like an embedded store's directory
    read_only: bool
    dim: int
    metric: Metric
    server_version: str
    pgvector_version: str
    hnsw_m: int
    ef_construction: int
    ef_search: int
    exact_limit: int
    _iterative: bool
    _closed: bool
    _lock_conn: Any
    _mutex: threading.RLock
    _psycopg: Any
    _t: dict[str, Any]
    _pool: Any
    _want_index: bool
    _index_ready: bool
    _sizes_at: tuple[float, tuple[int, bool]] | None = None

    def __init__(self) -> None:  # use open()
        raise TypeError("use PostgresVectorStore.open(uri)")

    # ------------------------------------------------------------------ opening / closing

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        schema: str | None = None,
        dim: int | None = None,
        metric: str | Metric | None = None,
        read_only: bool = False,
        hnsw_m: int | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
        exact_limit: int | None = None,
        build_index: bool = True,
        pool_size: int = 4,
    ) -> Self:
        """Connect, create or upgrade the schema (unless ``read_only``) and take the writer lock.

        ``dim`` and ``metric`` are fixed when the store is created (dim may come from the first
        embedding added). ``build_index=False`` defers the HNSW index to :meth:`build_index`
        (a bulk load is faster without it).
        """
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise MissingDependencyError("psycopg", "postgres") from e
        conninfo, own = split_uri(uri, ("schema",))
        self = object.__new__(cls)
        self.schema = check_schema_name(schema or own.get("schema") or DEFAULT_SCHEMA)
        self.uri = redact_uri(conninfo)
        self.path = f"{self.uri} schema {self.schema}"  # what messages name, like a store directory
        self.read_only = read_only
        self._closed = False
        self._lock_conn = None
        self._mutex = threading.RLock()
        self._psycopg = psycopg
        from psycopg import sql

        self._t = {name: sql.SQL("{s}." + name).format(s=sql.Identifier(self.schema)) for name in ("nodes", "meta")}
        try:
            boot = psycopg.connect(conninfo, autocommit=True, application_name="kvgraph")
        except psycopg.Error as e:
            raise PostgresError(f"cannot connect to Postgres at {self.uri}: {_reason(e)}") from None
        try:
            self._bootstrap(boot, read_only, dim, metric)
            if not read_only:
                self._take_writer_lock(conninfo)
        except BaseException:
            boot.close()
            self._release_writer_lock()
            raise
        boot.close()
        given = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        given["exact_limit"] = exact_limit
        self._init_settings(conninfo, given)
        self._want_index = build_index
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"application_name": "kvgraph"},
            configure=self._configure,
            open=True,
            name=f"kvgraph-{self.schema}",
        )
        self._index_ready = False
        if self.dim and build_index and not read_only:
            self._index_ready = self.build_index() or self.has_index()
        return self

    def _bootstrap(self, conn: Any, read_only: bool, dim: int | None, metric: str | Metric | None) -> None:
        from kvgraph.store.pg_schema import LATEST, SchemaVersionError, applied_versions, migrate

        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            if read_only:
                raise PostgresError(f"{self.uri}: the pgvector extension is not installed in this database")
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except self._psycopg.Error as e:
                raise PostgresError(
                    f"{self.uri}: cannot create the pgvector extension ({_reason(e)}); "
                    "ask the database owner to run CREATE EXTENSION vector"
                ) from None
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        self.pgvector_version = str(row[0])
        self.server_version = str(conn.execute("SHOW server_version").fetchone()[0])
        self._iterative = _version(self.pgvector_version) >= (0, 8)
        if read_only:
            versions = applied_versions(conn, self.schema)
            if not versions:
                raise InvalidInputError(f"{self.path}: no kvgraph store here (schema or its tables missing)")
            if versions[-1] > LATEST:
                raise SchemaVersionError(
                    f"Postgres schema {self.schema!r} has migration {versions[-1]}, newer than this kvgraph knows "
                    f"({LATEST}); upgrade kvgraph"
                )
        else:
            migrate(conn, self.schema)
        meta = self._read_meta(conn)
        if "metric" not in meta:
            if read_only:
                raise InvalidInputError(f"{self.path}: store was never initialised")
            if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
                raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
            m = Metric(metric or Metric.COSINE)
            with conn.transaction():
                conn.execute(
                    self._sql("INSERT INTO {meta} (key, value) VALUES ('metric', %s) ON CONFLICT (key) DO NOTHING"),
                    (m.value,),
                )
            meta = self._read_meta(conn)
            if dim and not int(meta.get("dim", 0)):
                with conn.transaction():
                    self._fix_dim(conn, dim)
                meta = self._read_meta(conn)
        self.metric = Metric(meta["metric"])
        if metric is not None and Metric(metric) != self.metric:
            raise InvalidInputError(
                f"{self.path}: store uses metric {self.metric.value!r}, not {Metric(metric).value!r}"
            )
        self.dim = int(meta.get("dim", 0))
        if dim is not None and self.dim and dim != self.dim:
            raise DimensionMismatchError(self.dim, dim, f"opening {self.path}")

    def _init_settings(self, conninfo: str, given: dict[str, int | None]) -> None:
        """Index settings persist with the store; values passed to open() replace them."""
        import psycopg

        with psycopg.connect(conninfo, autocommit=True, application_name="kvgraph") as conn:
            meta = self._read_meta(conn)
            settings = {k: int(given[k] or meta.get(k) or d) for k, d in INDEX_DEFAULTS.items()}
            changed = {k: v for k, v in settings.items() if meta.get(k) != str(v)}
            if changed and not self.read_only:
                with conn.transaction():
                    for k, v in changed.items():
                        conn.execute(
                            self._sql(
                                "INSERT INTO {meta} (key, value) VALUES (%s, %s) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                            ),
                            (k, str(v)),
                        )
        self.hnsw_m = settings["hnsw_m"]
        self.ef_construction = settings["ef_construction"]
        self.ef_search = settings["ef_search"]
        self.exact_limit = settings["exact_limit"]

    def _configure(self, conn: Any) -> None:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.read_only = self.read_only  # the server refuses writes on a read-only store's sessions
        conn.commit()

    def _take_writer_lock(self, conninfo: str) -> None:
        """One writer per schema: a session advisory lock, released when this connection closes
        (also when the process dies, as the server then drops the session)."""
        import psycopg

        from kvgraph.locking import command_name

        conn = psycopg.connect(conninfo, autocommit=True, application_name=f"kvgraph-writer:{command_name()}")
        key = f"kvgraph-writer:{self.schema}"
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        if not (got and got[0]):
            holder = conn.execute(
                "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (hashtext(%s)::bigint & 4294967295)::oid",
                (key,),
            ).fetchone()
            conn.close()
            who = f"pid {holder[0]} on the server, {holder[1]}" if holder else "another session"
            raise StoreLockedError(
                f"{self.path}: another process holds the writer lock ({who}); "
                "open the store read-only, or stop that process"
            )
        self._lock_conn = conn

    def _release_writer_lock(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            finally:
                self._lock_conn = None

    def close(self) -> None:
        """Return the connections and release the writer lock; the object is unusable after."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._pool.close()
            finally:
                self._release_writer_lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresVectorStore({self.uri!r}, schema={self.schema!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ plumbing

    def _sql(self, text: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(**self._t)

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        if self._closed:
            raise StoreClosedError(f"{self!r} was closed")
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.errors.ReadOnlySqlTransaction:
            raise ReadOnlyError(f"{self.path}: opened read-only") from None
        except psycopg.errors.UndefinedTable:
            raise PostgresError(f"{self.path}: the store's tables are gone (dropped on the server?)") from None
        except psycopg.Error as e:
            raise PostgresError(f"{self.path}: {_reason(e)}") from None

    def _read_meta(self, conn: Any) -> dict[str, str]:
        return {k: v for k, v in conn.execute(self._sql("SELECT key, value FROM {meta}"))}

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self!r} was closed")
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: opened read-only")

    def _fix_dim(self, conn: Any, dim: int) -> None:
        """The first vectors fix the column's dimension (an HNSW index needs one)."""
        from psycopg import sql

        conn.execute(
            sql.SQL("ALTER TABLE {nodes} ALTER COLUMN embedding TYPE vector({d})").format(
                nodes=self._t["nodes"], d=sql.Literal(int(dim))
            )
        )
        conn.execute(self._sql("INSERT INTO {meta} (key, value) VALUES ('dim', %s)"), (str(dim),))

    def _index_name(self) -> str:
        return "nodes_embedding_hnsw"

    def has_index(self) -> bool:
        """Whether the HNSW index exists."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s", (self.schema, self._index_name())
            ).fetchone()
            conn.commit()
        return row is not None

    def build_index(self) -> bool:
        """Create the HNSW index if it is missing (a bulk load is faster before it); True if built now."""
        from psycopg import sql

        self._check_writable()
        if not self.dim or self.has_index():
            return False
        ops = "vector_l2_ops" if self.metric is Metric.L2 else "vector_ip_ops"
        stmt = sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {nodes} USING hnsw (embedding {ops}) "
            "WITH (m = {m}, ef_construction = {efc})"
        ).format(
            name=sql.Identifier(self._index_name()),
            nodes=self._t["nodes"],
            ops=sql.SQL(ops),
            m=sql.Literal(self.hnsw_m),
            efc=sql.Literal(self.ef_construction),
        )
        with self._conn() as conn:
            conn.execute(stmt)
            conn.execute(sql.SQL("ANALYZE {nodes}").format(nodes=self._t["nodes"]))
            conn.commit()
        self._sizes_at = None
        return True

    # ------------------------------------------------------------------ writing

    def add(self, nodes: Sequence[Node], replace_docs: Sequence[str] = ()) -> list[str]:
        """Insert or replace nodes (same id replaces) and delete ``replace_docs``' nodes, in one transaction."""
        if isinstance(nodes, Node):
            nodes = [nodes]
        if not isinstance(nodes, Sequence) or not all(isinstance(n, Node) for n in nodes):
            raise InvalidInputError("add() takes a list of Node objects")
        if isinstance(replace_docs, str):
            replace_docs = [replace_docs]
        self._check_writable()
        for d in replace_docs:
            validate_id(d, "replace_docs entry")
        rows, vecs = self._validate(nodes)
        with self._mutex, self._conn() as conn:
            with conn.transaction():
                if vecs is not None and not self.dim:
                    self._fix_dim(conn, vecs.shape[1])
                removed = 0
                if replace_docs:
                    cur = conn.execute(
                        self._sql("DELETE FROM {nodes} WHERE ref_doc_id = ANY(%s)"), (list(replace_docs),)
                    )
                    removed += cur.rowcount
                if rows:
                    ids = [r[0] for r in rows]
                    cur = conn.execute(self._sql("DELETE FROM {nodes} WHERE id = ANY(%s)"), (ids,))
                    removed += cur.rowcount
                    self._copy_rows(conn, rows, vecs)
                delta = len(rows) - removed
                if delta:
                    conn.execute(
                        self._sql("UPDATE {meta} SET value = (value::bigint + %s)::text WHERE key = 'count'"), (delta,)
                    )
            if vecs is not None and not self.dim:
                self.dim = int(vecs.shape[1])
        self._sizes_at = None  # the planner sees this write at once
        if self._want_index and not self._index_ready and rows:
            self._index_ready = self.build_index() or self.has_index()
        return [n.id for n in nodes]

    def _validate(self, nodes: Sequence[Node]) -> tuple[list[tuple[Any, ...]], np.ndarray | None]:
        """Everything is checked before anything is written: rows for COPY and the vectors."""
        if not nodes:
            return [], None
        seen: set[str] = set()
        embs = []
        for n in nodes:
            validate_id(n.id)
            if n.id in seen:
                raise InvalidInputError(f"node id {n.id!r} appears twice in one add(); ids must be unique per batch")
            seen.add(n.id)
            if n.embedding is None:
                raise InvalidInputError(f"node {n.id!r} has no embedding; embed it before adding")
            embs.append(n.embedding)
        try:
            vecs = np.asarray(embs, dtype=np.float32)
        except (ValueError, TypeError):
            raise InvalidInputError("embeddings must be flat lists of numbers of one length") from None
        if vecs.ndim != 2:
            raise InvalidInputError(f"embeddings must be flat lists of numbers of one length, got shape {vecs.shape}")
        if self.dim and vecs.shape[1] != self.dim:
            raise DimensionMismatchError(self.dim, vecs.shape[1], f"node {nodes[0].id!r}")
        finite = np.isfinite(vecs).all(axis=1)
        if not finite.all():
            raise InvalidInputError(
                f"node {nodes[int(np.flatnonzero(~finite)[0])].id!r}: embedding contains NaN or infinity"
            )
        norms = np.linalg.norm(vecs.astype(np.float64), axis=1)
        if self.metric is Metric.COSINE:
            zero = np.flatnonzero(norms == 0)
            if len(zero):
                raise InvalidInputError(f"node {nodes[zero[0]].id!r}: zero embedding cannot be used with cosine metric")
            vecs = (vecs / norms[:, None]).astype(np.float32)
        rows = []
        for n, norm in zip(nodes, norms):
            if not isinstance(n.text, str):
                raise InvalidInputError(f"node {n.id!r}: text must be a string, got {type(n.text).__name__}")
            md = validate_metadata(n.metadata, n.id)
            if n.ref_doc_id is not None and not isinstance(n.ref_doc_id, str):
                raise InvalidInputError(f"node {n.id!r}: ref_doc_id must be a string or None, got {n.ref_doc_id!r}")
            meta = check_storable(n.id, n.text, md)
            try:
                md_json = metadata_to_json(md)
                rel = n.relationships or {}
                rel_json = json.dumps({str(k.value if hasattr(k, "value") else k): v for k, v in rel.items()})
            except (TypeError, ValueError) as e:
                raise InvalidInputError(f"node {n.id!r}: metadata or relationships not JSON-serialisable: {e}") from e
            if "\x00" in rel_json or (n.ref_doc_id is not None and "\x00" in n.ref_doc_id) or "\x00" in n.id:
                raise InvalidInputError(f"node {n.id!r}: ids hold a NUL character, which Postgres cannot store")
            rows.append((n.id, n.ref_doc_id, n.text, md_json, rel_json, meta, float(norm)))
        return rows, vecs

    def _copy_rows(self, conn: Any, rows: list[tuple[Any, ...]], vecs: np.ndarray | None) -> None:
        from psycopg.types.json import Jsonb

        cols = "(id, ref_doc_id, text, metadata_json, relationships_json, meta, norm, embedding)"
        with conn.cursor() as cur, cur.copy(self._sql("COPY {nodes} " + cols + " FROM STDIN (FORMAT BINARY)")) as cp:
            cp.set_types(["text", "text", "text", "text", "text", "jsonb", "float4", "vector"])
            for row, vec in zip(rows, vecs if vecs is not None else []):
                cp.write_row((*row[:5], Jsonb(row[5], dumps=_identity), row[6], vec))

    def delete(self, ids: Sequence[str]) -> int:
        """Delete nodes by id; unknown ids are ignored. Returns how many were deleted."""
        if isinstance(ids, str):
            ids = [ids]
        ids = [validate_id(i) for i in ids]
        return self._delete("id = ANY(%s)", list(ids))

    def delete_ref_doc(self, ref_doc_id: str) -> int:
        """Delete every node of document ``ref_doc_id``. Returns how many."""
        validate_id(ref_doc_id, "ref_doc_id")
        return self._delete("ref_doc_id = %s", ref_doc_id)

    def _delete(self, where: str, param: Any) -> int:
        self._check_writable()
        with self._mutex, self._conn() as conn, conn.transaction():
            n = int(conn.execute(self._sql("DELETE FROM {nodes} WHERE " + where), (param,)).rowcount)
            if n:
                conn.execute(
                    self._sql("UPDATE {meta} SET value = (value::bigint - %s)::text WHERE key = 'count'"), (n,)
                )
        self._sizes_at = None
        return n

    def set_meta(self, key: str, value: str) -> None:
        """Store a user-level setting (kept apart from the store's own keys)."""
        self._check_writable()
        with self._conn() as conn, conn.transaction():
            conn.execute(
                self._sql(
                    "INSERT INTO {meta} (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                (f"user:{key}", value),
            )

    def vacuum(self) -> dict[str, int]:
        """``VACUUM ANALYZE`` the nodes table (Postgres reclaims dead rows itself; this also refreshes statistics)."""
        from psycopg import sql

        self._check_writable()
        with self._conn() as conn:
            conn.commit()
            conn.autocommit = True
            try:
                conn.execute(sql.SQL("VACUUM ANALYZE {nodes}").format(nodes=self._t["nodes"]))
            finally:
                conn.autocommit = False
        return {"removed_rows": 0, "rows": self.count()}

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        with self._conn() as conn:
            row = conn.execute(self._sql("SELECT value FROM {meta} WHERE key = 'count'")).fetchone()
            conn.commit()
        return int(row[0]) if row else 0

    def get_meta(self, key: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute(self._sql("SELECT value FROM {meta} WHERE key = %s"), (f"user:{key}",)).fetchone()
            conn.commit()
        return str(row[0]) if row else None

    def get(self, ids: Sequence[str]) -> list[Node | None]:
        """Nodes for the ids, in order, with embeddings; None where an id is unknown."""
        if isinstance(ids, str):
            ids = [ids]
        ids = [validate_id(i) for i in ids]
        with self._conn() as conn:
            rows = conn.execute(
                self._sql(_SELECT_NODE + ", embedding FROM {nodes} WHERE id = ANY(%s)"), (ids,)
            ).fetchall()
            conn.commit()
        found = {r[0]: self._node(r, with_embedding=True) for r in rows}
        return [found.get(i) for i in ids]

    def get_ref_doc(self, ref_doc_id: str, with_embedding: bool = False) -> list[Node]:
        """Every node of a document, in insertion order."""
        validate_id(ref_doc_id, "ref_doc_id")
        cols = _SELECT_NODE + (", embedding" if with_embedding else "")
        with self._conn() as conn:
            rows = conn.execute(self._sql(cols + " FROM {nodes} WHERE ref_doc_id = %s ORDER BY seq"), (ref_doc_id,))
            out = [self._node(r, with_embedding) for r in rows]
            conn.commit()
        return out

    def ids(self, filters: FilterSpec = None, doc_ids: Sequence[str] | None = None) -> list[str]:
        """Ids of every node matching ``filters`` (and in ``doc_ids``), in insertion order."""
        where, params = self._where(VectorStoreQuery(filters=filters, doc_ids=doc_ids))
        with self._conn() as conn:
            out = [
                r[0] for r in conn.execute(self._sql("SELECT id FROM {nodes} WHERE " + where + " ORDER BY seq"), params)
            ]
            conn.commit()
        return out

    def doc_counts(self) -> dict[str, int]:
        """Nodes per document id."""
        with self._conn() as conn:
            q = "SELECT ref_doc_id, count(*) FROM {nodes} WHERE ref_doc_id IS NOT NULL GROUP BY ref_doc_id"
            out = {str(d): int(c) for d, c in conn.execute(self._sql(q))}
            conn.commit()
        return out

    def documents(self) -> dict[str, tuple[int, str | None]]:
        """Each document id: its node count and the file it came from (``file_path``), if any."""
        with self._conn() as conn:
            q = (
                "SELECT ref_doc_id, count(*), min(meta ->> 'file_path') FROM {nodes} "
                "WHERE ref_doc_id IS NOT NULL GROUP BY ref_doc_id"
            )
            out = {str(d): (int(c), p) for d, c, p in conn.execute(self._sql(q))}
            conn.commit()
        return out

    def stats(self) -> dict[str, Any]:
        with self._conn() as conn:
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"{self.schema}.nodes",)).fetchone()[0]
            conn.commit()
        return {
            "path": self.path,
            "backend": "postgres",
            "server_version": self.server_version,
            "pgvector_version": self.pgvector_version,
            "count": self.count(),
            "dead_rows": 0,
            "dim": self.dim,
            "metric": self.metric.value,
            "ann_active": self.has_index(),
            "ef_search": self.ef_search,
            "exact_limit": self.exact_limit,
            "iterative_scan": self._iterative,
            "disk_bytes": int(size),
            "read_only": self.read_only,
        }

    def _node(self, row: Sequence[Any], with_embedding: bool = False) -> Node:
        node_id, ref, text, md, rels, norm = row[:6]
        emb = None
        if with_embedding:
            raw = row[6]
            vec = np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw, dtype=np.float32)
            emb = vec * np.float32(norm) if self.metric is Metric.COSINE else vec
        return Node(
            id=node_id,
            text=text,
            metadata=json.loads(md),
            embedding=emb,
            ref_doc_id=ref,
            relationships=json.loads(rels),
        )

    # ------------------------------------------------------------------ querying

    def _where(self, q: VectorStoreQuery) -> tuple[str, list[Any]]:
        tree = parse_filter(q.filters)
        parts: list[str] = []
        params: list[Any] = []
        if not is_match_all(tree):
            sql_text, p = filter_sql(tree)
            parts.append(sql_text)
            params += p
        if q.node_ids is not None:
            parts.append("id = ANY(%s)")
            params.append([validate_id(i) for i in q.node_ids])
        if q.doc_ids is not None:
            parts.append("ref_doc_id = ANY(%s)")
            params.append([validate_id(d, "doc id") for d in q.doc_ids])
        return (" AND ".join(parts) if parts else "TRUE"), params

    def _query_vector(self, q: Any, where: str = "query_embedding") -> np.ndarray:
        if q is None:
            raise InvalidInputError(f"{where} is required for this query mode")
        try:
            arr = np.asarray(q, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{where} must be a list of numbers") from None
        if arr.ndim != 1:
            raise InvalidInputError(f"{where} must be one flat vector, got shape {arr.shape}")
        if self.dim and arr.shape[0] != self.dim:
            raise DimensionMismatchError(self.dim, arr.shape[0], where)
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"{where} contains NaN or infinity")
        if self.metric is Metric.COSINE:
            norm = float(np.linalg.norm(arr.astype(np.float64)))
            if norm == 0:
                raise InvalidInputError(f"{where} is the zero vector; cosine similarity is undefined")
            arr = (arr / norm).astype(np.float32)
        return arr

    def query(self, query: VectorStoreQuery) -> VectorStoreQueryResult:
        """Top-k search in the mode the query asks for; see VectorStoreQuery and the module docstring."""
        k = query.similarity_top_k
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {k!r}")
        try:
            mode = QueryMode(query.mode)
        except ValueError:
            raise InvalidInputError(f"unknown query mode {query.mode!r}; use dense, sparse, hybrid or mmr") from None
        where = self._where(query)
        with self._conn() as conn:
            try:
                if mode is QueryMode.DENSE:
                    qv = self._query_vector(query.query_embedding)
                    hits, plan = self._dense(conn, qv, k, where, query)
                    return _result(hits, plan)
                if mode is QueryMode.SPARSE:
                    return _result(self._sparse(conn, query.query_str, k, where), "fts")
                if mode is QueryMode.HYBRID:
                    return self._hybrid(conn, query, k, where)
                return self._mmr(conn, query, k, where)
            finally:
                conn.rollback()

    def query_batch(
        self,
        embeddings: np.ndarray,
        similarity_top_k: int = 4,
        filters: FilterSpec = None,
        *,
        ef_search: int | None = None,
        strategy: str = "auto",
        exact: bool = False,
        node_ids: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[VectorStoreQueryResult]:
        """Dense top-k for many query embeddings: one connection, the filter counted once."""
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        qs = np.asarray(embeddings, dtype=np.float32)
        if qs.ndim != 2:
            raise InvalidInputError(f"embeddings must be a (queries, dim) matrix, got shape {qs.shape}")
        q = VectorStoreQuery(
            similarity_top_k=similarity_top_k,
            filters=filters,
            ef_search=ef_search,
            strategy=strategy,
            exact=exact,
            node_ids=node_ids,
            doc_ids=doc_ids,
        )
        vectors = [self._query_vector(v, f"query_embedding[{i}]") for i, v in enumerate(qs)]
        where = self._where(q)
        out = []
        with self._conn() as conn:
            try:
                plan = self._plan(conn, similarity_top_k, where, q)
                for qv in vectors:
                    hits, name = self._dense(conn, qv, similarity_top_k, where, q, plan)
                    out.append(_result(hits, name))
            finally:
                conn.rollback()
        return out

    # ---- dense ----

    def _distance(self) -> str:
        return "embedding <-> %s" if self.metric is Metric.L2 else "embedding <#> %s"

    def _similarity(self, d: float) -> float:
        return 1.0 / (1.0 + d) if self.metric is Metric.L2 else -d

    def _plan(
        self, conn: Any, k: int, where: tuple[str, list[Any]], q: VectorStoreQuery, probe: bool = False
    ) -> PgPlan:
        """The plan of a dense query. With a filter on a large indexed table, a sample of the table
        estimates its selectivity: a clearly broad filter goes to HNSW at once; otherwise ``probe``
        (one query) answers exactly in a single capped scan that falls back to HNSW when the filter
        allows more than exact_limit rows (kind "probe"), and a batch counts the allowed rows once."""
        n_live, has_index = self._sizes(conn)
        n_allowed = selectivity = None
        strategy = "exact" if q.exact else q.strategy
        restricted = where[0] != "TRUE"
        if restricted and strategy == "auto" and has_index and n_live > self.exact_limit:
            selectivity = self._sampled_selectivity(conn, where, n_live)
            if selectivity is not None and selectivity * n_live >= 2 * self.exact_limit:
                n_allowed = self.exact_limit  # clearly more than an exact scan should score
            elif probe:
                return PgPlan("probe", selectivity=selectivity)
            else:
                n_allowed = self._capped_count(conn, where)
        elif restricted:
            n_allowed = 0 if strategy == "auto" else None
        return self._choose(k, n_live, n_allowed if restricted else None, selectivity, has_index, q, strategy)

    def _choose(
        self,
        k: int,
        n_live: int,
        n_allowed: int | None,
        selectivity: float | None,
        has_index: bool,
        q: VectorStoreQuery,
        strategy: str,
    ) -> PgPlan:
        return choose_plan(
            k=k,
            n_live=n_live,
            n_allowed=n_allowed,
            selectivity=selectivity,
            has_index=has_index,
            ef_search=self.ef_search,
            ef_override=q.ef_search,
            strategy=strategy,
            exact_limit=self.exact_limit,
            iterative=self._iterative,
        )

    def _capped_count(self, conn: Any, where: tuple[str, list[Any]]) -> int:
        sql_where, params = where
        row = conn.execute(
            self._sql("SELECT count(*) FROM (SELECT 1 FROM {nodes} WHERE " + sql_where + " LIMIT %s) AS f"),
            [*params, self.exact_limit],
        ).fetchone()
        return int(row[0])

    def _sampled_selectivity(self, conn: Any, where: tuple[str, list[Any]], n_live: int) -> float | None:
        """The fraction of rows the filter keeps, in about SAMPLE_ROWS rows of random pages."""
        sql_where, params = where
        pct = min(100.0, 100.0 * SAMPLE_ROWS / max(n_live, 1))
        row = conn.execute(
            self._sql(
                "SELECT count(*) FILTER (WHERE " + sql_where + "), count(*) FROM {nodes} TABLESAMPLE SYSTEM (%s)"
            ),
            [*params, pct],
        ).fetchone()
        return float(row[0]) / row[1] if row and row[1] else None

    def _sizes(self, conn: Any) -> tuple[int, bool]:
        """(live nodes, whether the HNSW index exists), for the planner: one round trip, reused for
        PLAN_TTL_S (the plan depends on sizes only coarsely; the writer changes them in this process)."""
        now = time.monotonic()
        if self._sizes_at is not None and now - self._sizes_at[0] < PLAN_TTL_S:
            return self._sizes_at[1]
        row = conn.execute(
            self._sql(
                "SELECT (SELECT value FROM {meta} WHERE key = 'count'), "
                "EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s)"
            ),
            (self.schema, self._index_name()),
        ).fetchone()
        sizes = (int(row[0] or 0), bool(row[1]))
        self._sizes_at = (now, sizes)
        return sizes

    def _dense(
        self,
        conn: Any,
        qv: np.ndarray,
        k: int,
        where: tuple[str, list[Any]],
        q: VectorStoreQuery,
        plan: PgPlan | None = None,
        with_embedding: bool = False,
    ) -> tuple[list[tuple[Node, float]], str]:
        if not self.dim:
            return [], "empty"
        plan = plan or self._plan(conn, k, where, q, probe=True)
        sql_where, params = where
        cols = _SELECT_NODE + (", embedding" if with_embedding else "")
        if plan.kind == "probe":
            # one scan: the allowed rows (up to exact_limit + 1) scored exactly, counted as they come
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            probe = self._sql(
                "SELECT * FROM (SELECT "
                + cols.removeprefix("SELECT ")
                + ", "
                + self._distance()
                + " AS d, count(*) OVER () AS n FROM (SELECT * FROM {nodes} WHERE "
                + sql_where
                + " LIMIT %s) AS allowed) AS scored ORDER BY d LIMIT %s"
            )
            rows = conn.execute(probe, [qv, *params, self.exact_limit + 1, k]).fetchall()
            conn.execute("SELECT set_config('enable_indexscan', 'on', true)")
            if not rows or int(rows[0][-1]) <= self.exact_limit:
                hits = [(self._node(r, with_embedding), self._similarity(float(r[-2]))) for r in rows]
                return hits, "exact-subset"
            n_live, has_index = self._sizes(conn)
            strategy = "exact" if q.exact else q.strategy
            plan = self._choose(k, n_live, self.exact_limit, plan.selectivity, has_index, q, strategy)
        stmt = self._sql(
            cols + ", " + self._distance() + " AS d FROM {nodes} WHERE " + sql_where + " ORDER BY d LIMIT %s"
        )
        args = [qv, *params, k]
        restricted = sql_where != "TRUE"
        if plan.kind == "exact":
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            name = "exact-subset" if restricted else "exact"
        else:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(plan.ef),))
            if plan.iterative:
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
            name = f"{'ann-filtered' if restricted else 'ann'}(ef={plan.ef}{', iterative' if plan.iterative else ''})"
        rows = conn.execute(stmt, args).fetchall()
        if plan.kind == "ann" and len(rows) < k:
            # the walk ran out of candidates that pass the filter: ask again, exactly
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            exact_rows = conn.execute(stmt, args).fetchall()
            if len(exact_rows) > len(rows):
                rows = exact_rows
                name += "+exact"
            conn.execute("SELECT set_config('enable_indexscan', 'on', true)")
        hits = [(self._node(r, with_embedding), self._similarity(float(r[-1]))) for r in rows]
        return hits, name

    # ---- sparse / hybrid / mmr ----

    def _sparse(self, conn: Any, text: str | None, k: int, where: tuple[str, list[Any]]) -> list[tuple[Node, float]]:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("query_str (a non-empty string) is required for sparse and hybrid search")
        if "\x00" in text:
            text = text.replace("\x00", " ")
        sql_where, params = where
        stmt = self._sql(
            "WITH q AS (SELECT to_tsquery('simple', coalesce(string_agg(quote_literal(w), ' | '), '')) AS q "
            "FROM unnest(tsvector_to_array(to_tsvector('english'::regconfig, %s))) AS w) "
            + _SELECT_NODE
            + ", ts_rank(tsv, q.q, 1) AS score FROM {nodes}, q WHERE tsv @@ q.q AND "
            + sql_where
            + " ORDER BY score DESC, seq LIMIT %s"
        )
        rows = conn.execute(stmt, [text, *params, k]).fetchall()
        return [(self._node(r), float(r[-1])) for r in rows]

    def _hybrid(self, conn: Any, q: VectorStoreQuery, k: int, where: tuple[str, list[Any]]) -> VectorStoreQueryResult:
        pool = max(k * 4, q.sparse_top_k or 0, 20)
        qv = self._query_vector(q.query_embedding)
        if q.alpha is not None and not 0.0 <= q.alpha <= 1.0:
            raise InvalidInputError(f"alpha must be between 0 and 1, got {q.alpha!r}")
        dense, plan = self._dense(conn, qv, pool, where, q)
        sparse = self._sparse(conn, q.query_str, q.sparse_top_k or pool, where)
        nodes: dict[str, Node] = {}
        number: dict[str, int] = {}
        for n, _ in (*dense, *sparse):
            nodes.setdefault(n.id, n)
            number.setdefault(n.id, len(number))
        d_ids = np.array([number[n.id] for n, _ in dense], dtype=np.int64)
        s_ids = np.array([number[n.id] for n, _ in sparse], dtype=np.int64)
        if q.alpha is None:
            ids, scores = fusion.rrf([d_ids, s_ids])
            how = "rrf"
        else:
            d_sc = np.array([s for _, s in dense], dtype=np.float64)
            s_sc = np.array([s for _, s in sparse], dtype=np.float64)
            ids, scores = fusion.alpha_fusion(d_ids, d_sc, s_ids, s_sc, q.alpha)
            how = f"alpha={q.alpha}"
        by_number = {v: key for key, v in number.items()}
        hits = [(nodes[by_number[int(i)]], float(s)) for i, s in zip(ids[:k], scores[:k])]
        return _result(hits, f"hybrid({plan}+fts, {how})")

    def _mmr(self, conn: Any, q: VectorStoreQuery, k: int, where: tuple[str, list[Any]]) -> VectorStoreQueryResult:
        if not 0.0 <= q.mmr_threshold <= 1.0:
            raise InvalidInputError(f"mmr_threshold must be between 0 and 1, got {q.mmr_threshold!r}")
        qv = self._query_vector(q.query_embedding)
        fetch = max(q.mmr_fetch_k or 0, 4 * k, 20)
        pool, plan = self._dense(conn, qv, fetch, where, q, with_embedding=True)
        if not pool:
            return _result([], f"mmr({plan}, pool=0)")
        vecs = np.stack([np.asarray(n.embedding, dtype=np.float32) for n, _ in pool])
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        qn = qv / max(float(np.linalg.norm(qv)), 1e-12)
        picked = mmr(qn, unit, k, q.mmr_threshold)
        hits = []
        for i in picked:
            node, score = pool[int(i)]
            node.embedding = None  # query results carry no vectors, as the embedded store's
            hits.append((node, score))
        return _result(hits, f"mmr({plan}, pool={len(pool)})")


_SELECT_NODE = "SELECT id, ref_doc_id, text, metadata_json, relationships_json, norm"


def _result(hits: list[tuple[Node, float]], plan: str) -> VectorStoreQueryResult:
    return VectorStoreQueryResult(
        nodes=[n for n, _ in hits], similarities=[s for _, s in hits], ids=[n.id for n, _ in hits], plan=plan
    )


def _identity(text: Any) -> str:
    return str(text)


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _reason(e: Exception) -> str:
    """The server's or libpq's reason, without the connection string (it may hold a password)."""
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    lines = str(e).strip().splitlines()
    text = primary or (lines[0] if lines else type(e).__name__)
    return redact_uri(text) if "://" in text else text
