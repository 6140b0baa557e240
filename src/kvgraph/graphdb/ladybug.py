"""The embedded Cypher graph store: Ladybug (the maintained Kùzu fork) in a directory of the knowledge base.

Layout of the store directory: ``graph.lbug`` (Ladybug's database file, with its write-ahead log
``graph.lbug.wal`` while a writer has unflushed commits) and ``writer.lock`` (kvgraph's
:class:`~kvgraph.locking.WriterLock`, naming the writer process).

Ladybug is schema-first: a node label is a node table with a primary key, a relationship type a
rel table listing its (FROM, TO) label pairs. kvgraph's convention is that every node table it
creates keeps its primary key in a column named ``id`` (``SERIAL`` when the data has no key), so a
node key is ``Label:id`` and :meth:`LadybugGraphStore.node_key_expr` is one expression that binds
for every label. Tables created by hand with another primary key still work; then the key
expression becomes a ``CASE`` over labels, which binds only on variables without a label.

Concurrency, measured on 0.22: one writer process at a time (kvgraph's lock file refuses a second
one with the holder's pid and command line); a read-only open succeeds while a writer is open, and
a writer may open while readers are open; a reader sees what was committed when it opened (reopen
to see later commits). Should Ladybug's own file lock refuse an open, that is reported as
StoreLockedError naming the pid Ladybug gives.

Untrusted Cypher (``query(read_only=True)`` and :meth:`LadybugGraphStore.explain`) passes the guard
and then runs in a sandbox process on a read-only handle of the same files
(:mod:`kvgraph.graphdb.sandbox`), also when this store is the writer: Ladybug's read-only open is
its only read-only mode (0.22 has no read-only connection or ``BEGIN READ TRANSACTION``), and a
crash in its parser must not take the caller down. The store counts its writes; the sandbox
reopens its handle after each, so reads see every committed write. ``sandbox=False`` runs them
in-process (the sandbox worker itself, benchmarks).
"""

from __future__ import annotations

import decimal
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError, MissingDependencyError, ReadOnlyError, StoreClosedError, StoreLockedError
from kvgraph.graphdb.base import (
    DEFAULT_MAX_ROWS,
    DEFAULT_TIMEOUT_S,
    CypherSyntaxError,
    EdgeList,
    GraphError,
    GraphSchema,
    PropertyInfo,
    QueryAbortedError,
    QueryResult,
    QueryTimeoutError,
)
from kvgraph.graphdb.guard import DEFAULT_LIMITS, DEFAULT_MAX_HOPS, CypherLimits, check_read_only
from kvgraph.graphdb.sandbox import DEFAULT_SANDBOX_LIMITS, CypherSandbox, SandboxLimits
from kvgraph.graphdb.types import check_name, coerce, merge_types, quote, value_type
from kvgraph.locking import WriterLock

DB_FILE = "graph.lbug"
LOCK_FILE = "writer.lock"
KEY_COLUMN = "id"

_SYNTAX_PREFIXES = ("Parser exception", "Binder exception", "Catalog exception")
_OUT_OF_MEMORY = ("std::bad_alloc", "Buffer manager exception: Unable to allocate memory")
_LOCK_HELD_RE = re.compile(r"Lock is held by PID (\d+)")


class _TableInfo:
    def __init__(self, name: str, kind: str, columns: dict[str, str], pk: str | None) -> None:
        self.name = name
        self.kind = kind  # NODE or REL
        self.columns = columns  # name -> type, in table order
        self.pk = pk


