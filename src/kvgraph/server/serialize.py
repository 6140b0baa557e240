"""Knowledge-base results as JSON: hits, answers with their cited text, documents, graphs.

These run on the reader thread that made the result (a hit's node may be read lazily from
the store that returned it).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Answer, NodeWithScore, source_label
from kvgraph.server.security import UPLOAD_DIR

TEXT_CHARS = 4_000  # of a chunk's text in a response; the chunk itself can be longer


def file_id(path: str) -> str:
    """A stable, URL-safe id for an ingested file (its path is not)."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def hit_dict(hit: NodeWithScore, walked: str | None = None) -> dict[str, Any]:
    node = hit.node
    meta = node.metadata
    path = getattr(hit, "path", None)
    file_path = meta.get("file_path")
    page = meta.get("page")
    out: dict[str, Any] = {
        "id": node.id,
        "score": float(hit.score),
        "text": node.text[:TEXT_CHARS],
        "source": source_label(meta),
        "file_path": file_path if isinstance(file_path, str) else None,
        "file_name": Path(file_path).name if isinstance(file_path, str) else meta.get("file_name"),
        "page": page if isinstance(page, int) and not isinstance(page, bool) else None,
        "metadata": meta,
    }
    if path:
        out["path"] = list(path)
    if walked:
        out["path_text"] = walked
    return out


def hits_dicts(kb: KnowledgeBase, hits: Sequence[NodeWithScore], mode: str | None) -> list[dict[str, Any]]:
    """Hits as JSON; in graph mode each hit walked to also says how, in words and as a small graph."""
    graph_mode = (mode or kb.settings.mode) == "graph"
    out = []
    for h in hits:
        path = list(getattr(h, "path", None) or [])
        walked = kb.graph.describe_path(path) if graph_mode and len(path) > 1 else None
        d = hit_dict(h, walked)
        if walked:
            d["path_graph"] = walk_graph(kb, path)
        out.append(d)
    return out


def answer_dict(answer: Answer, question: str) -> dict[str, Any]:
    """The answer, its citations (each with the cited chunk's text, file and page) and every source."""
    texts = {h.node.id: h.node.text for h in answer.source_nodes}
    citations = []
    for c in answer.citations:
        citations.append(
            {
                "number": c.number,
                "node_id": c.node_id,
                "source": c.source,
                "file_path": c.file_path,
                "file_name": Path(c.file_path).name if c.file_path else None,
                "page": c.page,
                "score": c.score,
                "text": texts.get(c.node_id, "")[:TEXT_CHARS],
            }
        )
    return {
        "question": question,
        "answer": answer.text,
        "mode": answer.mode,
        "citations": citations,
        "sources": [hit_dict(h) for h in answer.source_nodes],
    }


def document_dict(record: dict[str, Any], kb_path: Path) -> dict[str, Any]:
    path = str(record["path"])
    uploads = (kb_path / UPLOAD_DIR).resolve()
    return {
        "id": file_id(path),
        "name": Path(path).name,
        "path": path,
        "uploaded": Path(path).parent == uploads,
        "size": record.get("size"),
        "documents": len(record.get("doc_ids") or []),
        "chunks": record.get("n_nodes"),
        "tokens": record.get("n_tokens"),
        "ingested_at": record.get("ingested_at"),
        "sha256": record.get("sha256"),
    }


# ---------------------------------------------------------------------- graphs for the graph view


def cypher_graph(rows: Iterable[Iterable[Any]]) -> dict[str, list[dict[str, Any]]]:
    """The nodes, relationships and paths found anywhere in Cypher result rows, as one graph.

    Nodes are the engine's node values (``_key``, ``_label``, properties); relationships carry
    ``_type``, ``_src`` and ``_dst`` node keys; a path value contributes both.
    """
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}
    placeholders: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if "_key" in value and "_label" in value:
                key = str(value["_key"])
                props = {k: v for k, v in value.items() if not k.startswith("_")}
                if key not in nodes or key in placeholders:  # the node itself beats a relationship's endpoint
                    placeholders.discard(key)
                    nodes[key] = {
                        "id": key,
                        "label": str(value["_label"]),
                        "name": _name(props, key),
                        "properties": props,
                    }
                return
            if "_type" in value and "_src" in value and "_dst" in value:
                if value["_src"] is None or value["_dst"] is None:
                    return
                src, dst = str(value["_src"]), str(value["_dst"])
                props = {k: v for k, v in value.items() if not k.startswith("_")}
                edge = {"source": src, "target": dst, "type": value["_type"], "properties": props}
                edges.setdefault((src, dst, str(value["_type"])), edge)
                for end in (src, dst):  # an endpoint not in the result still needs a node to draw
                    if end not in nodes:
                        placeholders.add(end)
                        nodes[end] = {"id": end, "label": end.split(":", 1)[0], "name": end, "properties": {}}
                return
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    for row in rows:
        for value in row:
            visit(value)
    return {"nodes": list(nodes.values()), "edges": list(edges.values())}


