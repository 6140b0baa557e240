"""Real database servers for the contract suites, started on this machine, loopback only.

* Postgres 16 + pgvector: the ``pgserver`` package bundles both and starts them from Python; it
  listens on a Unix socket in a temporary directory (no TCP port at all).
* ArcadeDB with its Bolt plugin: the ``arcadedb-embedded`` package ships the server jars and a JRE;
  the server runs as a child process bound to 127.0.0.1 on free ports.

Each server starts once per test process, on first use, and stops when the process exits.
``KVGRAPH_TEST_PG_URI`` / ``KVGRAPH_TEST_BOLT_URI`` (or ``KVGRAPH_NEO4J_URI``) point the suites at
servers of your own instead (credentials in the URI or in KVGRAPH_NEO4J_USER / KVGRAPH_NEO4J_PASSWORD).
The suites empty the Bolt database they are given: never point them at one that holds data.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

ARCADE_PASSWORD = "kvgraph-test-only"  # a throwaway server on loopback, deleted at exit
ARCADE_DATABASE = "kvgraph"
_started: dict[str, str] = {}


def postgres_uri() -> str:
    """A Postgres URI with pgvector available (skips the test when neither a server nor pgserver is there)."""
    if os.environ.get("KVGRAPH_TEST_PG_URI"):
        return os.environ["KVGRAPH_TEST_PG_URI"]
    if "pg" in _started:
        return _started["pg"]
    for module in ("psycopg", "psycopg_pool", "pgvector", "pgserver"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} missing: pip install 'kvgraph[postgres]' pgserver, or set KVGRAPH_TEST_PG_URI")
    import pgserver

    data = tempfile.mkdtemp(prefix="kvg-pg-")
    with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset (as in CI): harmless
        warnings.simplefilter("ignore")
        server = pgserver.get_server(data, cleanup_mode="stop")

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(stop)
    _started["pg"] = server.get_uri()
    return _started["pg"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bolt_uri() -> str:
    """A Bolt URI (with ``?database=``) of a running server; starts ArcadeDB when none is configured."""
    if os.environ.get("KVGRAPH_TEST_BOLT_URI"):
        return os.environ["KVGRAPH_TEST_BOLT_URI"]
    if os.environ.get("KVGRAPH_NEO4J_URI"):  # a server of your own, e.g. Neo4j; credentials from KVGRAPH_NEO4J_*
        return os.environ["KVGRAPH_NEO4J_URI"]
    if "bolt" in _started:
        return _started["bolt"]
    if importlib.util.find_spec("neo4j") is None:
        pytest.skip("the neo4j driver is not installed: pip install 'kvgraph[neo4j]'")
    spec = importlib.util.find_spec("arcadedb_embedded")
    if spec is None or spec.origin is None:
        pytest.skip("arcadedb-embedded (the ArcadeDB server and a JRE) is not installed; or set KVGRAPH_TEST_BOLT_URI")
    home = Path(spec.origin).parent
    java = home / "jre" / "bin" / "java"
    if not java.exists():
        java = Path(shutil.which("java") or "java")
    root = Path(tempfile.mkdtemp(prefix="kvg-arcade-"))
    bolt, http, https = _free_port(), _free_port(), _free_port()
    cmd = [
        str(java),
        "-Xmx768m",
        "-cp",
        f"{home / 'jars'}/*",
        f"-Darcadedb.server.rootPath={root}",
        f"-Darcadedb.server.databaseDirectory={root / 'databases'}",
        f"-Darcadedb.server.rootPassword={ARCADE_PASSWORD}",
        "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "-Darcadedb.bolt.host=127.0.0.1",
        f"-Darcadedb.bolt.port={bolt}",
        "-Darcadedb.server.httpIncomingHost=127.0.0.1",
        f"-Darcadedb.server.httpIncomingPort={http}",
        f"-Darcadedb.server.httpsIncomingPort={https}",
        f"-Darcadedb.server.defaultDatabases={ARCADE_DATABASE}[root]",
        "com.arcadedb.server.ArcadeDBServer",
    ]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - the server writes to it until exit
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    uri = f"bolt://root:{ARCADE_PASSWORD}@127.0.0.1:{bolt}?database={ARCADE_DATABASE}"
    import neo4j

    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            text = (root / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"ArcadeDB exited with {proc.returncode}:\n{text}")
        try:
            auth = ("root", ARCADE_PASSWORD)
            with (
                neo4j.GraphDatabase.driver(f"bolt://127.0.0.1:{bolt}", auth=auth) as d,
                d.session(database=ARCADE_DATABASE) as s,
            ):
                s.run("RETURN 1").consume()
            break
        except Exception:
            if time.monotonic() > deadline:
                pytest.fail("ArcadeDB did not accept Bolt connections within 120 s")
            time.sleep(0.5)
    _started["bolt"] = uri
    return uri


class VectorBackend:
    """Opens stores of one backend at one place; every store opened is closed after the test."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp
        self.opened: list[Any] = []
        self.schema = "t_" + uuid.uuid4().hex[:16]
        self.uri = postgres_uri() if name == "postgres" else ""

    def open(self, **kwargs: Any) -> Any:
        if self.name == "embedded":
            from kvgraph.store import EmbeddedVectorStore

            store = EmbeddedVectorStore.open(self.tmp / "store", **kwargs)
        else:
            from kvgraph.store.postgres import PostgresVectorStore

            store = PostgresVectorStore.open(self.uri, schema=self.schema, **kwargs)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        if self.name == "postgres":
            import psycopg
            from psycopg import sql

            with psycopg.connect(self.uri, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
