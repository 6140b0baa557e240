"""Which engines a knowledge base runs on, chosen by URI in its settings, never by its callers.

* vectors: ``store_uri`` empty (the default) is the embedded store in ``KB/store/``;
  ``postgresql://user@host:5432/db?schema=NAME`` is Postgres + pgvector
  (:class:`~kvgraph.store.postgres.PostgresVectorStore`).
* graph: ``graph_uri`` empty (or ``KVGRAPH_NEO4J_URI`` unset) is embedded Ladybug in ``KB/graph/``;
  ``bolt://`` / ``neo4j://`` is a Bolt server (Neo4j, ArcadeDB; :mod:`kvgraph.graphdb.open`).

Both come from ``KB/kvgraph.toml`` or ``KVGRAPH_STORE_URI`` / ``KVGRAPH_GRAPH_URI``; passwords come
from the environment (``PGPASSWORD``, ``KVGRAPH_NEO4J_PASSWORD``) and are never written to the file.
Everything else in the knowledge base (file registry, caches, settings, document graph) stays in
its directory on the machine that runs the writer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from kvgraph.config import Settings
from kvgraph.errors import InvalidInputError
from kvgraph.kb.layout import STORE_DIR

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder
    from kvgraph.ingest.pipeline import Splitter
    from kvgraph.store.embedded import EmbeddedVectorStore
    from kvgraph.store.postgres import PostgresVectorStore

KBStore: TypeAlias = "EmbeddedVectorStore | PostgresVectorStore"


def is_remote_store(settings: Settings) -> bool:
    """True when the vectors live on a server (``store_uri`` set)."""
    return bool(settings.store_uri)


def open_store(kb_path: Path, settings: Settings, read_only: bool, **options: Any) -> KBStore:
    """The knowledge base's vector store, embedded or on the server its settings name."""
    if settings.store_uri:
        from kvgraph.store.postgres import PostgresVectorStore

        return PostgresVectorStore.open(settings.store_uri, read_only=read_only, **options)
    from kvgraph.store import EmbeddedVectorStore

    return EmbeddedVectorStore.open(kb_path / STORE_DIR, read_only=read_only, **options)


def describe(settings: Settings, kb_path: str | os.PathLike[str]) -> dict[str, str]:
    """Where the vectors and the graph of a knowledge base are, without passwords (for stats, logs)."""
    from kvgraph.graphdb.open import configured_graph_uri, graph_path
    from kvgraph.store.pg_sql import redact_uri

    graph = settings.graph_uri or configured_graph_uri(kb_path)
    return {
        "store": redact_uri(settings.store_uri) if settings.store_uri else str(Path(kb_path) / STORE_DIR),
        "graph": redact_uri(graph) if graph else str(graph_path(kb_path)),
    }


# ----------------------------------------------------------------------------- ingestion on Ray


@dataclass(frozen=True)
class SettingsPipeline:
    """The splitter and embedder of a knowledge base's settings, built on a Ray worker (it pickles).

    One embedding thread per task: Ray runs one task per CPU, so the cores stay busy without
    oversubscribing them.
    """

    embedder: str
    chunk_size: int
    chunk_overlap: int
    context_headers: bool = True
    min_section_chars: int = 0

    @property
    def key(self) -> str:
        return f"{self.embedder}|{self.chunk_size}|{self.chunk_overlap}|{self.context_headers}|{self.min_section_chars}"

    def build(self) -> tuple[Splitter, Embedder]:
        from kvgraph.embed.factory import embedder_from_spec
        from kvgraph.ingest.splitter import SentenceSplitter

        embedder = embedder_from_spec(self.embedder, threads=1)
        counter_of = getattr(embedder, "token_counter", None)
        if counter_of is None:
            raise InvalidInputError(f"embedder {self.embedder!r} has no local tokenizer to count chunk tokens")
        splitter = SentenceSplitter(
            counter_of(),
            self.chunk_size,
            self.chunk_overlap,
            context_headers=self.context_headers,
            min_section_chars=self.min_section_chars,
        )
        return splitter, embedder


def ray_pipeline(settings: Settings) -> SettingsPipeline:
    """The worker pipeline for ``settings``; node references need the local engine for now."""
    if settings.references != "none":
        raise InvalidInputError(
            f"--engine ray splits plain chunks; this knowledge base uses references = {settings.references!r}: "
            "ingest with the local engine"
        )
    from kvgraph.ingest.loaders.markdown import MIN_SECTION_CHARS

    # the same chunks as the local engine makes (KnowledgeBase's splitter): a KB may mix both engines
    return SettingsPipeline(
        settings.embedder,
        settings.chunk_size,
        settings.chunk_overlap,
        context_headers=settings.context_headers,
        min_section_chars=MIN_SECTION_CHARS,
    )
