"""The knowledge graph: a Cypher property graph (embedded Ladybug or Neo4j), graphs built from
documents, knowledge-vector-graph retrieval and text-to-Cypher.

Submodules load their engines lazily, so ``import kvgraph.graph`` stays cheap.
"""

from kvgraph.graph.base import (
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
