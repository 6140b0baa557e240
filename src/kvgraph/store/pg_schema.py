"""The Postgres store's tables, created and upgraded by numbered migrations.

A knowledge base owns one Postgres schema (``?schema=NAME`` in its store URI, ``kvgraph`` by
default). ``<schema>.kvgraph_migrations`` records each migration applied; opening a store runs
the missing ones in order, each in its own transaction, under a transaction-level advisory lock,
so two processes opening a new store at once do not race. A schema written by a newer kvgraph
(a version this one does not know) is refused rather than guessed at.

Tables:
    meta   key/value text: dim, metric, the live node count, index settings, user keys (``user:*``)
    nodes  one row per node: id, insertion order (seq), document id, text, metadata twice
           (``metadata_json``: the caller's JSON, returned as given; ``meta``: JSONB with exact
           numbers, for filters), the vector's norm, the vector (unit length for cosine), and
           the text's tsvector (Postgres full-text search, the store's sparse search)
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from kvgraph.errors import KvgraphError

# (version, what it does, statements); {s} is the schema, formatted as an identifier.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "meta and nodes tables; document, order, metadata and full-text indexes",
        [
            "CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
            "CREATE TABLE {s}.nodes ("
            " id text PRIMARY KEY,"
            " seq bigint GENERATED ALWAYS AS IDENTITY,"
            " ref_doc_id text,"
            " text text NOT NULL,"
            " metadata_json text NOT NULL,"
            " relationships_json text NOT NULL,"
            " meta jsonb NOT NULL,"
            " norm real NOT NULL,"
            " embedding vector,"
            " tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED)",
            "CREATE INDEX nodes_ref_doc ON {s}.nodes (ref_doc_id)",
            "CREATE INDEX nodes_seq ON {s}.nodes (seq)",
            "CREATE INDEX nodes_meta ON {s}.nodes USING gin (meta jsonb_path_ops)",
            "CREATE INDEX nodes_tsv ON {s}.nodes USING gin (tsv)",
            "INSERT INTO {s}.meta (key, value) VALUES ('count', '0')",
        ],
    ),
    (
        2,
        "vectors out of line: filters scan a slim table (HNSW keeps its own copy of each vector)",
        [
            # Postgres moves values out of a row only once the row passes ~2 KB, and then until it
            # is under toast_tuple_target: a chunk with its text passes, and with the target at 256 B
            # its vector (1.5 KB at 384-d) goes out of line, so a filter scans a slim table. (Rows
            # without text, as in bench/store.py's synthetic set, stay under 2 KB and inline.)
            "ALTER TABLE {s}.nodes ALTER COLUMN embedding SET STORAGE EXTERNAL",
            "ALTER TABLE {s}.nodes SET (toast_tuple_target = 256)",
        ],
    ),
]
LATEST = MIGRATIONS[-1][0]


class SchemaVersionError(KvgraphError):
    """The Postgres schema was written by a newer kvgraph than this one."""


def migrate(conn: Any, schema: str) -> list[int]:
    """Create ``schema`` if needed and apply the migrations it lacks; returns the versions applied.

    ``conn`` is a psycopg connection outside any transaction.
    """
    s = sql.Identifier(schema)
    applied: list[int] = []
    with conn.transaction():
        # one migrating process per schema at a time; the lock ends with the transaction
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kvgraph-migrate:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}").format(s=s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {s}.kvgraph_migrations "
                "(version int PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(s=s)
        )
        done = {r[0] for r in conn.execute(sql.SQL("SELECT version FROM {s}.kvgraph_migrations").format(s=s))}
        newer = sorted(v for v in done if v > LATEST)
        if newer:
            raise SchemaVersionError(
                f"Postgres schema {schema!r} has migration {newer[-1]}, newer than this kvgraph knows ({LATEST}); "
                "upgrade kvgraph"
            )
        for version, description, statements in MIGRATIONS:
            if version in done:
                continue
            for stmt in statements:
                conn.execute(sql.SQL(stmt).format(s=s))  # fixed text of this module, never input
            conn.execute(
                sql.SQL("INSERT INTO {s}.kvgraph_migrations (version, description) VALUES (%s, %s)").format(s=s),
                (version, description),
            )
            applied.append(version)
    return applied


def applied_versions(conn: Any, schema: str) -> list[int]:
    """The migrations recorded in ``schema`` (empty when it has none)."""
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'kvgraph_migrations'",
        (schema,),
    ).fetchone()
    if not exists:
        return []
    q = sql.SQL("SELECT version FROM {s}.kvgraph_migrations ORDER BY version").format(s=sql.Identifier(schema))
    return [int(r[0]) for r in conn.execute(q)]
