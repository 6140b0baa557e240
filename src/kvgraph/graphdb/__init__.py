"""Cypher graph databases behind one protocol (:mod:`~kvgraph.graphdb.base`): embedded Ladybug
(:mod:`~kvgraph.graphdb.ladybug`, the default) and Neo4j (:mod:`~kvgraph.graphdb.neo4j`); the
read-only guard for untrusted queries (:mod:`~kvgraph.graphdb.guard`), column types
(:mod:`~kvgraph.graphdb.types`) and imports of Cypher scripts and node/edge files
(:mod:`~kvgraph.graphdb.cypher_import`).

Submodules load their engines lazily, so ``import kvgraph.graphdb`` stays cheap.
"""

from kvgraph.graphdb.base import (
    CypherSyntaxError,
    EdgeList,
    GraphError,
    GraphSchema,
    GraphStore,
    QueryResult,
    QueryTimeoutError,
    WriteRejectedError,
)

__all__ = [
    "CypherSyntaxError",
    "EdgeList",
    "GraphError",
    "GraphSchema",
    "GraphStore",
    "QueryResult",
    "QueryTimeoutError",
    "WriteRejectedError",
]
