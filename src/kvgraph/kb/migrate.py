"""Moving a knowledge base between engines: embedded ↔ Postgres + pgvector, embedded Ladybug ↔ a Bolt server.

``migrate(kb, store_uri=..., graph_uri=...)`` copies what the knowledge base holds into the
target, checks the copy, and only then switches ``kvgraph.toml`` to the target (``""`` means the
embedded engine in the KB directory). The source is never changed while copying: an interrupted
migration leaves the knowledge base on its source, and running it again starts over (the target
must be empty, so a half copy is never mistaken for a whole one; drop it first). After the switch
an embedded source directory is kept beside the new one as ``store.migrated-<time>`` /
``graph.migrated-<time>`` (delete it once satisfied); a server source is left as it is.

Vectors: every node (id, text, metadata, document, relationships, embedding) and the knowledge
base's own keys (embedding model, chunking). Graph: every node of every label (merged by ``id``
where all nodes of the label have one, else by ``_kvgraph_key``, the source's node key) and
every relationship with its properties. The file registry and caches stay in the KB directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvgraph.config import load_settings, write_settings
from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.base import GraphStore
from kvgraph.graphdb.types import quote
from kvgraph.kb.backends import KBStore
from kvgraph.kb.layout import CHUNKING_META, STORE_DIR

COPIED_META = ("embedding_model", CHUNKING_META)
GRAPH_KEY = "_kvgraph_key"
BATCH = 2_000

Progress = Callable[[str, int, int], None]  # (part, done, total)


@dataclass
class MigrationReport:
    store_from: str = ""
    store_to: str = ""
    nodes: int = 0
    graph_from: str = ""
    graph_to: str = ""
    graph_nodes: int = 0
    graph_edges: int = 0
    kept: list[str] = field(default_factory=list)  # embedded sources set aside
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def migrate(
    kb_path: str | Path,
    *,
    store_uri: str | None = None,
    graph_uri: str | None = None,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy the vectors to ``store_uri`` and/or the graph to ``graph_uri`` ("" = embedded), then switch.

    ``None`` leaves that part where it is.
    """
    from kvgraph.kb.backends import describe

    path = Path(kb_path)
    if not path.is_dir():
        raise InvalidInputError(f"no knowledge base at {path}")
    t0 = time.perf_counter()
    file_settings = load_settings(path, env={})  # what kvgraph.toml says, without this shell's variables
    current = load_settings(path)
    report = MigrationReport()
    where = describe(current, path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    if store_uri is not None and store_uri != current.store_uri:
        report.store_from = where["store"]
        report.nodes = _copy_store(path, current.store_uri, store_uri, progress)
        file_settings = replace(file_settings, store_uri=store_uri)
        report.store_to = describe(file_settings, path)["store"]
    if graph_uri is not None and graph_uri != (current.graph_uri or ""):
        report.graph_from = where["graph"]
        report.graph_nodes, report.graph_edges = _copy_graph(path, current.graph_uri, graph_uri, progress)
        file_settings = replace(file_settings, graph_uri=graph_uri)
        report.graph_to = describe(file_settings, path)["graph"]
    write_settings(path, file_settings)  # the switch: from here on the knowledge base opens the targets
    # embedded sources are set aside only after the switch, so a crash before it leaves them in use
    if report.store_to and not current.store_uri and (path / STORE_DIR).exists():
        kept = path / f"{STORE_DIR}.migrated-{stamp}"
        (path / STORE_DIR).rename(kept)
        report.kept.append(str(kept))
    if report.graph_to and not current.graph_uri and (path / "graph").exists():
        kept = path / f"graph.migrated-{stamp}"
        (path / "graph").rename(kept)
        report.kept.append(str(kept))
    report.seconds = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------------- vectors


def _open_store(path: Path, uri: str, read_only: bool, dim: int | None = None, metric: str | None = None) -> KBStore:
    if uri:
        from kvgraph.store.postgres import PostgresVectorStore

        # the HNSW index is built once after the copy: faster than growing it row by row
        return PostgresVectorStore.open(uri, read_only=read_only, dim=dim, metric=metric, build_index=False)
    from kvgraph.store import EmbeddedVectorStore

    target = path / STORE_DIR
    if not read_only and target.exists():
        raise InvalidInputError(
            f"{target} exists: move it aside before migrating the vectors back into the knowledge base directory"
        )
    return EmbeddedVectorStore.open(target, read_only=read_only, dim=dim, metric=metric)


def _copy_store(path: Path, source_uri: str, target_uri: str, progress: Progress | None) -> int:
    if not source_uri and not (path / STORE_DIR).exists():
        raise InvalidInputError(f"{path}: nothing ingested, no vectors to migrate")
    # writable: the writer lock keeps an ingest from changing the source while it is copied
    source = _open_store(path, source_uri, read_only=False) if source_uri else _embedded_source(path)
    try:
        stats = source.stats()
        target = _open_store(path, target_uri, read_only=False, dim=int(stats["dim"]) or None, metric=stats["metric"])
        try:
            if target.count():
                raise InvalidInputError(
                    f"{target.path}: the target already holds {target.count()} nodes; migrate into an empty one"
                )
            ids = source.ids()
            for i in range(0, len(ids), BATCH):
                nodes = [n for n in source.get(ids[i : i + BATCH]) if n is not None]
                target.add(nodes)
                if progress:
                    progress("vectors", min(i + BATCH, len(ids)), len(ids))
            if target_uri:
                from kvgraph.store.postgres import PostgresVectorStore

                if isinstance(target, PostgresVectorStore):
                    target.build_index()
            for key in COPIED_META:
                value = source.get_meta(key)
                if value is not None:
                    target.set_meta(key, value)
            if target.count() != source.count() or target.ids() != ids:
                raise InvalidInputError(
                    f"{target.path}: the copy holds {target.count()} nodes, the source {source.count()}; "
                    "nothing was switched"
                )
            return len(ids)
        finally:
            target.close()
    finally:
        source.close()


def _embedded_source(path: Path) -> KBStore:
    from kvgraph.store import EmbeddedVectorStore

    return EmbeddedVectorStore.open(path / STORE_DIR, read_only=False)


# ----------------------------------------------------------------------------- graph


def _open_graph(path: Path, uri: str, read_only: bool) -> GraphStore:
    from kvgraph.graphdb.open import open_bolt_store

    if uri:
        return open_bolt_store(uri, read_only=read_only)
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    target = path / "graph"
    if not read_only and target.exists():
        raise InvalidInputError(
            f"{target} exists: move it aside before migrating the graph back into the knowledge base directory"
        )
    return LadybugGraphStore.open(target, read_only=read_only)


def _copy_graph(path: Path, source_uri: str, target_uri: str, progress: Progress | None) -> tuple[int, int]:
    from kvgraph.graphdb.open import configured_graph_uri

    source_uri = source_uri or configured_graph_uri(None)
    if not source_uri and not (path / "graph").exists():
        raise InvalidInputError(f"{path}: no graph to migrate")
    source = _open_graph(path, source_uri, read_only=True)
    try:
        target = _open_graph(path, target_uri, read_only=False)
        try:
            if int(target.query("MATCH (n) RETURN count(n)").scalar()):
                raise InvalidInputError(f"{target_uri or path / 'graph'}: the target graph is not empty")
            return _copy_graph_contents(source, target, progress)
        finally:
            target.close()
    finally:
        source.close()


def _copy_graph_contents(source: GraphStore, target: GraphStore, progress: Progress | None) -> tuple[int, int]:
    schema = source.schema()
    keys: dict[str, str] = {}
    n_nodes = n_edges = 0
    for label in sorted(schema.node_labels):
        nodes = source.nodes(label)
        by_id = all(p.get("id") is not None for _, p in nodes)
        key = "id" if by_id else GRAPH_KEY
        rows = [_props(p) if by_id else {**_props(p), GRAPH_KEY: k} for k, p in nodes]
        for i in range(0, len(rows), BATCH):
            new = target.upsert_nodes(label, rows[i : i + BATCH], key=key)
            keys.update(zip((k for k, _ in nodes[i : i + BATCH]), new))
        n_nodes += len(rows)
        if progress:
            progress(f"graph nodes ({label})", len(rows), len(rows))
    for rel in sorted(schema.rel_types):
        a, b = source.node_key_expr("a"), source.node_key_expr("b")
        found = source.query(f"MATCH (a)-[r:{quote(rel)}]->(b) RETURN {a}, {b}, r", timeout_s=None, max_rows=None)
        edges = [(keys[s], keys[d], _props(r)) for s, d, r in found.rows]
        for i in range(0, len(edges), BATCH):
            n_edges += target.upsert_edges(rel, edges[i : i + BATCH])
        if progress:
            progress(f"graph edges ({rel})", len(edges), len(edges))
    return n_nodes, n_edges


def _props(value: Any) -> dict[str, Any]:
    """A node's or relationship's own properties: the engines' bookkeeping (``_label``, ``_id``...) left out."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if not k.startswith("_") and v is not None}
