"""Vectors on graph nodes: embed text properties of nodes so that questions find them by meaning.

``NodeIndex.index_nodes("Task", ["name", "description", "status"])`` reads every ``:Task`` node,
builds one text per node from those properties ("name: BugFix\\ndescription: ..."), embeds it
and stores it in its own :class:`~kvgraph.store.EmbeddedVectorStore` directory (a knowledge base
keeps it in ``graph-index/``), apart from the document chunks. Each vector keeps the node's
*graph key*, so search results join back into Cypher::

    hits = index.search("How will the recommendation service be updated?", k=4)
    clause = graph.match_keys_clause("t", "ids")
    graph.query(f"MATCH (t:Task) WHERE {clause} RETURN t.name", {"ids": [h.node_key for h in hits]})

Re-running ``index_nodes`` is incremental: the text of every node is hashed (with the embedding
model's name), only nodes whose text changed are embedded again, and vectors of nodes that left
the graph (or lost all their text) are removed. Vector metadata: ``label``, ``graph_key``,
``text_hash``, ``properties`` (JSON of the indexed properties) and ``name`` (the ``key`` property).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError, ReadOnlyError
from kvgraph.graphdb.base import GraphStore
from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

INDEX_DIR = "graph-index"  # a knowledge base's node index: KB/graph-index/
MANIFEST_KEY = "node_index"  # vector-store meta: {label: {"text_properties": [...], "key": ..., "model": ...}}
EMBED_BATCH = 256


@dataclass
class IndexReport:
    """What one ``index_nodes`` run did to the vectors of one label."""

    label: str
    added: int = 0
    updated: int = 0  # text changed: embedded again
    removed: int = 0  # node gone from the graph, or no text left
    unchanged: int = 0
    empty: int = 0  # nodes with none of the text properties set: not indexed
    seconds: float = 0.0

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "embedded": self.embedded}


@dataclass
class NodeHit:
    """A graph node found by meaning: its graph key (for Cypher), similarity and indexed properties."""

    node_key: str
    score: float
    properties: dict[str, Any]
    label: str
    text: str
    name: str | None = None  # the value of the index's ``key`` property, for people

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def index_path(kb_path: str | os.PathLike[str]) -> str:
    """Where a knowledge base keeps its node index."""
    return os.path.join(kb_path, INDEX_DIR)


def node_text(properties: dict[str, Any], text_properties: Sequence[str]) -> str:
    """The text embedded for a node: one ``name: value`` line per non-empty property, in the order given."""
    lines = []
    for name in text_properties:
        value = properties.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        lines.append(f"{name}: {str(value).strip()}")
    return "\n".join(lines)


def _vector_id(label: str, node_key: str) -> str:
    # A node with two labels may be indexed under each; its key alone would collide (Neo4j's elementId).
    return f"{label}|{node_key}"


def _label_doc(label: str) -> str:
    return f"graph-label:{label}"


class NodeIndex:
    """Embeddings of graph nodes' text properties in ``vector_store``, searchable by meaning.

    Use :meth:`open` to open (or create) the index directory for an embedder; the constructor
    takes an already opened store.
    """

    def __init__(self, graph_store: GraphStore, vector_store: EmbeddedVectorStore, embedder: Embedder) -> None:
        self.graph_store = graph_store
        self.vector_store = vector_store
        self.embedder = embedder

    @classmethod
    def open(
        cls,
        graph_store: GraphStore,
        path: str | os.PathLike[str],
        embedder: Embedder,
        read_only: bool = False,
    ) -> NodeIndex:
        """Open the node index at ``path`` (created unless ``read_only``) for ``embedder``'s vectors."""
        if read_only and not os.path.exists(os.path.join(path, "records.sqlite")):
            raise InvalidInputError(
                f"{path}: no graph nodes are indexed yet; index some first, e.g. "
                "kvgraph graph index-nodes --label Task --text name,description"
            )
        store = EmbeddedVectorStore.open(path, dim=embedder.dim, read_only=read_only)
        return cls(graph_store, store, embedder)

    def close(self) -> None:
        self.vector_store.close()

    def __enter__(self) -> NodeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NodeIndex({str(self.vector_store.path)!r}, labels={sorted(self.manifest())})"

    # ------------------------------------------------------------------ what is indexed

    def manifest(self) -> dict[str, dict[str, Any]]:
        """The indexed labels: ``{label: {"text_properties": [...], "key": ..., "model": ..., "nodes": n}}``."""
        raw = self.vector_store.get_meta(MANIFEST_KEY)
        return json.loads(raw) if raw else {}

    # ------------------------------------------------------------------ indexing

    def index_nodes(self, label: str, text_properties: Sequence[str], key: str | None = None) -> IndexReport:
        """Embed the ``text_properties`` of every ``label`` node; see the module docstring.

        ``key`` names a property that identifies the node for people (e.g. ``name``); it is
        kept as the hit's ``name`` and cited in answers. Default: ``name`` when it is one of
        ``text_properties``, else none.
        """
        started = time.perf_counter()
        if self.vector_store.read_only:
            raise ReadOnlyError(
                f"{self.vector_store.path}: the node index was opened read-only; open it writable to index"
            )
        if not isinstance(label, str) or not label:
            raise InvalidInputError(f"label must be a non-empty string, got {label!r}")
        if isinstance(text_properties, str) or not text_properties:
            raise InvalidInputError(
                f"text_properties must be a non-empty list of property names, got {text_properties!r}"
            )
        props = list(dict.fromkeys(text_properties))
        if not all(isinstance(p, str) and p for p in props):
            raise InvalidInputError(f"text_properties must be property names, got {text_properties!r}")
        if key is None and "name" in props:
            key = "name"
        wanted = props + ([key] if key and key not in props else [])
        rows = self.graph_store.nodes(label, wanted)  # names the unknown label or property

        model = self.embedder.model_name
        report = IndexReport(label)
        existing = {n.id: n for n in self.vector_store.get_ref_doc(_label_doc(label))}
        seen: set[str] = set()
        to_embed: list[Node] = []
        metadata_only: list[Node] = []
        for node_key, values in rows:
            text = node_text(values, props)
            if not text:
                report.empty += 1
                continue
            vid = _vector_id(label, node_key)
            seen.add(vid)
            shown = {p: values.get(p) for p in wanted}
            meta: dict[str, Any] = {
                "label": label,
                "graph_key": node_key,
                "text_hash": hashlib.sha256(f"{model}\0{text}".encode()).hexdigest(),
                "properties": json.dumps(shown, ensure_ascii=False, default=str, sort_keys=True),
            }
            if key and values.get(key) is not None:
                meta["name"] = str(values[key])
            node = Node(vid, text, meta, ref_doc_id=_label_doc(label))
            old = existing.get(vid)
            if old is None:
                report.added += 1
                to_embed.append(node)
            elif old.metadata.get("text_hash") != meta["text_hash"]:
                report.updated += 1
                to_embed.append(node)
            elif old.metadata != meta:
                metadata_only.append(node)  # e.g. the key property changed: keep the vector
                report.unchanged += 1
            else:
                report.unchanged += 1
        for start in range(0, len(to_embed), EMBED_BATCH):
            batch = to_embed[start : start + EMBED_BATCH]
            vectors = self.embedder.embed([n.text for n in batch])
            for n, v in zip(batch, vectors):
                n.embedding = v
        if metadata_only:
            kept = self.vector_store.get([n.id for n in metadata_only])
            for n, old_node in zip(metadata_only, kept):
                n.embedding = old_node.embedding if old_node is not None else None
        changed = to_embed + [n for n in metadata_only if n.embedding is not None]
        if changed:
            self.vector_store.add(changed)
        gone = [vid for vid in existing if vid not in seen]
        if gone:
            report.removed = self.vector_store.delete(gone)
        manifest = self.manifest()
        entry = {"text_properties": props, "key": key, "model": model, "nodes": len(seen)}
        if manifest.get(label) != entry:
            manifest[label] = entry
            self.vector_store.set_meta(MANIFEST_KEY, json.dumps(manifest, sort_keys=True))
        report.seconds = time.perf_counter() - started
        return report

    def remove_label(self, label: str) -> int:
        """Drop every vector of ``label`` and forget its settings; returns how many were removed."""
        removed = self.vector_store.delete_ref_doc(_label_doc(label))
        manifest = self.manifest()
        if manifest.pop(label, None) is not None:
            self.vector_store.set_meta(MANIFEST_KEY, json.dumps(manifest, sort_keys=True))
        return removed

    # ------------------------------------------------------------------ searching

    def search(self, query: str, k: int = 5, label: str | None = None, mode: str = "dense") -> list[NodeHit]:
        """The ``k`` indexed nodes (of ``label``, or any) whose text best matches ``query``.

        ``mode`` is a vector-store mode: dense, sparse (BM25), hybrid or mmr.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string")
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        manifest = self.manifest()
        if label is not None and label not in manifest:
            indexed = ", ".join(sorted(manifest)) or "none"
            raise InvalidInputError(f"label {label!r} is not indexed (indexed labels: {indexed})")
        models = {entry.get("model") for entry in manifest.values()}
        if models and self.embedder.model_name not in models:
            raise InvalidInputError(
                f"the node index was embedded with {', '.join(sorted(map(str, models)))}, not with "
                f"{self.embedder.model_name!r}; index the nodes again with this embedder"
            )
        if self.vector_store.count() == 0:
            return []
        embedding = self.embedder.embed([query])[0] if mode != "sparse" else None
        result = self.vector_store.query(
            VectorStoreQuery(
                query_embedding=embedding,
                query_str=query,
                similarity_top_k=k,
                filters={"label": label} if label else None,
                mode=mode,
            )
        )
        return [_hit(node, float(score)) for node, score in zip(result.nodes, result.similarities)]


def _hit(node: Node, score: float) -> NodeHit:
    meta = node.metadata
    name = meta.get("name")
    return NodeHit(
        node_key=str(meta["graph_key"]),
        score=score,
        properties=json.loads(str(meta.get("properties") or "{}")),
        label=str(meta["label"]),
        text=node.text,
        name=str(name) if name is not None else None,
    )