def _name(props: dict[str, Any], key: str) -> str:
    for name in ("name", "title", "label", "text", "id"):
        value = props.get(name)
        if isinstance(value, (str, int)) and str(value):
            text = str(value)
            return text if len(text) <= 60 else text[:57] + "..."
    return key


def walk_graph(kb: KnowledgeBase, path: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """A knowledge-vector-graph walk path (doc-graph keys) as nodes and the edges between them."""
    graph = kb.graph.doc_graph()
    types = list(graph.edge_counts())  # edge type names, in the order of the type codes
    labels = _chunk_labels(kb, path)
    nodes = [_doc_node(graph, key, labels) for key in dict.fromkeys(path)]
    edges = []
    for a, b in itertools.pairwise(path):
        relations = graph.relations(a, b)
        if relations:
            relation, direction, _chunk = relations[0]
            src, dst = (a, b) if direction == "->" else (b, a)
            edges.append({"source": src, "target": dst, "type": relation})
        else:
            edges.append({"source": a, "target": b, "type": _edge_type(graph, types, a, b)})
    return {"nodes": nodes, "edges": edges}


def doc_graph_neighbourhood(kb: KnowledgeBase, key: str, limit: int) -> dict[str, Any]:
    """A document-graph node and up to ``limit`` neighbours, with the typed edges between them."""
    graph = kb.graph.doc_graph()
    idx = graph.index.get(key)
    if idx is None:
        raise InvalidInputError(f"the document graph has no node {key!r} (chunk id, doc:ID or entity:NAME)")
    types = list(graph.edge_counts())
    touching = [int(i) for i in ((graph.src == idx) | (graph.dst == idx)).nonzero()[0]]
    touching.sort(key=lambda e: -float(graph.weight[e]))
    ends = [(graph.keys[int(graph.src[e])], graph.keys[int(graph.dst[e])]) for e in touching[:limit]]
    labels = _chunk_labels(kb, [key, *(k for pair in ends for k in pair)])
    nodes = {key: _doc_node(graph, key, labels)}
    edges = []
    for e, (s, d) in zip(touching, ends):
        for end in (s, d):
            if end not in nodes:
                nodes[end] = _doc_node(graph, end, labels)
        edges.append({"source": s, "target": d, "type": types[int(graph.etype[e])], "weight": float(graph.weight[e])})
    return {"center": key, "nodes": list(nodes.values()), "edges": edges, "truncated": len(touching) > limit}


def _chunk_labels(kb: KnowledgeBase, keys: Iterable[str]) -> dict[str, str]:
    """Chunk key -> "file > heading" or "file p. 3": a chunk's name in the graph is only its id."""
    ids = [k for k in dict.fromkeys(keys) if not k.startswith(("doc:", "entity:"))]
    found = kb.store.get(ids) if ids else []
    return {i: source_label(n.metadata) for i, n in zip(ids, found) if n is not None}


def _edge_type(graph: Any, types: list[str], a: str, b: str) -> str:
    ia, ib = graph.index.get(a), graph.index.get(b)
    if ia is None or ib is None:
        return ""
    hit = (((graph.src == ia) & (graph.dst == ib)) | ((graph.src == ib) & (graph.dst == ia))).nonzero()[0]
    return types[int(graph.etype[int(hit[0])])] if len(hit) else ""


def _doc_node(graph: Any, key: str, labels: dict[str, str]) -> dict[str, Any]:
    idx = graph.index.get(key)
    kind = str(graph.kinds[idx]) if idx is not None else "chunk"
    name = labels.get(key) or (str(graph.names[idx]) if idx is not None else key)
    shown = name if len(name) <= 60 else name[:57] + "..."
    return {"id": key, "label": kind, "name": shown, "properties": {"kind": kind, "key": key}}
