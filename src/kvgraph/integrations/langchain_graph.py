"""A knowledge base's Cypher graph as LangChain's graph store, for ``GraphCypherQAChain``.

LangChain's graph chains take a "graph store": ``query(cypher, params)`` returning rows as
dicts, ``get_schema`` (text for the prompt), ``get_structured_schema`` (what the chain filters
with ``include_types`` / ``exclude_types``), ``refresh_schema()`` and ``add_graph_documents``.
``langchain-neo4j`` declares it as a runtime-checkable protocol, so :class:`KvgraphGraphStore`
implements it without importing LangChain at all (langchain-community's deprecated copy is a
base class instead; see docs/langchain.md).

Every query is treated as untrusted LLM output and goes through ``kb.graph.query``: the
read-only guard, a read-only handle, a time and row limit. The store is therefore read-only:
``add_graph_documents`` raises :class:`~kvgraph.errors.ReadOnlyError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kvgraph.errors import InvalidInputError, ReadOnlyError
from kvgraph.graphdb.base import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, GraphSchema

if TYPE_CHECKING:
    from kvgraph.kb.graph import KBGraph
    from kvgraph.kb.knowledge_base import KnowledgeBase

__all__ = ["KvgraphGraphStore", "schema_text", "structured_schema"]

# langchain-community's GraphCypherQAChain strips a ```cypher fence down to "cypher\nMATCH ...";
# Neo4j reads that leading word as its (empty) CYPHER query option, Ladybug does not know it.
_CYPHER_PREFIX = re.compile(r"\s*cypher\s+(?=[a-z])", re.IGNORECASE)


def structured_schema(schema: GraphSchema) -> dict[str, Any]:
    """The schema in the shape LangChain's graph chains read (``node_props``, ``rel_props``, ``relationships``)."""
    return {
        "node_props": {
            label: [{"property": p.name, "type": p.type} for p in props]
            for label, props in sorted(schema.node_labels.items())
        },
        "rel_props": {
            rel: [{"property": p.name, "type": p.type} for p in props]
            for rel, props in sorted(schema.rel_types.items())
        },
        "relationships": [
            {"start": start, "type": rel, "end": end}
            for rel, pairs in sorted(schema.rel_endpoints.items())
            for start, end in pairs
        ],
        "metadata": {"constraint": [], "index": []},
    }


def schema_text(structured: Mapping[str, Any]) -> str:
    """The structured schema as prompt text, laid out like LangChain's Neo4j graph."""

    def props(entries: Mapping[str, Sequence[Mapping[str, str]]]) -> list[str]:
        lines = []
        for name, ps in entries.items():
            if not ps:
                continue
            fields = ", ".join(f"{p['property']}: {p['type']}" for p in ps)
            lines.append(f"{name} {{{fields}}}")
        return lines

    rels = [f"(:{r['start']})-[:{r['type']}]->(:{r['end']})" for r in structured["relationships"]]
    return "\n".join(
        [
            "Node properties:",
            *props(structured["node_props"]),
            "Relationship properties:",
            *props(structured["rel_props"]),
            "The relationships:",
            *rels,
        ]
    )


class KvgraphGraphStore:
    """LangChain's graph store protocol over ``kb.graph`` (read-only; see the module docstring).

    ``KvgraphGraphStore(kb)`` or ``KvgraphGraphStore(kb.graph)``; ``timeout_s`` and
    ``max_rows`` bound every query (kvgraph's defaults unless given). The schema is read once
    and again on :meth:`refresh_schema`.
    """

    def __init__(
        self,
        graph: KnowledgeBase | KBGraph,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> None:
        from kvgraph.kb.graph import KBGraph
        from kvgraph.kb.knowledge_base import KnowledgeBase

        if isinstance(graph, KnowledgeBase):
            graph = graph.graph
        if not isinstance(graph, KBGraph):
            raise InvalidInputError(
                f"KvgraphGraphStore takes a KnowledgeBase or its kb.graph, got {type(graph).__name__}"
            )
        self.graph = graph
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self._structured: dict[str, Any] | None = None

    def query(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one read-only Cypher statement with bound ``params``; rows as dicts keyed by column.

        A bare leading ``CYPHER`` word (left by code fences) is dropped. Writes raise
        WriteRejectedError, syntax errors CypherSyntaxError (kvgraph.graphdb).
        """
        query = _CYPHER_PREFIX.sub("", query, count=1)
        result = self.graph.query(query, dict(params or {}), timeout_s=self.timeout_s, max_rows=self.max_rows)
        return result.records()

    @property
    def get_structured_schema(self) -> dict[str, Any]:
        """Labels and relationship types with their properties, and which labels each type connects."""
        if self._structured is None:
            self.refresh_schema()
        assert self._structured is not None
        return self._structured

    @property
    def structured_schema(self) -> dict[str, Any]:
        """The same as :attr:`get_structured_schema` (``GraphCypherQAChain(validate_cypher=True)`` reads this name)."""
        return self.get_structured_schema

    @property
    def get_schema(self) -> str:
        """The schema as text for a text-to-Cypher prompt."""
        return schema_text(self.get_structured_schema)

    def refresh_schema(self) -> None:
        """Read the schema again (after the graph changed)."""
        self._structured = structured_schema(self.graph.schema())

    def add_graph_documents(self, graph_documents: Sequence[Any], include_source: bool = False) -> None:
        """Not supported: this store only reads. Raises ReadOnlyError."""
        raise ReadOnlyError(
            "KvgraphGraphStore is read-only (queries are untrusted); load graph data with "
            "kvgraph graph import or kb.graph.import_cypher / import_nodes / import_edges"
        )
