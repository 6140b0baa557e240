"""The conversation routes: conversations stored in the knowledge base, follow-up questions answered in context."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from kvgraph.kb import KnowledgeBase
from kvgraph.server.answers import parse_filters, run_to_end, turn_events
from kvgraph.server.api import EngineDep
from kvgraph.server.engine import Engine
from kvgraph.server.models import ConversationCreate, MessageRequest
from kvgraph.server.streaming import event_response, start_stream

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


@router.get("", summary="Conversations, most recently used first")
async def list_conversations(engine: Engine = EngineDep) -> list[dict[str, Any]]:
    return [c.to_dict(with_turns=False) for c in engine.conversations.list()]


@router.post("", status_code=201, summary="Start a conversation")
async def create_conversation(body: ConversationCreate, engine: Engine = EngineDep) -> dict[str, Any]:
    return engine.conversations.create(body.title).to_dict()


@router.get("/{conversation_id}", summary="A conversation with its turns")
async def get_conversation(conversation_id: str, engine: Engine = EngineDep) -> dict[str, Any]:
    return engine.conversations.get(conversation_id).to_dict()


@router.delete("/{conversation_id}", summary="Delete a conversation and its turns")
async def delete_conversation(conversation_id: str, engine: Engine = EngineDep) -> dict[str, Any]:
    engine.conversations.delete(conversation_id)
    return {"id": conversation_id, "deleted": True}


@router.post(
    "/{conversation_id}/messages",
    summary="Ask the next question; a follow-up is made standalone from the history before retrieval",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def post_message(conversation_id: str, body: MessageRequest, engine: Engine = EngineDep) -> Response:
    filters = parse_filters(body.filters)
    produce = turn_events(engine.conversations, conversation_id, body.message, body.k, body.mode, filters)
    if not body.stream:

        def run(kb: KnowledgeBase) -> dict[str, Any]:
            return run_to_end(produce, kb)

        return JSONResponse(await engine.read(run))
    return event_response(await start_stream(engine, produce))
