"""``kb.graph``: the knowledge base's graph, its node index and its graph questions in one object.

Layout inside the knowledge-base directory::

    graph/          the embedded Ladybug database (or Neo4j when KVGRAPH_NEO4J_URI is set)
    graph-index/    vectors of graph nodes' text properties (kvgraph's own vector store)
    doc-graph/      the graph built from the ingested documents, as arrays (for retrieval)

Everything opens on first use, read-only when the knowledge base was opened read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvgraph.graph.base import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, GraphSchema, GraphStore, QueryResult

if TYPE_CHECKING:
    from kvgraph.filters import FilterSpec
    from kvgraph.graph.ask import GraphQAResult
    from kvgraph.graph.build import DocGraph
    from kvgraph.graph.node_index import IndexReport, NodeHit, NodeIndex
    from kvgraph.kb import KnowledgeBase

DOC_GRAPH_DIR = "doc-graph"


class KBGraph:
    """The graph side of a :class:`~kvgraph.kb.KnowledgeBase` (``kb.graph``)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb
        self._store: GraphStore | None = None
        self._index: NodeIndex | None = None
        self._doc_graph: DocGraph | None = None

    @property
    def store(self) -> GraphStore:
        if self._store is None:
            from kvgraph.graph.open import open_graph_store

            self._store = open_graph_store(self._kb.path, read_only=self._kb.read_only)
        return self._store

    def close(self) -> None:
        for obj in (self._index, self._store):
            if obj is not None:
                obj.close()
        self._index = self._store = None

    # ------------------------------------------------------------------ Cypher

    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        """Run one read-only Cypher statement with bound ``params``."""
        return self.store.query(cypher, params, read_only=True, timeout_s=timeout_s, max_rows=max_rows)

    def write(self, cypher: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one Cypher statement that may write (needs a knowledge base opened for writing)."""
        return self.store.query(cypher, params, read_only=False)

    def schema(self) -> GraphSchema:
        return self.store.schema()

    def import_cypher(self, script: str | Path) -> int:
        """Run a Cypher import script (text, or a path to a ``.cypher`` file)."""
        text = Path(script).read_text(encoding="utf-8") if isinstance(script, Path) else script
        return self.store.import_cypher(text)

    # ------------------------------------------------------------------ vectors on graph nodes

    def node_index(self) -> NodeIndex:
        if self._index is None:
            from kvgraph.graph.node_index import NodeIndex, index_path

            self._index = NodeIndex.open(
                self.store, index_path(self._kb.path), self._kb.embedder, read_only=self._kb.read_only
            )
        return self._index

    def index_nodes(self, label: str, text_properties: Sequence[str], key: str | None = None) -> IndexReport:
        """Embed ``text_properties`` of every ``label`` node; re-running embeds only what changed."""
        return self.node_index().index_nodes(label, text_properties, key=key)

    def search_nodes(self, query: str, k: int = 5, label: str | None = None) -> list[NodeHit]:
        """Indexed graph nodes by meaning; join them back into Cypher with their ``node_key``."""
        return self.node_index().search(query, k, label=label)

    # ------------------------------------------------------------------ questions

    def ask(self, question: str, tool: str = "auto", k: int = 4) -> GraphQAResult:
        """Answer from the node index (vector tool) or with text-to-Cypher (graph tool, needs an LLM)."""
        from kvgraph.graph.ask import GraphQA
        from kvgraph.graph.node_index import index_path

        index = self.node_index() if (Path(index_path(self._kb.path)) / "records.sqlite").exists() else None
        return GraphQA(self.store, self._kb.embedder, index, self._kb._llm(), k=k).ask(question, tool)

    # ------------------------------------------------------------------ knowledge vector graph

    @property
    def doc_graph_path(self) -> Path:
        return self._kb.path / DOC_GRAPH_DIR

    def build(self, export: bool = False) -> dict[str, Any]:
        """Build the document graph from the stored chunks (no LLM) and save it in ``KB/doc-graph/``.

        The graph's chunks are what search returns: plain chunks, or parents when the knowledge
        base has node references. ``export=True`` also writes it into the graph store as
        ``Chunk``/``Document``/``Entity`` nodes, for Cypher. Returns counts and timings.
        """
        import time

        import numpy as np

        from kvgraph.errors import InvalidInputError
        from kvgraph.graph.build import build_doc_graph, write_doc_graph

        kb = self._kb
        kb._check_writable()
        role = {"role": "parent"} if kb.stored_references() != "none" else None
        ids = kb.store.ids(filters=role)
        if not ids:
            raise InvalidInputError(f"knowledge base {kb.path} has no chunks yet: ingest documents first")
        t0 = time.perf_counter()
        nodes = [n for n in kb.store.get(ids) if n is not None]
        vectors = np.stack([n.embedding_array() for n in nodes])
        graph = build_doc_graph(nodes, vectors, embedder=kb.embedder)
        graph.save(self.doc_graph_path)
        self._doc_graph = graph
        report: dict[str, Any] = {
            "chunks": graph.count("chunk"),
            "documents": graph.count("document"),
            "entities": graph.count("entity"),
            "edges": graph.edge_counts(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if export:
            report["exported"] = write_doc_graph(graph, self.store)
        return report

    def doc_graph(self) -> DocGraph:
        """The saved document graph (``kvgraph graph build`` makes it)."""
        if self._doc_graph is None:
            from kvgraph.errors import InvalidInputError
            from kvgraph.graph.build import DocGraph

            if not (self.doc_graph_path / "graph.npz").exists():
                raise InvalidInputError(
                    f"knowledge base {self._kb.path} has no document graph yet: run kvgraph graph build"
                )
            self._doc_graph = DocGraph.load(self.doc_graph_path)
        return self._doc_graph

    def retriever(self, filters: FilterSpec = None, seed_mode: str = "hybrid", **params: Any) -> Any:
        """Knowledge-vector-graph retrieval: ``seed_mode`` search, then a personalized walk over the graph.

        ``params`` go to :class:`~kvgraph.retrieve.graph.KnowledgeGraphRetriever` (hops, damping, seeds, ...).
        """
        from kvgraph.retrieve.graph import KnowledgeGraphRetriever

        base = self._kb.retriever(filters=filters, mode=seed_mode, alpha=0.5 if seed_mode == "hybrid" else None)
        return KnowledgeGraphRetriever(base, self.doc_graph(), self._kb.store, self._kb.embedder, **params)

    def refresh(self) -> None:
        """Rebuild the document graph after the chunks changed, if one was built (keeps graph mode current)."""
        if (self.doc_graph_path / "graph.npz").exists():
            self._doc_graph = None
            self.build()
