"""``kb.graph``: the knowledge base's graph, its node index and its graph questions in one object.

Layout inside the knowledge-base directory::

    graph/          the embedded Ladybug database (or Neo4j when KVGRAPH_NEO4J_URI is set)
    graph-index/    vectors of graph nodes' text properties (kvgraph's own vector store)
    doc-graph/      the graph built from the ingested documents, as arrays (for retrieval),
                    and triples.jsonl, the cache of LLM-extracted triples

Everything opens on first use, read-only when the knowledge base was opened read-only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kvgraph.graphdb.base import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, GraphSchema, GraphStore, QueryResult
from kvgraph.kb.layout import DOC_GRAPH_DIR, TRIPLES_CACHE

if TYPE_CHECKING:
    import numpy as np

    from kvgraph.config import Settings
    from kvgraph.docgraph.build import DocGraph
    from kvgraph.docgraph.triples import TripleProgress
    from kvgraph.embed.base import Embedder
    from kvgraph.filters import FilterSpec
    from kvgraph.graphqa.ask import GraphQAResult
    from kvgraph.graphqa.node_index import IndexReport, NodeHit, NodeIndex
    from kvgraph.llm.base import LLM
    from kvgraph.retrieve.base import Retriever
    from kvgraph.retrieve.graph import KnowledgeGraphRetriever
    from kvgraph.schema import Node
    from kvgraph.store.embedded import EmbeddedVectorStore

log = logging.getLogger(__name__)

EXTRACTORS = ("offline", "llm", "both")


class GraphHost(Protocol):
    """What ``kb.graph`` uses of its knowledge base (a :class:`~kvgraph.kb.KnowledgeBase`).

    A protocol rather than the class itself, so that this module and the knowledge base do not
    import each other.
    """

    path: Path
    read_only: bool
    settings: Settings

    @property
    def store(self) -> EmbeddedVectorStore: ...

    @property
    def embedder(self) -> Embedder: ...

    def llm(self) -> LLM | None: ...

    def require_writable(self) -> None: ...

    def stored_references(self) -> str: ...

    def retriever(
        self, filters: FilterSpec = None, mode: str | None = None, alpha: float | None = None, rerank: str | None = None
    ) -> Retriever: ...


class KBGraph:
    """The graph side of a :class:`~kvgraph.kb.KnowledgeBase` (``kb.graph``)."""

    def __init__(self, kb: GraphHost) -> None:
        self._kb = kb
        self._store: GraphStore | None = None
        self._index: NodeIndex | None = None
        self._prefetch: threading.Thread | None = None

    @property
    def store(self) -> GraphStore:
        if self._store is None:
            from kvgraph.graphdb.open import open_graph_store

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
        """Run one read-only Cypher statement with bound ``params``.

        ``cypher`` is treated as untrusted, also when the knowledge base is writable: it passes the
        read-only guard and runs on a read-only handle in the graph's sandbox process
        (docs/security.md).
        """
        return self.store.query(cypher, params, read_only=True, timeout_s=timeout_s, max_rows=max_rows)

    def write(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        """Run one Cypher statement that may write (needs a knowledge base opened for writing)."""
        return self.store.query(cypher, params, read_only=False, timeout_s=timeout_s, max_rows=max_rows)

    def counts(self) -> tuple[int, int]:
        """(nodes, relationships) in the graph."""
        nodes = self.query("MATCH (n) RETURN count(n)").scalar()
        rels = self.query("MATCH ()-[r]->() RETURN count(r)").scalar()
        return int(nodes), int(rels)

    def schema(self) -> GraphSchema:
        return self.store.schema()

    def import_cypher(self, script: str | Path) -> int:
        """Run a Cypher import script (text, or a path to a ``.cypher`` file)."""
        text = Path(script).read_text(encoding="utf-8") if isinstance(script, Path) else script
        return self.store.import_cypher(text)

    def import_nodes(self, path: str | Path, label: str, key: str = "id", fmt: str | None = None) -> int:
        """Import a JSON, JSON Lines or CSV node list as ``label`` nodes keyed by ``key``; returns the count."""
        from kvgraph.graphdb.cypher_import import import_nodes_file

        return import_nodes_file(self.store, Path(path), label, key=key, fmt=fmt)

    def import_edges(
        self,
        path: str | Path,
        rel_type: str,
        *,
        source: str = "source",
        target: str = "target",
        source_label: str | None = None,
        target_label: str | None = None,
        key: str = "id",
        fmt: str | None = None,
    ) -> int:
        """Import an edge list as ``rel_type`` relationships between existing nodes; returns the count."""
        from kvgraph.graphdb.cypher_import import import_edges_file

        return import_edges_file(
            self.store,
            Path(path),
            rel_type,
            source=source,
            target=target,
            source_label=source_label,
            target_label=target_label,
            key=key,
            fmt=fmt,
        )

    # ------------------------------------------------------------------ vectors on graph nodes

    def node_index(self) -> NodeIndex:
        if self._index is None:
            from kvgraph.graphqa.node_index import NodeIndex, index_path

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
        """Answer from the node index (vector tool) or with text-to-Cypher (graph tool, needs an LLM).

        The LLM's Cypher is untrusted and runs like :meth:`query` (guard, read-only handle, sandbox).
        """
        from kvgraph.graphqa.ask import GraphQA
        from kvgraph.graphqa.node_index import index_path

        index = self.node_index() if (Path(index_path(self._kb.path)) / "records.sqlite").exists() else None
        return GraphQA(self.store, self._kb.embedder, index, self._kb.llm(), k=k).ask(question, tool)

    # ------------------------------------------------------------------ knowledge vector graph

    @property
    def doc_graph_path(self) -> Path:
        return self._kb.path / DOC_GRAPH_DIR

    def build(
        self,
        export: bool = False,
        extractor: str = "offline",
        progress: Callable[[TripleProgress], None] | None = None,
        concurrency: int = 4,
    ) -> dict[str, Any]:
        """Build the document graph from the stored chunks and save it in ``KB/doc-graph/``.

        The graph's chunks are what search returns: plain chunks, or parents when the knowledge
        base has node references. ``extractor`` picks the entities: ``offline`` (names and
        keyphrases, no LLM), ``llm`` (subject-relation-object triples from the configured LLM,
        with the chunk as provenance) or ``both``. LLM results are cached in
        ``KB/doc-graph/triples.jsonl``, so a rebuild asks only about new or changed chunks;
        ``progress`` sees requests and tokens as they accrue. ``export=True`` also writes the
        graph into the graph store as ``Chunk``/``Document``/``Entity`` nodes, for Cypher.
        Returns counts, timings and, with an LLM, the triple extraction's requests and tokens.
        """
        return self._build(extractor, export, progress, concurrency, require_llm=True)

    def _build(
        self,
        extractor: str,
        export: bool = False,
        progress: Callable[[TripleProgress], None] | None = None,
        concurrency: int = 4,
        require_llm: bool = True,
    ) -> dict[str, Any]:
        import time

        import numpy as np

        from kvgraph.docgraph.build import build_doc_graph, write_doc_graph
        from kvgraph.docgraph.triples import TripleExtractor
        from kvgraph.errors import InvalidInputError

        if extractor not in EXTRACTORS:
            raise InvalidInputError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {extractor!r}")
        kb = self._kb
        kb.require_writable()
        role = {"role": "parent"} if kb.stored_references() != "none" else None
        marker = getattr(kb.store, "change_marker", None)
        store_state = marker() if marker is not None else None  # before the ids (incremental.update_from_store)
        ids = kb.store.ids(filters=role)
        if not ids:
            raise InvalidInputError(f"knowledge base {kb.path} has no chunks yet: ingest documents first")
        t0 = time.perf_counter()
        nodes = [n for n in kb.store.get(ids) if n is not None]
        triples = None
        triple_report: dict[str, Any] | None = None
        if extractor != "offline":
            from kvgraph.llm.base import require_llm as llm_required

            llm = kb.llm()
            if require_llm:
                llm_required(llm, f"graph build --extractor {extractor}")
            run = TripleExtractor(
                llm, self.doc_graph_path / TRIPLES_CACHE, concurrency=concurrency, progress=progress
            ).extract(nodes)
            triples = run.triples
            stats = run.stats
            triple_report = {
                "model": run.model,
                "triples": run.count,
                "chunks_with_triples": len(run.triples),
                "requests": stats.requests,
                "cached": stats.cached,
                "missing": stats.missing,
                "unparsable": stats.unparsable,
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "seconds": round(run.seconds, 3),
            }
        vectors = np.stack([_stored_vector(n) for n in nodes])
        graph = build_doc_graph(
            nodes,
            vectors,
            embedder=self._kb.embedder,  # the graph keeps the name vectors (stored once)
            triples=triples,
            offline_entities=extractor != "llm",
            known_vectors=self._saved_name_vectors(),
        )
        graph.meta["extractor"] = extractor
        if store_state is not None:
            graph.meta["store"] = store_state
        if triple_report is not None:
            graph.meta["triple_extraction"] = triple_report
        graph.save(self.doc_graph_path, with_adjacency=True)  # a full build: processes map its adjacency
        from kvgraph.docgraph.cache import remember

        remember(self.doc_graph_path, graph)  # the process's queries use it without reading it back
        report: dict[str, Any] = {
            "extractor": extractor,
            "chunks": graph.count("chunk"),
            "documents": graph.count("document"),
            "entities": graph.count("entity"),
            "edges": graph.edge_counts(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if triple_report is not None:
            report["triple_extraction"] = triple_report
        if export:
            report["exported"] = write_doc_graph(graph, self.store)
        return report

    def _saved_name_vectors(self) -> dict[str, np.ndarray] | None:
        """Entity name vectors of the saved graph when the same model made them, for a rebuild to reuse."""
        from kvgraph.docgraph.build import name_vectors
        from kvgraph.docgraph.cache import shared_graph

        if not (self.doc_graph_path / "graph.npz").exists():
            return None
        try:
            saved = shared_graph(self.doc_graph_path)
        except Exception:  # a damaged graph is rebuilt from scratch
            return None
        if saved.meta.get("params", {}).get("entity_embedder") != self._kb.embedder.model_name:
            return None
        return name_vectors(saved)

    def doc_graph(self) -> DocGraph:
        """The saved document graph (``kvgraph graph build`` makes it).

        Loaded once per process and save (:mod:`kvgraph.docgraph.cache`): every handle and query
        shares it, and a save by any process is seen at the next call.
        """
        from kvgraph.docgraph.cache import shared_graph
        from kvgraph.errors import InvalidInputError

        if not (self.doc_graph_path / "graph.npz").exists():
            raise InvalidInputError(
                f"knowledge base {self._kb.path} has no document graph yet: run kvgraph graph build"
            )
        return shared_graph(self.doc_graph_path)

    def retriever(
        self, filters: FilterSpec = None, seed_mode: str = "hybrid", **params: Any
    ) -> KnowledgeGraphRetriever:
        """Knowledge-vector-graph retrieval: ``seed_mode`` search, then a personalized walk over the graph.

        ``params`` go to :class:`~kvgraph.retrieve.graph.KnowledgeGraphRetriever` (hops, damping, seeds, ...).
        """
        from kvgraph.retrieve.graph import KnowledgeGraphRetriever

        # The default reranker (auto) does not reach the seeds: the walk's defaults were chosen
        # (bench/kvg_cv.py) and checked on held-out multi-hop sets with unreranked seeds (reranked
        # ones are measured in docs/eval.md). A reranker the user names still reranks them.
        alpha = 0.5 if seed_mode == "hybrid" else None
        rerank = "none" if self._kb.settings.rerank == "auto" else None
        base = self._kb.retriever(filters=filters, mode=seed_mode, alpha=alpha, rerank=rerank)
        return KnowledgeGraphRetriever(base, self.doc_graph(), self._kb.store, self._kb.embedder, **params)

    def _update(self, saved: DocGraph, extractor: str) -> bool:
        """Bring ``saved`` up to date with the store without a rebuild; False when it must be rebuilt."""
        from kvgraph.docgraph.cache import remember
        from kvgraph.docgraph.incremental import NeedsRebuild, update_from_store
        from kvgraph.docgraph.triples import Triple, TripleExtractor

        kb = self._kb
        role = {"role": "parent"} if kb.stored_references() != "none" else None

        missing = 0

        def triples_of(nodes: Sequence[Node]) -> Mapping[str, Sequence[Triple]]:
            nonlocal missing
            run = TripleExtractor(kb.llm(), self.doc_graph_path / TRIPLES_CACHE).extract(nodes)
            missing += run.stats.missing
            return run.triples

        try:
            graph = update_from_store(
                saved, kb.store, role, self._kb.embedder, triples_of if extractor != "offline" else None
            )
        except NeedsRebuild as e:
            log.info("document graph rebuilt rather than updated: %s", e)
            return False
        if graph is not None:
            graph.save(self.doc_graph_path)  # atomic: a crash leaves the last saved graph
            remember(self.doc_graph_path, graph)
        if missing:
            log.warning(
                "document graph updated without triples for %d new chunks: no LLM is configured "
                "(run kvgraph graph build --extractor %s with one)",
                missing,
                extractor,
            )
        return True

    def describe_path(self, path: Sequence[str]) -> str:
        """How a graph-mode walk reached a chunk, in words (see :func:`kvgraph.retrieve.graph.describe_path`)."""
        from kvgraph.retrieve.graph import describe_path

        return describe_path(self.doc_graph(), path)

    def prefetch(self) -> None:
        """Start reading the saved document graph in a background thread, for a :meth:`refresh` to come.

        An ingest calls this before it parses, embeds and stores the files, so that the read
        (0.3 s at 100k chunks: arrays, 400k keys and their index) overlaps with that work instead
        of following it. Whatever goes wrong is left for the refresh, which reads the graph again.
        """
        if self._prefetch is not None or not (self.doc_graph_path / "graph.npz").exists():
            return
        from kvgraph.docgraph.cache import shared_graph

        def read() -> None:
            try:
                shared_graph(self.doc_graph_path)
                # and the modules the update runs (the entity patterns compile on import: ~40 ms;
                # numpy imports numpy.ma on the first np.unique: 15-50 ms)
                import numpy.ma  # noqa: F401

                import kvgraph.docgraph.incremental  # noqa: F401
            except Exception:  # the refresh meets it and decides
                return

        # A daemon: an ingest that changed nothing exits without waiting for a graph it never needs.
        self._prefetch = threading.Thread(target=read, name="kvgraph-graph-prefetch", daemon=True)
        self._prefetch.start()

    def refresh(self) -> None:
        """Update the document graph after the chunks changed, if one was built (keeps graph mode current).

        The graph is updated in place of a rebuild where it can be (:mod:`kvgraph.docgraph.incremental`:
        only the changed documents' chunks are processed; saved atomically like a build), else
        rebuilt with the extractor of the last build. With ``llm`` or ``both`` it asks the
        LLM only about new or changed chunks; when no LLM is configured it uses the cached
        triples and logs how many chunks have none, rather than failing the ingest that called it.
        """
        if self._prefetch is not None:
            self._prefetch.join()  # then shared_graph holds what it read
            self._prefetch = None
        if not (self.doc_graph_path / "graph.npz").exists():
            return
        from kvgraph.docgraph.cache import shared_graph

        try:
            saved = shared_graph(self.doc_graph_path)  # no second read when already loaded
            extractor = str(saved.meta.get("extractor") or "offline")
        except Exception:  # an unreadable graph is rebuilt from scratch, offline
            saved, extractor = None, "offline"
        if saved is not None and self._update(saved, extractor):
            return
        report = self._build(extractor if extractor in EXTRACTORS else "offline", require_llm=False)
        missing = (report.get("triple_extraction") or {}).get("missing", 0)
        if missing:
            log.warning(
                "document graph rebuilt without triples for %d new chunks: no LLM is configured "
                "(run kvgraph graph build --extractor %s with one)",
                missing,
                extractor,
            )


def _stored_vector(node: Node) -> np.ndarray:
    vec = node.embedding_array()
    if vec is None:  # the store returns vectors with every node; a missing one is damage, not input
        from kvgraph.errors import CorruptionError

        raise CorruptionError(f"chunk {node.id}", "no stored vector: run kvgraph store check")
    return vec
