"""Questions answered on a reader thread, as one JSON answer or as a stream of events.

Shared by ``/api/ask``, the conversation API and the OpenAI-compatible endpoint. A stream is
``delta`` events with text as the answerer writes it, then one ``answer`` event with the whole
answer, its citations (each with the cited chunk's text, file and page) and its sources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from kvgraph.filters import FilterSpec, parse_expression
from kvgraph.kb import KnowledgeBase
from kvgraph.kb.conversations import HISTORY_TURNS, ConversationStore
from kvgraph.server.serialize import answer_dict
from kvgraph.server.streaming import Event, Producer


def parse_filters(filters: dict[str, Any] | str | None) -> FilterSpec:
    """A filter from the API: a JSON filter tree as it is, or an expression such as ``page>=3``."""
    if isinstance(filters, str):
        return parse_expression(filters) if filters.strip() else None
    return filters or None


def ask_json(kb: KnowledgeBase, question: str, k: int | None, mode: str | None, filters: FilterSpec) -> dict[str, Any]:
    answer = kb.ask(question, k=k, filters=filters, mode=mode)
    return answer_dict(answer, question)


def answer_events(
    question: str,
    k: int | None,
    mode: str | None,
    filters: FilterSpec,
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Producer:
    """Events for one question; ``finish`` may add to (or store) the final answer before it is sent."""

    def produce(kb: KnowledgeBase) -> Iterator[Event]:
        stream = kb.ask_stream(question, k=k, filters=filters, mode=mode)
        yield ("start", {"question": question})
        for delta in stream:
            if delta:
                yield ("delta", {"text": delta})
        payload = answer_dict(stream.answer(), question)
        yield ("answer", finish(payload) if finish else payload)

    return produce


def turn_events(
    store: ConversationStore,
    conversation_id: str,
    message: str,
    k: int | None,
    mode: str | None,
    filters: FilterSpec,
) -> Producer:
    """One conversation turn: the standalone question (``question`` event), the answer, then it is stored."""

    def produce(kb: KnowledgeBase) -> Iterator[Event]:
        conversation = store.get(conversation_id)
        follow = kb.condense(message, conversation.history()[-HISTORY_TURNS:])
        yield ("question", follow_dict(follow))

        def finish(payload: dict[str, Any]) -> dict[str, Any]:
            turn = store.add_turn(conversation_id, message, follow.question, payload["answer"], payload["citations"])
            return {**payload, "conversation_id": conversation_id, "turn": turn.n, "message": message}

        yield from answer_events(follow.question, k, mode, filters, finish)(kb)

    return produce


def follow_dict(follow: Any) -> dict[str, Any]:
    return {"message": follow.message, "standalone": follow.question, "method": follow.method, "added": follow.added}


def run_to_end(produce: Producer, kb: KnowledgeBase) -> dict[str, Any]:
    """Run a producer without streaming; its ``question`` and ``answer`` events merged into one dict."""
    out: dict[str, Any] = {}
    for name, data in produce(kb):
        if name == "question":
            out["followup"] = data
        elif name == "answer":
            out.update(data)
    return out
