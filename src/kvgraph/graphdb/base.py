"""The GraphStore protocol: what every graph backend (embedded Ladybug, Neo4j) offers.

kvgraph talks to a property graph through Cypher with bound parameters. Node identity
across the vector store and the graph is a *node key*: a string that the backend maps to
one node and that survives reopen (Ladybug: ``Label:primary-key``; Neo4j: ``elementId``).
Vector results are joined back into Cypher with :meth:`GraphStore.match_keys_clause`.

Queries from users and LLMs run with ``read_only=True`` (the default): the read-only guard
(:mod:`kvgraph.graphdb.guard`, an allow-list of statements, clauses, functions and procedures,
plus size limits) refuses anything else before the engine sees it; the backend then runs the
query on a read-only handle (Ladybug: in a sandbox process, :mod:`kvgraph.graphdb.sandbox`) or
in a read transaction (Neo4j), bounded by a timeout and a row limit. docs/security.md has the
threat model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kvgraph.errors import KvgraphError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ROWS = 10_000


class GraphError(KvgraphError):
    """The graph engine refused a query or an import; the message carries the engine's reason."""


class CypherSyntaxError(GraphError):
    """A Cypher query does not parse or bind (unknown label, property, variable)."""


class WriteRejectedError(GraphError):
    """The read-only guard refused a query before the engine saw it.

    It would write, load files, call a procedure or function off the allow-list, run several
    statements, or exceed a size limit; subclasses in :mod:`kvgraph.graphdb.guard` say which.
    """


class QueryTimeoutError(GraphError):
    """A query ran past its timeout and was interrupted (or its sandbox process was stopped)."""


class QueryAbortedError(GraphError):
    """A read-only query crashed the engine's sandbox process or ran out of its memory or CPU.

    The caller's process is unaffected; the next query starts a fresh sandbox process.
    """


@dataclass
class QueryResult:
    """Rows of a Cypher query: ``columns`` names, ``rows`` as lists of plain Python values."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False  # True when max_rows cut the result

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def scalar(self) -> Any:
        """The single value of a one-row, one-column result (raises GraphError otherwise)."""
        if len(self.rows) != 1 or len(self.columns) != 1:
            raise GraphError(f"expected one value, got {len(self.rows)} rows x {len(self.columns)} columns")
        return self.rows[0][0]


@dataclass
class PropertyInfo:
    name: str
    type: str  # engine type name, e.g. STRING, INT64, DOUBLE, BOOL, STRING[]


@dataclass
class GraphSchema:
    """Labels, relationship types and their properties; ``text()`` is what an LLM reads."""

    node_labels: dict[str, list[PropertyInfo]] = field(default_factory=dict)
    # rel type -> properties, and the (from label, to label) pairs it connects
    rel_types: dict[str, list[PropertyInfo]] = field(default_factory=dict)
    rel_endpoints: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def text(self) -> str:
        lines = ["Node labels and properties:"]
        for label, props in sorted(self.node_labels.items()):
            lines.append(f"  (:{label} {{{', '.join(f'{p.name}: {p.type}' for p in props)}}})")
        lines.append("Relationship types and properties:")
        for rel, props in sorted(self.rel_types.items()):
            lines.append(f"  [:{rel} {{{', '.join(f'{p.name}: {p.type}' for p in props)}}}]")
        lines.append("Relationships (direction matters):")
        for rel, pairs in sorted(self.rel_endpoints.items()):
            for a, b in pairs:
                lines.append(f"  (:{a})-[:{rel}]->(:{b})")
        return "\n".join(lines)


@dataclass
class EdgeList:
    """All edges (of some types) as parallel arrays over dense node indices, for numpy/scipy.

    ``keys[i]`` is the node key of index ``i``; ``src``/``dst`` are int64 index arrays;
    ``types`` holds the relationship type of each edge.
    """

    keys: list[str]
    labels: list[str]
    src: np.ndarray
    dst: np.ndarray
    types: list[str]


@runtime_checkable
class GraphStore(Protocol):
    """A property graph queried with Cypher. Implementations: LadybugGraphStore, Neo4jGraphStore."""

    read_only: bool

    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        read_only: bool = True,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        """Run one Cypher statement with bound ``params``.

        ``read_only=True`` rejects writes before they reach the engine (WriteRejectedError).
        Raises CypherSyntaxError for queries the engine cannot parse or bind, and
        QueryTimeoutError past ``timeout_s``.
        """
        ...

    def explain(self, cypher: str, params: Mapping[str, Any] | None = None) -> None:
        """Parse and bind ``cypher`` without running it; raise CypherSyntaxError with the engine's message."""
        ...

    def schema(self) -> GraphSchema: ...

    def import_cypher(self, script: str) -> int:
        """Run a Cypher import script (CREATE/MERGE statements), adapting the dialect when needed.

        Returns the number of statements run. Writes; needs a writable store.
        """
        ...

    def upsert_nodes(self, label: str, rows: Sequence[Mapping[str, Any]], key: str = "id") -> list[str]:
        """Create or update nodes of ``label`` identified by property ``key``; return their node keys.

        Missing node tables/properties are created (typed from the values).
        """
        ...

    def upsert_edges(
        self,
        rel_type: str,
        edges: Iterable[tuple[str, str, Mapping[str, Any]]],
    ) -> int:
        """Create relationships ``(from node key, to node key, properties)`` of ``rel_type``; return the count."""
        ...

    def delete_nodes(self, node_keys: Sequence[str]) -> int:
        """Delete nodes (and their relationships) by node key; return how many existed."""
        ...

    def node_key_expr(self, var: str) -> str:
        """A Cypher expression that evaluates to the node key of variable ``var``."""
        ...

    def match_keys_clause(self, var: str, param: str) -> str:
        """A ``WHERE`` condition true when ``var``'s node key is in list parameter ``$param``."""
        ...

    def nodes(self, label: str, properties: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """All nodes of ``label`` as (node key, properties)."""
        ...

    def edges(self, rel_types: Sequence[str] | None = None) -> EdgeList:
        """All relationships (optionally of some types) as arrays for graph algorithms."""
        ...

    def close(self) -> None: ...
