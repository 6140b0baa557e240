"""Choosing the graph backend: a Bolt server (Neo4j, ArcadeDB) when a graph URI is configured, else
embedded Ladybug in ``KB/graph/``.

The URI comes from the knowledge base's ``graph_uri`` setting (``KB/kvgraph.toml`` or
``KVGRAPH_GRAPH_URI``), or from ``KVGRAPH_NEO4J_URI``: ``bolt://host:7687`` or
``neo4j://host:7687``, with ``?database=NAME`` for a database other than the server's default.
Credentials: ``KVGRAPH_NEO4J_USER`` and ``KVGRAPH_NEO4J_PASSWORD`` (or the URI's user info); the
password is passed to the driver only, never logged, shown in errors or kept in a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.base import GraphStore

GRAPH_DIR = "graph"
BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def graph_path(kb_path: str | os.PathLike[str]) -> Path:
    """Where the embedded graph of a knowledge base lives."""
    return Path(kb_path) / GRAPH_DIR


@dataclass(frozen=True)
class BoltTarget:
    """A Bolt URI taken apart: what the driver connects to, and who as."""

    uri: str  # no user info, no kvgraph parameters
    user: str | None
    password: str | None
    database: str | None


def parse_bolt_uri(uri: str, env: Mapping[str, str] | None = None) -> BoltTarget:
    """Split ``bolt://user:pass@host:7687?database=db`` into driver URI, credentials and database.

    The environment's KVGRAPH_NEO4J_USER / _PASSWORD / _DATABASE fill what the URI leaves out.
    """
    env = os.environ if env is None else env
    parts = urlsplit(uri)
    if parts.scheme not in BOLT_SCHEMES:
        raise InvalidInputError(
            f"graph URI scheme {parts.scheme!r}: use one of {', '.join(s + '://' for s in BOLT_SCHEMES)}"
        )
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    database = next((v for k, v in query if k == "database"), None)
    rest = urlencode([(k, v) for k, v in query if k != "database"])
    return BoltTarget(
        uri=urlunsplit((parts.scheme, netloc, parts.path, rest, "")),
        user=user or env.get("KVGRAPH_NEO4J_USER") or None,
        password=password or env.get("KVGRAPH_NEO4J_PASSWORD") or None,
        database=database or env.get("KVGRAPH_NEO4J_DATABASE") or None,
    )


def configured_graph_uri(kb_path: str | os.PathLike[str] | None) -> str:
    """The graph URI in force for a knowledge base ('' for the embedded graph)."""
    from kvgraph.config import load_settings

    uri = ""
    if kb_path is not None and Path(kb_path).is_dir():
        uri = load_settings(kb_path).graph_uri
    return uri or os.environ.get("KVGRAPH_NEO4J_URI", "")


def open_bolt_store(uri: str, read_only: bool = True) -> GraphStore:
    """A :class:`~kvgraph.graphdb.neo4j.Neo4jGraphStore` on the server named by ``uri``."""
    from kvgraph.graphdb.neo4j import Neo4jGraphStore

    target = parse_bolt_uri(uri)
    return Neo4jGraphStore(target.uri, target.user, target.password, target.database, read_only=read_only)


def open_graph_store(kb_path: str | os.PathLike[str], read_only: bool = True, uri: str | None = None) -> GraphStore:
    """The knowledge base's graph store (a Bolt server if configured, else Ladybug).

    Either way untrusted reads (``query(read_only=True)``) pass the allow-list guard; Ladybug runs
    them in its sandbox process on a read-only handle, a Bolt server in a read transaction.
    """
    uri = uri if uri is not None else configured_graph_uri(kb_path)
    if uri:
        return open_bolt_store(uri, read_only=read_only)
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    return LadybugGraphStore.open(graph_path(kb_path), read_only=read_only)