class LadybugGraphStore:
    """A :class:`~kvgraph.graphdb.base.GraphStore` over an embedded Ladybug database. Use :meth:`open`."""

    def __init__(
        self,
        path: Path,
        db: Any,
        conn: Any,
        lock: WriterLock | None,
        read_only: bool,
        max_hops: int,
        *,
        cypher_limits: CypherLimits = DEFAULT_LIMITS,
        sandbox: SandboxLimits | None = DEFAULT_SANDBOX_LIMITS,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.max_hops = max_hops
        self.cypher_limits = cypher_limits
        self._db = db
        self._conn = conn
        self._lock = lock
        self._mutex = threading.RLock()
        self._tables: dict[str, _TableInfo] | None = None
        self._table_ids: dict[int, str] | None = None
        self._closed = False
        self._tx_depth = 0
        self._sandbox_limits = sandbox
        self._sandbox: CypherSandbox | None = None
        self._writes = 0  # bumped by every write, so the sandbox knows to reopen its read-only handle

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(
        cls,
        path: str | Path,
        read_only: bool = False,
        *,
        max_hops: int = DEFAULT_MAX_HOPS,
        sandbox: bool = True,
        sandbox_limits: SandboxLimits = DEFAULT_SANDBOX_LIMITS,
        cypher_limits: CypherLimits = DEFAULT_LIMITS,
        buffer_pool_bytes: int | None = None,
        max_threads: int | None = None,
    ) -> LadybugGraphStore:
        """Open (a writer creates) the graph store in directory ``path``.

        A writer takes kvgraph's lock file first, so a second writer process gets StoreLockedError
        naming the holder; a read-only open needs an existing graph and opens Ladybug read-only.
        ``sandbox`` runs untrusted reads in a worker process (module doc); ``cypher_limits`` are the
        guard's size limits; ``buffer_pool_bytes`` and ``max_threads`` go to Ladybug (default: its own).
        """
        try:
            import ladybug
        except ImportError as e:  # pragma: no cover - ladybug is a dependency of the graph extra
            raise MissingDependencyError("ladybug", "graph") from e
        path = Path(path)
        db_file = path / DB_FILE
        lock: WriterLock | None = None
        if read_only:
            if not db_file.exists():
                raise GraphError(f"{path}: no graph here yet; import one first (kvgraph graph import FILE)")
        else:
            path.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(path / LOCK_FILE)
            lock.acquire()
        options: dict[str, Any] = {}
        if buffer_pool_bytes:
            options["buffer_pool_size"] = buffer_pool_bytes
        if max_threads:
            options["max_num_threads"] = max_threads
        try:
            db = ladybug.Database(str(db_file), read_only=read_only, **options)
            conn = ladybug.Connection(db)
        except RuntimeError as e:
            if lock is not None:
                lock.release()
            msg = str(e)
            m = _LOCK_HELD_RE.search(msg)
            if m:
                who = "a reader" if not read_only else "another process"
                raise StoreLockedError(
                    f"{path}: {who} (pid {m.group(1)}) has the graph database open, and Ladybug lets no "
                    f"{'writer' if not read_only else 'reader'} in meanwhile; close that process and retry"
                ) from None
            raise GraphError(f"{path}: cannot open the graph database: {msg}") from None
        return cls(
            path,
            db,
            conn,
            lock,
            read_only,
            max_hops,
            cypher_limits=cypher_limits,
            sandbox=sandbox_limits if sandbox else None,
        )

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                if self._sandbox is not None:
                    self._sandbox.close()
                self._conn.close()
                self._db.close()
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None

    def __enter__(self) -> LadybugGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LadybugGraphStore({str(self.path)!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ running queries

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.path}: the graph store was closed")

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: {what} needs a writable graph store (it was opened read-only)")
        self._wrote()

    def _wrote(self) -> None:
        """Note a write (at its start and at its end): the sandbox's read-only handle must reopen to see it."""
        self._writes += 1

    @property
    def sandbox(self) -> CypherSandbox | None:
        """The sandbox that runs this store's untrusted reads (None with ``sandbox=False``); its worker
        process starts on the first such read."""
        if self._sandbox is not None:
            return self._sandbox  # without the mutex: a running query holds it
        with self._mutex:
            if self._sandbox is None and self._sandbox_limits is not None:
                self._sandbox = CypherSandbox(
                    self.path, max_hops=self.max_hops, cypher_limits=self.cypher_limits, limits=self._sandbox_limits
                )
            return self._sandbox

    def _sandboxed(self) -> CypherSandbox | None:
        """The sandbox for an untrusted read now, or None to run it in-process; the caller holds the mutex.

        Inside an open transaction reads run in-process: they must see the transaction's own writes.
        """
        if self._tx_depth:
            return None
        return self.sandbox

    def _execute(self, cypher: str, params: Mapping[str, Any] | None = None, timeout_s: float | None = None) -> Any:
        """Run one statement on the engine, translating its errors; the caller holds the mutex."""
        self._check_open()
        self._conn.set_query_timeout(0 if not timeout_s else max(1, int(timeout_s * 1000)))
        try:
            return self._conn.execute(cypher, dict(params or {}))
        except RuntimeError as e:
            msg = str(e).strip()
            if msg.startswith("Interrupted"):
                raise QueryTimeoutError(
                    f"query ran past its timeout of {timeout_s} s and was stopped: {cypher}"
                ) from None
            if msg.startswith(_SYNTAX_PREFIXES):
                raise CypherSyntaxError(f"{msg}\nQuery: {cypher}") from None
            if msg.startswith(_OUT_OF_MEMORY):
                raise QueryAbortedError(f"the query ran out of memory ({msg[:120]}): {cypher[:200]}") from None
            raise GraphError(f"{msg}\nQuery: {cypher}") from None
        finally:
            self._conn.set_query_timeout(0)

    def _run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """Internal statement → all rows, raw engine values."""
        with self._mutex:
            res = self._execute(cypher, params)
            try:
                return res.get_all() if res.has_next() else []
            finally:
                res.close()

    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        read_only: bool = True,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        if read_only:
            check_read_only(cypher, self.max_hops, params=params, limits=self.cypher_limits)
        else:
            self._check_writable("a write query")
            if _is_ddl(cypher):
                self._tables = None
        with self._mutex:
            sandbox = self._sandboxed() if read_only else None
            if sandbox is not None:
                self._check_open()
                return sandbox.query(cypher, params, timeout_s=timeout_s, max_rows=max_rows, generation=self._writes)
            try:
                return self._query_here(cypher, params, timeout_s, max_rows)
            finally:
                if not read_only:
                    self._wrote()

    def _query_here(
        self, cypher: str, params: Mapping[str, Any] | None, timeout_s: float | None, max_rows: int | None
    ) -> QueryResult:
        """Run ``cypher`` on this process's own handle; the caller holds the mutex."""
        deadline = None if not timeout_s else time.monotonic() + timeout_s
        res = self._execute(cypher, params, timeout_s)
        try:
            columns = list(res.get_column_names())
            rows: list[list[Any]] = []
            truncated = False
            while res.has_next():
                if max_rows is not None and len(rows) >= max_rows:
                    truncated = True
                    break
                rows.append(res.get_next())
                if deadline is not None and len(rows) % 1024 == 0 and time.monotonic() > deadline:
                    raise QueryTimeoutError(f"reading the rows ran past the timeout of {timeout_s} s: {cypher}")
        finally:
            res.close()
        return QueryResult(columns, self._plain_rows(rows), truncated)

    def explain(self, cypher: str, params: Mapping[str, Any] | None = None) -> None:
        """Parse and bind ``cypher`` without running it; it must pass the read-only guard first."""
        check_read_only(cypher, self.max_hops, params=params, limits=self.cypher_limits)
        with self._mutex:
            sandbox = self._sandboxed()
            if sandbox is not None:
                self._check_open()
                sandbox.explain(cypher, params, generation=self._writes)
                return
            self._execute("EXPLAIN " + cypher, params).close()

    # ------------------------------------------------------------------ schema

    def _load_tables(self) -> dict[str, _TableInfo]:
        if self._tables is None:
            tables: dict[str, _TableInfo] = {}
            ids: dict[int, str] = {}
            for row in self._run("CALL show_tables() RETURN *"):
                tid, name, kind = row[0], row[1], row[2]
                if kind not in ("NODE", "REL"):
                    continue
                ids[int(tid)] = name
                cols: dict[str, str] = {}
                pk = None
                for info in self._run(f"CALL table_info({_literal(name)}) RETURN *"):
                    cols[info[1]] = info[2]
                    if kind == "NODE" and info[4] is True:
                        pk = info[1]
                tables[name] = _TableInfo(name, kind, cols, pk)
            self._tables, self._table_ids = tables, ids
        return self._tables

    def _table(self, name: str) -> _TableInfo | None:
        return self._load_tables().get(name)

    def has_table(self, name: str) -> bool:
        """Whether a node or rel table ``name`` exists."""
        return self._table(name) is not None

    def _endpoints(self, rel: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._run(f"CALL show_connection({_literal(rel)}) RETURN *")]

    def schema(self) -> GraphSchema:
        with self._mutex:
            self._tables = None
            tables = self._load_tables()
            s = GraphSchema()
            for t in tables.values():
                props = [PropertyInfo(c, ty) for c, ty in t.columns.items()]
                if t.kind == "NODE":
                    s.node_labels[t.name] = props
                else:
                    s.rel_types[t.name] = props
                    s.rel_endpoints[t.name] = self._endpoints(t.name)
            return s

    def ensure_node_table(self, label: str, column_types: Mapping[str, str | None], key_type: str) -> _TableInfo:
        """Create ``label``'s node table (primary key ``id`` of ``key_type``) or add missing columns."""
        check_name(label, "node label")
        with self._mutex:
            t = self._table(label)
            if t is None:
                cols = [f"{KEY_COLUMN} {key_type}"]
                cols += [f"{quote(check_name(c, 'property'))} {ty or 'STRING'}" for c, ty in column_types.items()]
                cols.append(f"PRIMARY KEY({KEY_COLUMN})")
                self._run(f"CREATE NODE TABLE {quote(label)}({', '.join(cols)})")
            else:
                if t.kind != "NODE":
                    raise InvalidInputError(f"{label!r} is a relationship type, not a node label")
                for c, ty in column_types.items():
                    if c not in t.columns:
                        self._run(f"ALTER TABLE {quote(label)} ADD {quote(check_name(c, 'property'))} {ty or 'STRING'}")
            self._tables = None
            self._wrote()
            t = self._table(label)
            assert t is not None
            return t

    def ensure_rel_table(
        self, rel_type: str, pairs: Iterable[tuple[str, str]], column_types: Mapping[str, str | None]
    ) -> None:
        """Create ``rel_type`` over the (from, to) label ``pairs`` or add missing pairs and columns."""
        check_name(rel_type, "relationship type")
        pairs = sorted(set(pairs))
        with self._mutex:
            t = self._table(rel_type)
            if t is None:
                parts = [f"FROM {quote(a)} TO {quote(b)}" for a, b in pairs]
                parts += [f"{quote(check_name(c, 'property'))} {ty or 'STRING'}" for c, ty in column_types.items()]
                self._run(f"CREATE REL TABLE {quote(rel_type)}({', '.join(parts)})")
            else:
                if t.kind != "REL":
                    raise InvalidInputError(f"{rel_type!r} is a node label, not a relationship type")
                have = set(self._endpoints(rel_type))
                for a, b in pairs:
                    if (a, b) not in have:
                        self._run(f"ALTER TABLE {quote(rel_type)} ADD FROM {quote(a)} TO {quote(b)}")
                for c, ty in column_types.items():
                    if c not in t.columns:
                        self._run(
                            f"ALTER TABLE {quote(rel_type)} ADD {quote(check_name(c, 'property'))} {ty or 'STRING'}"
                        )
            self._tables = None
            self._wrote()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the enclosed writes as one transaction: all of them land, or (on error or crash) none.

        Nested uses join the outer transaction.
        """
        self._check_writable("a transaction")
        with self._mutex:
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield
                finally:
                    self._tx_depth -= 1
                return
            self._run("BEGIN TRANSACTION")
            self._tx_depth = 1
            try:
                yield
            except BaseException:
                self._tx_depth = 0
                try:
                    self._run("ROLLBACK")
                finally:
                    self._tables = None
                    self._wrote()
                raise
            self._tx_depth = 0
            try:
                self._run("COMMIT")
            finally:
                self._wrote()

    def import_cypher(self, script: str) -> int:
        """Create the tables ``script`` needs (inferred from its patterns), then run it unchanged.

        See :mod:`kvgraph.graphdb.cypher_import` for what is inferred; returns the statements run.
        """
        from kvgraph.graphdb.cypher_import import import_cypher_script

        self._check_writable("import_cypher")
        return import_cypher_script(self, script)

    # ------------------------------------------------------------------ node keys

    def node_key_expr(self, var: str) -> str:
        with self._mutex:
            pks = {t.name: t.pk for t in self._load_tables().values() if t.kind == "NODE"}
        if all(pk == KEY_COLUMN for pk in pks.values()):
            return f"(label({var}) + ':' + CAST({var}.{KEY_COLUMN} AS STRING))"
        whens = " ".join(
            f"WHEN '{label}' THEN '{label}:' + CAST({var}.{quote(pk or KEY_COLUMN)} AS STRING)"
            for label, pk in sorted(pks.items())
        )
        return f"CASE label({var}) {whens} END"

    def match_keys_clause(self, var: str, param: str) -> str:
        return f"{self.node_key_expr(var)} IN ${param}"

    def _split_key(self, node_key: str) -> tuple[_TableInfo, Any]:
        label, sep, raw = str(node_key).partition(":")
        t = self._table(label)
        if not sep or t is None or t.kind != "NODE" or t.pk is None:
            raise InvalidInputError(f"node key {node_key!r}: expected 'Label:key' with an existing node label")
        pk_type = t.columns[t.pk]
        if pk_type.upper() in ("INT64", "SERIAL", "INT32"):
            try:
                return t, int(raw)
            except ValueError:
                raise InvalidInputError(f"node key {node_key!r}: {label} keys are integers") from None
        return t, raw

    # ------------------------------------------------------------------ writing

    def upsert_nodes(self, label: str, rows: Sequence[Mapping[str, Any]], key: str = "id") -> list[str]:
        self._check_writable("upsert_nodes")
        check_name(label, "node label")
        if not rows:
            return []
        types: dict[str, list[str | None]] = defaultdict(list)
        for i, row in enumerate(rows):
            if row.get(key) is None:
                raise InvalidInputError(f"{label} row {i}: the key property {key!r} is missing or null: {dict(row)!r}")
            if key != KEY_COLUMN and KEY_COLUMN in row and row[KEY_COLUMN] != row[key]:
                raise InvalidInputError(
                    f"{label} row {i}: has both {KEY_COLUMN!r} and key {key!r}; the key is stored as {KEY_COLUMN!r}"
                )
            for k, v in row.items():
                if k != KEY_COLUMN:
                    types[check_name(k, "property")].append(value_type(v))
        key_type = merge_types(value_type(r[key]) for r in rows) or "STRING"
        if key_type not in ("STRING", "INT64"):
            key_type = "STRING"
        with self._mutex:
            t = self._table(label)
            pk = t.pk if t is not None and t.pk else KEY_COLUMN
            col_types = {c: merge_types(ts) for c, ts in types.items() if c != pk}
            if key == pk:
                col_types.pop(key, None)
            t = self.ensure_node_table(label, col_types, key_type)
            assert t.pk is not None
            pk = t.pk
            # One UNWIND per set of property names; every value CAST to its column's type, because
            # Ladybug infers a struct list's field types from the values (nulls become STRING).
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
            keys: list[str] = []
            for i, row in enumerate(rows):
                where = f"{label} row {i}"
                kval = coerce(row[key], t.columns[pk], f"{where} key {key!r}")
                props = {c: coerce(v, t.columns[c], f"{where} property {c!r}") for c, v in row.items() if c != pk}
                names = tuple(sorted(props))
                groups[names].append({"k": kval, **{f"p{j}": props[c] for j, c in enumerate(names)}})
                keys.append(f"{label}:{kval}")
            with self.transaction():
                for names, batch in groups.items():
                    sets = ", ".join(f"n.{quote(c)} = CAST(r.p{j} AS {t.columns[c]})" for j, c in enumerate(names))
                    cypher = (
                        f"UNWIND $rows AS r MERGE (n:{quote(label)} {{{quote(pk)}: CAST(r.k AS {t.columns[pk]})}})"
                        + (f" SET {sets}" if sets else "")
                    )
                    self._run(cypher, {"rows": batch})
            return keys

    def upsert_edges(self, rel_type: str, edges: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        self._check_writable("upsert_edges")
        check_name(rel_type, "relationship type")
        with self._mutex:
            resolved = []
            types: dict[str, list[str | None]] = defaultdict(list)
            for src, dst, props in edges:
                (ta, ka), (tb, kb) = self._split_key(src), self._split_key(dst)
                props = dict(props or {})
                for c, v in props.items():
                    types[check_name(c, "property")].append(value_type(v))
                resolved.append((ta.name, ka, tb.name, kb, props))
            if not resolved:
                return 0
            self._require_nodes([(r[0], r[1]) for r in resolved] + [(r[2], r[3]) for r in resolved])
            self.ensure_rel_table(
                rel_type, {(r[0], r[2]) for r in resolved}, {c: merge_types(ts) for c, ts in types.items()}
            )
            t = self._table(rel_type)
            assert t is not None
            groups: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
            for a, ka, b, kb, props in resolved:
                vals = {
                    c: coerce(v, t.columns[c], f"{rel_type} edge {a}:{ka}->{b}:{kb} property {c!r}")
                    for c, v in props.items()
                }
                names = tuple(sorted(vals))
                groups[(a, b, names)].append({"s": ka, "d": kb, **{f"p{j}": vals[c] for j, c in enumerate(names)}})
            tables = self._load_tables()
            with self.transaction():
                for (a, b, names), batch in groups.items():
                    ta, tb = tables[a], tables[b]
                    assert ta.pk and tb.pk
                    sets = ", ".join(f"e.{quote(c)} = CAST(r.p{j} AS {t.columns[c]})" for j, c in enumerate(names))
                    cypher = (
                        f"UNWIND $rows AS r MATCH (a:{quote(a)} {{{quote(ta.pk)}: CAST(r.s AS {ta.columns[ta.pk]})}}), "
                        f"(b:{quote(b)} {{{quote(tb.pk)}: CAST(r.d AS {tb.columns[tb.pk]})}}) "
                        f"MERGE (a)-[e:{quote(rel_type)}]->(b)" + (f" SET {sets}" if sets else "")
                    )
                    self._run(cypher, {"rows": batch})
            return len(resolved)

    def _require_nodes(self, refs: Sequence[tuple[str, Any]]) -> None:
        """InvalidInputError naming the node keys in ``refs`` that do not exist."""
        by_label: dict[str, set[Any]] = defaultdict(set)
        for label, k in refs:
            by_label[label].add(k)
        missing: list[str] = []
        tables = self._load_tables()
        for label, ks in by_label.items():
            pk = tables[label].pk
            assert pk is not None
            found = {
                r[0]
                for r in self._run(
                    f"MATCH (n:{quote(label)}) WHERE n.{quote(pk)} IN $ks RETURN n.{quote(pk)}", {"ks": list(ks)}
                )
            }
            missing += [f"{label}:{k}" for k in sorted(ks - found, key=str)]
        if missing:
            raise InvalidInputError(f"edges refer to nodes that do not exist: {', '.join(missing[:10])}")

    def delete_nodes(self, node_keys: Sequence[str]) -> int:
        self._check_writable("delete_nodes")
        with self._mutex:
            by_label: dict[str, list[Any]] = defaultdict(list)
            for k in node_keys:
                t, v = self._split_key(k)
                by_label[t.name].append(v)
            n = 0
            with self.transaction():
                for label, ks in by_label.items():
                    pk = self._load_tables()[label].pk
                    assert pk is not None
                    match = f"MATCH (n:{quote(label)}) WHERE n.{quote(pk)} IN $ks"
                    n += int(self._run(f"{match} RETURN count(n)", {"ks": ks})[0][0])
                    self._run(f"{match} DETACH DELETE n", {"ks": ks})
            return n

    # ------------------------------------------------------------------ reading whole tables

    def nodes(self, label: str, properties: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        self._check_open()
        with self._mutex:
            t = self._table(label)
            if t is None or t.kind != "NODE" or t.pk is None:
                raise InvalidInputError(f"node label {label!r} does not exist in the graph at {self.path}")
            cols = list(properties) if properties is not None else list(t.columns)
            for c in cols:
                if c not in t.columns:
                    raise InvalidInputError(f"{label} has no property {c!r} (it has {', '.join(t.columns)})")
            ret = ", ".join([f"n.{quote(t.pk)}"] + [f"n.{quote(c)}" for c in cols])
            rows = self._run(f"MATCH (n:{quote(label)}) RETURN {ret} ORDER BY n.{quote(t.pk)}")
            return [(f"{label}:{r[0]}", dict(zip(cols, self._plain_rows([r[1:]])[0]))) for r in rows]

    def edges(self, rel_types: Sequence[str] | None = None) -> EdgeList:
        self._check_open()
        with self._mutex:
            tables = self._load_tables()
            keys: list[str] = []
            labels: list[str] = []
            index: dict[str, np.ndarray] = {}  # label -> offset -> dense index
            for t in sorted((t for t in tables.values() if t.kind == "NODE"), key=lambda t: t.name):
                rows = self._run(f"MATCH (n:{quote(t.name)}) RETURN offset(id(n)), n.{quote(t.pk or KEY_COLUMN)}")
                offs = np.array([r[0] for r in rows], dtype=np.int64)
                lut = np.full(int(offs.max()) + 1 if len(offs) else 0, -1, dtype=np.int64)
                lut[offs] = np.arange(len(keys), len(keys) + len(rows))
                index[t.name] = lut
                keys += [f"{t.name}:{r[1]}" for r in rows]
                labels += [t.name] * len(rows)
            wanted = (
                sorted(rel_types) if rel_types is not None else sorted(n for n, t in tables.items() if t.kind == "REL")
            )
            src_parts, dst_parts, types = [], [], []
            for rel in wanted:
                if rel not in tables or tables[rel].kind != "REL":
                    raise InvalidInputError(f"relationship type {rel!r} does not exist in the graph at {self.path}")
                for a, b in self._endpoints(rel):
                    rows = self._run(
                        f"MATCH (a:{quote(a)})-[:{quote(rel)}]->(b:{quote(b)}) RETURN offset(id(a)), offset(id(b))"
                    )
                    if not rows:
                        continue
                    arr = np.array(rows, dtype=np.int64)
                    src_parts.append(index[a][arr[:, 0]])
                    dst_parts.append(index[b][arr[:, 1]])
                    types += [rel] * len(rows)
            src = np.concatenate(src_parts) if src_parts else np.zeros(0, dtype=np.int64)
            dst = np.concatenate(dst_parts) if dst_parts else np.zeros(0, dtype=np.int64)
            return EdgeList(keys=keys, labels=labels, src=src, dst=dst, types=types)

    # ------------------------------------------------------------------ engine values → plain Python

    def _plain_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        if not rows:
            return rows
        known: dict[tuple[int, int], str] = {}
        pending: list[dict[str, Any]] = []  # relationship dicts whose endpoints need keys
        out = [[self._plain(v, known, pending) for v in row] for row in rows]
        if pending:
            self._resolve_endpoints(pending, known)
        return out

    def _plain(self, v: Any, known: dict[tuple[int, int], str], pending: list[dict[str, Any]]) -> Any:
        if isinstance(v, dict):
            if "_NODES" in v and "_RELS" in v:
                return {
                    "nodes": [self._plain(n, known, pending) for n in v["_NODES"]],
                    "relationships": [self._plain(r, known, pending) for r in v["_RELS"]],
                }
            if "_SRC" in v and "_DST" in v and "_LABEL" in v:
                rel = {k: self._plain(x, known, pending) for k, x in v.items() if not k.startswith("_")}
                t = self._table(v["_LABEL"])
                if t is not None:
                    rel = {k: x for k, x in rel.items() if k in t.columns}
                rel["_type"] = v["_LABEL"]
                rel["_src_id"], rel["_dst_id"] = _iid(v["_SRC"]), _iid(v["_DST"])
                pending.append(rel)
                return rel
            if "_ID" in v and "_LABEL" in v:
                label = v["_LABEL"]
                t = self._table(label)
                props = {k: self._plain(x, known, pending) for k, x in v.items() if not k.startswith("_")}
                if t is not None:
                    props = {k: x for k, x in props.items() if k in t.columns}
                    if t.pk is not None and v.get(t.pk) is not None:
                        props["_key"] = f"{label}:{v[t.pk]}"
                        known[_iid(v["_ID"])] = props["_key"]
                props["_label"] = label
                return props
            if set(v) == {"offset", "table"}:
                return f"{v['table']}:{v['offset']}"  # an internal id (from id(n)): opaque text
            return {k: self._plain(x, known, pending) for k, x in v.items()}
        if isinstance(v, decimal.Decimal):  # sum() over INT64 comes back as a Decimal
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, list):
            return [self._plain(x, known, pending) for x in v]
        return v

    def _resolve_endpoints(self, rels: list[dict[str, Any]], known: dict[tuple[int, int], str]) -> None:
        """Replace relationships' internal endpoint ids by node keys (looking up nodes not in the result)."""
        self._load_tables()
        assert self._table_ids is not None
        missing: dict[int, set[int]] = defaultdict(set)
        for r in rels:
            for iid in (r["_src_id"], r["_dst_id"]):
                if iid not in known:
                    missing[iid[0]].add(iid[1])
        for table_id, offs in missing.items():
            label = self._table_ids.get(table_id)
            t = self._table(label) if label else None
            if t is None or t.pk is None:
                continue
            for off, pk in self._run(
                f"MATCH (n:{quote(t.name)}) WHERE offset(id(n)) IN $o RETURN offset(id(n)), n.{quote(t.pk)}",
                {"o": sorted(offs)},
            ):
                known[(table_id, off)] = f"{t.name}:{pk}"
        for r in rels:
            r["_src"] = known.get(r.pop("_src_id"))
            r["_dst"] = known.get(r.pop("_dst_id"))


def _literal(name: str) -> str:
    """A string literal for procedure arguments, which Ladybug takes only as literals, not parameters."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _iid(d: Mapping[str, int]) -> tuple[int, int]:
    return int(d["table"]), int(d["offset"])


_DDL_RE = re.compile(r"^\s*(CREATE|DROP|ALTER)\s+(NODE|REL|TABLE)", re.IGNORECASE)


def _is_ddl(cypher: str) -> bool:
    return bool(_DDL_RE.search(cypher)) or "ALTER" in cypher.upper() or "TABLE" in cypher.upper()
