"""Answers written by a language model from the retrieved nodes, with ``[n]`` citations.

The nodes are numbered ``[1]``, ``[2]``, ... in the order given (the retrieval order) and put
in the prompt (``kvgraph.llm.prompts``) until ``max_context_chars`` is reached. The model is
asked to cite them by number; the markers it writes become the answer's citations. A marker
for a number that was not in the prompt is left in the text but cited to nothing, and nodes
the model did not cite are not cited (they stay in ``Answer.source_nodes``).

``Answerer`` is what both this and the extractive answerer provide, so callers can take
either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from kvgraph.answer.extractive import make_citation
from kvgraph.errors import InvalidInputError
from kvgraph.llm.base import LLM, ChatMessage
from kvgraph.llm.prompts import answer_messages, format_context
from kvgraph.schema import Answer, NodeWithScore, source_label

# "[2]", and the grouped forms models also write: "[1, 3]", "[1,3]", "[1; 3]".
_MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\s*\]")


@runtime_checkable
class Answerer(Protocol):
    """Makes an answer with citations from a question and the nodes retrieved for it."""

    def answer(self, question: str, nodes: Sequence[NodeWithScore]) -> Answer: ...


def cited_numbers(text: str) -> list[int]:
    """The source numbers ``text`` cites with ``[n]`` markers, in order of first citation."""
    seen: dict[int, None] = {}
    for m in _MARKER.finditer(text):
        for part in re.split(r"[,;]", m.group(1)):
            seen.setdefault(int(part), None)
    return list(seen)


class LLMAnswerer:
    """Asks ``llm`` to answer from the numbered nodes and turns its ``[n]`` markers into citations.

    ``max_context_chars`` bounds the passages' text in the prompt: nodes are added in order
    while they fit (the first is cut to fit if it alone is too long), so the best-ranked
    nodes are the ones the model sees.
    """

    def __init__(
        self,
        llm: LLM,
        max_context_chars: int = 12_000,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> None:
        if max_context_chars < 1:
            raise InvalidInputError(f"max_context_chars must be at least 1, got {max_context_chars}")
        self.llm = llm
        self.max_context_chars = max_context_chars
        self.temperature = temperature
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"LLMAnswerer(model={self.llm.model!r}, max_context_chars={self.max_context_chars})"

    def context_nodes(self, nodes: Sequence[NodeWithScore]) -> list[tuple[int, NodeWithScore, str]]:
        """``(number, node, text as sent)`` for the nodes that go in the prompt, numbered from 1."""
        out: list[tuple[int, NodeWithScore, str]] = []
        budget = self.max_context_chars
        for hit in nodes:
            text = hit.node.text.strip()
            if not text:
                continue
            if len(text) > budget:
                if out:
                    break
                text = text[:budget]  # the best node, cut: better than an empty context
            out.append((len(out) + 1, hit, text))
            budget -= len(text)
            if budget <= 0:
                break
        return out

    def messages(self, question: str, nodes: Sequence[NodeWithScore]) -> list[ChatMessage]:
        """The chat messages sent for ``question`` over ``nodes``."""
        if not question.strip():
            raise InvalidInputError("question is empty")
        context = format_context(
            [(n, source_label(hit.node.metadata), text) for n, hit, text in self.context_nodes(nodes)]
        )
        return answer_messages(question, context)

    def answer(self, question: str, nodes: Sequence[NodeWithScore]) -> Answer:
        """Ask the model at once and return its answer with the citations it made."""
        nodes = list(nodes)
        text = self.llm.complete(
            self.messages(question, nodes), temperature=self.temperature, max_tokens=self.max_tokens
        )
        return self._answer(text, nodes)

    def stream(self, question: str, nodes: Sequence[NodeWithScore]) -> StreamingAnswer:
        """Ask the model with streaming: iterate the result for text deltas, then call ``.answer()``."""
        nodes = list(nodes)
        messages = self.messages(question, nodes)  # raise on a bad question now, not on first iteration
        deltas = self.llm.stream(messages, temperature=self.temperature, max_tokens=self.max_tokens)
        return StreamingAnswer(deltas, lambda text: self._answer(text, nodes))

    def _answer(self, text: str, nodes: Sequence[NodeWithScore]) -> Answer:
        numbered = {n: hit for n, hit, _ in self.context_nodes(nodes)}
        citations = [make_citation(n, numbered[n]) for n in sorted(cited_numbers(text)) if n in numbered]
        return Answer(text, citations, list(nodes), mode="llm")


class StreamingAnswer:
    """The text deltas of an answer as the model writes them, then the whole :class:`Answer`.

    Iterate it (once) for the deltas; ``answer()`` reads whatever has not been read yet and
    returns the answer, whose text is all the deltas joined.
    """

    def __init__(self, deltas: Iterator[str], finish: _Finish) -> None:
        self._deltas = iter(deltas)
        self._finish = finish
        self._parts: list[str] = []
        self._done = False

    def __iter__(self) -> Iterator[str]:
        for delta in self._deltas:
            self._parts.append(delta)
            yield delta
        self._done = True

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def answer(self) -> Answer:
        """The complete answer (reads the rest of the stream first)."""
        if not self._done:
            for _ in self:
                pass
        return self._finish(self.text)


class _Finish(Protocol):
    def __call__(self, text: str) -> Answer: ...
