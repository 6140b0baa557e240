"""Prompt templates, all in one place so they can be read and tuned together."""

from __future__ import annotations

import json

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


# ---------------------------------------------------------------------- graph questions (text-to-Cypher)

CYPHER_SYSTEM = """\
You translate questions into one read-only Cypher query for the graph whose schema is given.
- Use only the node labels, relationship types and properties in the schema.
- Follow the relationship directions exactly as the schema writes them: (:A)-[:R]->(:B).
- Never write: no CREATE, MERGE, SET, DELETE, REMOVE, LOAD CSV, COPY or procedure calls.
- Give variable-length patterns an upper bound of at most 5 hops, e.g. -[:R*1..5]->.
- Compare text case-insensitively, e.g. toLower(t.status) = 'open', unless the question quotes an exact value.
- Name the returned columns with AS.
- Reply with the Cypher query only: no explanation, no code fences."""

CYPHER_RETRY = """\
That query failed:

{cypher}

The graph engine said:
{error}

Write a corrected query for the same question. Reply with the Cypher query only."""

GRAPH_ANSWER_SYSTEM = """\
You answer a question from the rows a graph query returned.
- Use only the rows; they are the complete result of the query shown.
- If there are no rows, say that the graph has no answer to the question.
- Answer in the language of the question, concisely, in one or two sentences."""

MAX_ANSWER_ROWS = 50  # rows shown to the answering model; the rest are counted, not shown


def cypher_messages(question: str, schema_text: str, examples: list[tuple[str, str]]) -> list[ChatMessage]:
    """The chat messages asking for a Cypher query answering ``question`` over the graph ``schema_text``.

    ``examples`` are (question, Cypher) pairs shown as earlier turns of the conversation, so a
    model copies their form rather than only reading about it.
    """
    system = f"{CYPHER_SYSTEM}\n\nSchema:\n{schema_text.strip()}"
    messages = [ChatMessage("system", system)]
    for example_question, example_cypher in examples:
        messages.append(ChatMessage("user", f"Question: {example_question.strip()}"))
        messages.append(ChatMessage("assistant", example_cypher.strip()))
    messages.append(ChatMessage("user", f"Question: {question.strip()}"))
    return messages


def cypher_retry_messages(
    question: str, schema_text: str, examples: list[tuple[str, str]], cypher: str, error: str
) -> list[ChatMessage]:
    """The conversation of :func:`cypher_messages` continued with the failed query and the engine's error."""
    return [
        *cypher_messages(question, schema_text, examples),
        ChatMessage("assistant", cypher.strip()),
        ChatMessage("user", CYPHER_RETRY.format(cypher=cypher.strip(), error=error.strip())),
    ]


def graph_answer_messages(
    question: str, cypher: str, columns: list[str], rows: list[list[object]]
) -> list[ChatMessage]:
    """The chat messages asking for an answer to ``question`` from a query's result rows."""
    shown = [dict(zip(columns, row)) for row in rows[:MAX_ANSWER_ROWS]]
    body = "\n".join(json.dumps(r, ensure_ascii=False, default=str) for r in shown) or "(no rows)"
    if len(rows) > MAX_ANSWER_ROWS:
        body += f"\n... and {len(rows) - MAX_ANSWER_ROWS} more rows"
    user = f"Question: {question.strip()}\n\nCypher query:\n{cypher.strip()}\n\nRows ({len(rows)}):\n{body}"
    return [ChatMessage("system", GRAPH_ANSWER_SYSTEM), ChatMessage("user", user)]


ROUTER_SYSTEM = """\
You choose the tool that can answer a question about a knowledge graph. Call exactly one tool.
- Questions about counts, totals, rankings, lists of things that match a condition, dependencies,
  paths and relationships between entities need the graph query tool.
- Questions about what something is, how it works, or what a description says need the text search tool."""


def router_messages(question: str) -> list[ChatMessage]:
    """The chat messages asking a tool-calling model to pick the tool for ``question``."""
    return [ChatMessage("system", ROUTER_SYSTEM), ChatMessage("user", question.strip())]
