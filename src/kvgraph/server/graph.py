"""The graph routes: read-only Cypher with bound parameters, the schema, routed graph questions,
and node neighbourhoods for the page's graph view (Cypher graph or document graph)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from kvgraph.kb import KnowledgeBase
from kvgraph.server.api import EngineDep
from kvgraph.server.engine import Engine
from kvgraph.server.models import GraphAskRequest, GraphQueryRequest
from kvgraph.server.serialize import cypher_graph, doc_graph_neighbourhood

router = APIRouter(prefix="/api/graph", tags=["graph"])


@router.post("/query", summary="Run one read-only Cypher statement with bound parameters")
async def query(body: GraphQueryRequest, engine: Engine = EngineDep) -> dict[str, Any]:
    def read(kb: KnowledgeBase) -> dict[str, Any]:
        result = kb.graph.query(body.cypher, body.params, timeout_s=body.timeout_s, max_rows=body.max_rows)
        return {
            "columns": result.columns,
            "rows": result.rows,
            "truncated": result.truncated,
            "graph": cypher_graph(result.rows),
        }

    return await engine.read(read)


@router.get("/schema", summary="Node labels, relationship types and their properties")
async def schema(engine: Engine = EngineDep) -> dict[str, Any]:
    def read(kb: KnowledgeBase) -> dict[str, Any]:
        s = kb.graph.schema()
        props = {label: [{"name": p.name, "type": p.type} for p in ps] for label, ps in s.node_labels.items()}
        rels = {rel: [{"name": p.name, "type": p.type} for p in ps] for rel, ps in s.rel_types.items()}
        ends = {rel: [list(pair) for pair in pairs] for rel, pairs in s.rel_endpoints.items()}
        return {"node_labels": props, "rel_types": rels, "rel_endpoints": ends, "text": s.text()}

    return await engine.read(read)


@router.post("/ask", summary="Answer from the graph: node index (vector) or text-to-Cypher (graph), routed")
async def ask(body: GraphAskRequest, engine: Engine = EngineDep) -> dict[str, Any]:
    return await engine.read(lambda kb: kb.graph.ask(body.question, tool=body.tool, k=body.k).to_dict())


@router.get("/neighbourhood", summary="A node and its neighbours, for the graph view")
async def neighbourhood(
    key: str = Query(min_length=1, max_length=500, description="Node key: Label:id (Cypher) or a document-graph key"),
    source: Literal["cypher", "docgraph"] = Query("cypher", description="Which graph"),
    limit: int = Query(50, ge=1, le=500),
    engine: Engine = EngineDep,
) -> dict[str, Any]:
    def read(kb: KnowledgeBase) -> dict[str, Any]:
        if source == "docgraph":
            return doc_graph_neighbourhood(kb, key, limit)
        key_of = kb.graph.store.node_key_expr("n")
        around = kb.graph.query(
            f"MATCH (n)-[r]-(m) WHERE {key_of} = $key RETURN n, r, m LIMIT $limit",
            {"key": key, "limit": limit + 1},
            max_rows=limit + 1,
        )
        rows = around.rows[:limit]
        if not rows:
            rows = kb.graph.query(f"MATCH (n) WHERE {key_of} = $key RETURN n", {"key": key}, max_rows=1).rows
            if not rows:
                from kvgraph.errors import InvalidInputError

                raise InvalidInputError(f"the graph has no node {key!r} (keys look like Label:id)")
        graph = cypher_graph(rows)
        return {"center": key, **graph, "truncated": len(around.rows) > limit}

    return await engine.read(read)
