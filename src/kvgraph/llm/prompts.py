"""Prompt templates, all in one place so they can be read and tuned together."""

from __future__ import annotations

from kvgraph.llm.base import ChatMessage

ANSWER_SYSTEM = """\
You answer questions using only the numbered context passages you are given.
- Use only facts stated in the context, not prior knowledge.
- Cite the passages that support each statement by their numbers in square brackets, e.g. [1] or [2][3].
- If the context does not contain the answer, say that you don't know from the given sources; do not guess.
- Answer in the language of the question, concisely."""

NO_CONTEXT = "(no passages were found)"


def format_context(chunks: list[tuple[int, str, str]]) -> str:
    """Number the passages for the prompt: each ``(n, source label, text)`` becomes ``[n] label`` + text."""
    blocks = [f"[{n}] {source}\n{text.strip()}" for n, source, text in chunks]
    return "\n\n".join(blocks) if blocks else NO_CONTEXT


def answer_messages(question: str, numbered_context: str) -> list[ChatMessage]:
    """The chat messages asking for a cited answer to ``question`` from ``numbered_context``."""
    user = f"Context:\n\n{numbered_context.strip() or NO_CONTEXT}\n\nQuestion: {question.strip()}"
    return [ChatMessage("system", ANSWER_SYSTEM), ChatMessage("user", user)]
