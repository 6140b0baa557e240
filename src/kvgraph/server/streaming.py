"""Server-sent events: answers streamed from a reader thread, and job progress.

An answer is produced on a reader thread (the knowledge base there is not shared) and handed
to the event loop through a queue. The first item is awaited before the response starts, so a
request that fails at once (bad filter, no LLM) gets a JSON error with its status instead of a
stream that says 200 and then breaks. A client that goes away stops the producer at its next
delta.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from kvgraph.errors import KvgraphError
from kvgraph.kb import KnowledgeBase
from kvgraph.server.engine import Engine
from kvgraph.server.errors import status_of

log = logging.getLogger("kvgraph.server")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE_S = 15.0

# What a producer yields: ("event name", payload). Payloads are JSON-ready.
Event = tuple[str, Any]
Producer = Callable[[KnowledgeBase], Iterator[Event]]


def sse(event: str, data: Any) -> str:
    """One event in the text/event-stream format (data as one JSON line)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


async def start_stream(engine: Engine, produce: Producer) -> AsyncIterator[Event]:
    """Run ``produce`` on a reader thread; its events as an async iterator, the first already awaited.

    Raises the producer's error when it fails before its first event.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            stop.set()

    def work(kb: KnowledgeBase) -> None:
        try:
            for event in produce(kb):
                if stop.is_set():
                    return
                put(("event", event))
        except BaseException as e:
            put(("error", e))
        finally:
            put(("end", None))

    engine.readers.submit(work)
    first = await items.get()
    if first[0] == "error":
        stop.set()
        raise first[1]

    async def rest() -> AsyncIterator[Event]:
        try:
            item = first
            while item[0] != "end":
                if item[0] == "error":  # the response has started: the failure becomes an event
                    e = item[1]
                    if isinstance(e, KvgraphError):
                        status, kind = status_of(e)
                        message = str(e)
                    else:
                        log.error("a streamed answer failed", exc_info=e)
                        status, kind, message = (
                            500,
                            "internal_error",
                            "internal server error (the server log has the details)",
                        )
                    yield ("error", {"message": message, "type": kind, "code": status})
                else:
                    yield item[1]
                item = await items.get()
        finally:
            stop.set()

    return rest()


def event_response(events: AsyncIterator[Event]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for name, data in events:
            yield sse(name, data)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


def raw_event_response(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
