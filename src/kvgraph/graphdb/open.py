"""Choosing the graph backend: Neo4j when ``KVGRAPH_NEO4J_URI`` is set, else embedded Ladybug in ``KB/graph/``.

``KVGRAPH_NEO4J_USER`` and ``KVGRAPH_NEO4J_PASSWORD`` give the credentials; the password is
passed to the driver only, never logged, shown in errors or kept in a repr.
"""

from __future__ import annotations

import os
from pathlib import Path

from kvgraph.graphdb.base import GraphStore

GRAPH_DIR = "graph"


def graph_path(kb_path: str | os.PathLike[str]) -> Path:
    """Where the embedded graph of a knowledge base lives."""
    return Path(kb_path) / GRAPH_DIR


def open_graph_store(kb_path: str | os.PathLike[str], read_only: bool = True) -> GraphStore:
    """The knowledge base's graph store (Neo4j if configured in the environment, else Ladybug)."""
    uri = os.environ.get("KVGRAPH_NEO4J_URI")
    if uri:
        from kvgraph.graphdb.neo4j import Neo4jGraphStore

        return Neo4jGraphStore(
            uri,
            os.environ.get("KVGRAPH_NEO4J_USER"),
            os.environ.get("KVGRAPH_NEO4J_PASSWORD"),
            os.environ.get("KVGRAPH_NEO4J_DATABASE") or None,
            read_only=read_only,
        )
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    return LadybugGraphStore.open(graph_path(kb_path), read_only=read_only)
