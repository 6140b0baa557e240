"""An OpenAI-compatible endpoint: any OpenAI client, chat UI or agent framework can use the knowledge base as a model.

``POST /v1/chat/completions`` answers the last user message with kvgraph's retrieval and
answerer; earlier user/assistant messages are the conversation, so a follow-up is made
standalone first (:meth:`KnowledgeBase.condense`). The reply's text keeps the ``[n]`` markers
and ends with a ``Sources:`` list; the same citations come as structured data in the extra
top-level field ``citations`` (in the last chunk when streaming), with ``kvgraph`` holding the
standalone question and the retrieved sources. ``GET /v1/models`` lists ``kvgraph`` (the
knowledge base's retrieval mode) and ``kvgraph-MODE`` for each mode.

Sampling fields (temperature, max_tokens, tools...) are accepted and ignored. Token counts in
``usage`` are whitespace word counts: kvgraph may not run a model at all (extractive answers).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from kvgraph.kb import KnowledgeBase
from kvgraph.kb.conversations import HISTORY_TURNS, Exchange
from kvgraph.server.answers import answer_events, follow_dict
from kvgraph.server.api import EngineDep
from kvgraph.server.engine import Engine
from kvgraph.server.errors import ApiError
from kvgraph.server.models import ChatCompletionRequest, ChatMessageIn
from kvgraph.server.streaming import Event, raw_event_response, start_stream

router = APIRouter(prefix="/v1", tags=["openai"])
MODES = ("dense", "sparse", "hybrid", "mmr", "graph")
BASE_MODEL = "kvgraph"
CREATED = 1_700_000_000  # a fixed "created" for the model list: the models are not versioned


def model_ids() -> list[str]:
    return [BASE_MODEL, *(f"{BASE_MODEL}-{m}" for m in MODES)]


def mode_of(model: str) -> str | None:
    if model == BASE_MODEL:
        return None
    if model.startswith(BASE_MODEL + "-") and model[len(BASE_MODEL) + 1 :] in MODES:
        return model[len(BASE_MODEL) + 1 :]
    raise ApiError(404, f"The model `{model}` does not exist; use one of: {', '.join(model_ids())}", "model_not_found")


@router.get("/models", summary="The knowledge base as models (one per retrieval mode)")
async def models() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "kvgraph"} for m in model_ids()]
    return {"object": "list", "data": data}


@router.post(
    "/chat/completions",
    summary="Answer the last user message from the knowledge base (OpenAI chat completions, streaming or not)",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def chat_completions(body: ChatCompletionRequest, engine: Engine = EngineDep) -> Response:
    mode = mode_of(body.model)
    question, history = split_messages(body.messages)
    produce = _produce(question, history, mode)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:

        def run(kb: KnowledgeBase) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, data in produce(kb):
                if name in ("question", "answer"):
                    out[name] = data
            return out

        done = await engine.read(run)
        answer = done["answer"]
        text = with_sources(answer)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage(body.messages, text),
                "citations": answer["citations"],
                "kvgraph": extra(done["question"], answer),
            }
        )
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    events = await start_stream(engine, produce)
    return raw_event_response(_chunks(events, completion_id, created, body, include_usage))


def split_messages(messages: list[ChatMessageIn]) -> tuple[str, list[Exchange]]:
    """The last user message, and the user/assistant exchanges before it (system messages left out)."""
    turns = [(m.role, content_text(m.content)) for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise ApiError(400, "the last message must be a user message with text", "invalid_request_error")
    history: list[Exchange] = []
    pending: str | None = None
    for role, text in turns[:-1]:
        if role == "user":
            pending = text
        elif pending is not None:
            history.append(Exchange(pending, text))
            pending = None
    return turns[-1][1].strip(), history[-HISTORY_TURNS:]


def content_text(content: str | list[dict[str, Any]] | None) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")


def _produce(question: str, history: list[Exchange], mode: str | None) -> Any:
    def produce(kb: KnowledgeBase) -> Iterator[Event]:
        follow = kb.condense(question, history)
        yield ("question", follow_dict(follow))
        yield from answer_events(follow.question, None, mode, None)(kb)

    return produce


def sources_text(answer: dict[str, Any]) -> str:
    if not answer["citations"]:
        return ""
    lines = [f"[{c['number']}] {c['source']}" for c in answer["citations"]]
    return "\n\nSources:\n" + "\n".join(lines)


def with_sources(answer: dict[str, Any]) -> str:
    return str(answer["answer"]) + sources_text(answer)


def extra(question: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    return {"question": question, "mode": answer["mode"], "sources": answer["sources"]}


def usage(messages: list[ChatMessageIn], text: str) -> dict[str, int]:
    prompt = sum(len(content_text(m.content).split()) for m in messages)
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _chunks(
    events: AsyncIterator[Event], completion_id: str, created: int, body: ChatCompletionRequest, include_usage: bool
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        obj = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **more,
        }
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    question: dict[str, Any] = {}
    async for name, data in events:
        if name == "question":
            question = data
        elif name == "delta":
            yield chunk({"content": data["text"]})
        elif name == "answer":
            tail = sources_text(data)
            if tail:
                yield chunk({"content": tail})
            yield chunk({}, "stop", citations=data["citations"], kvgraph=extra(question, data))
            if include_usage:
                obj = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body.model,
                    "choices": [],
                    "usage": usage(body.messages, with_sources(data)),
                }
                yield f"data: {json.dumps(obj)}\n\n"
        elif name == "error":
            yield f"data: {json.dumps({'error': data})}\n\n"
    yield "data: [DONE]\n\n"
