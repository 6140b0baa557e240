"""Routing a question to the tool that can answer it: text search over node descriptions, or a graph query.

Counting, ranking, dependency and path questions ("How many open tickets are there?", "Which
services depend on Database indirectly?") need a Cypher query over the whole graph: a vector
search sees only its top few hits and answers them wrongly. Questions about what something is
or how it works ("How will the recommendation service be updated?") are answered by the text
of the nodes that match. Two routers make that choice:

- :class:`EmbeddingRouter` (offline): the cosine of the question's embedding to each tool's
  description and example questions (the mean of the best :data:`TOP_N`), plus
  :data:`CUE_WEIGHT` for each of the tool's lexical cues the question matches (``how many``,
  ``depend on``, ``describe`` ...). Every score is in the decision, for display.
- :class:`LLMRouter`: offers the tools to a tool-calling model (OpenAI ``tools`` /
  ``tool_choice``) and takes the tool it calls; falls back to an :class:`EmbeddingRouter` when
  the model calls none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError
from kvgraph.llm.base import LLM, ChatMessage, LLMError
from kvgraph.llm.prompts import router_messages

TOP_N = 2  # semantic score: mean of the best TOP_N cosines to a tool's description and examples
CUE_WEIGHT = 0.15  # added per matching cue, at most MAX_CUES of them
MAX_CUES = 2
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name


@dataclass
class Tool:
    """A way to answer questions: a name and description (what a router reads), example
    questions, lexical ``cues`` (regular expressions, case-insensitive) and the callable that runs it."""

    name: str
    description: str
    examples: list[str] = field(default_factory=list)
    run: Callable[[str], Any] | None = None
    cues: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _TOOL_NAME.match(self.name):
            raise InvalidInputError(f"tool name {self.name!r}: use letters, digits, '_' or '-' (at most 64)")
        if not self.description.strip():
            raise InvalidInputError(f"tool {self.name!r} needs a description")
        for cue in self.cues:
            try:
                re.compile(cue)
            except re.error as e:
                raise InvalidInputError(f"tool {self.name!r}: cue {cue!r} is not a regular expression: {e}") from None

    def openai_spec(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry (a function taking the question)."""
        description = self.description.strip()
        if self.examples:
            description += " Example questions: " + " | ".join(self.examples)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": {"question": {"type": "string", "description": "The question to answer."}},
                    "required": ["question"],
                },
            },
        }


@dataclass
class ToolScore:
    semantic: float
    lexical: float
    cues: list[str]  # the question's words that matched the tool's cues

    @property
    def total(self) -> float:
        return self.semantic + self.lexical


@dataclass
class RouteDecision:
    """The chosen tool, every tool's score, and why (in words)."""

    tool: str
    scores: dict[str, float]
    reason: str
    method: str  # "embedding", "llm", "forced"
    details: dict[str, ToolScore] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "method": self.method,
            "reason": self.reason,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "details": {k: {**asdict(v), "total": round(v.total, 4)} for k, v in self.details.items()},
        }


class Router(Protocol):
    tools: list[Tool]

    def route(self, question: str) -> RouteDecision: ...


def _check_tools(tools: Sequence[Tool]) -> list[Tool]:
    tools = list(tools)
    if not tools:
        raise InvalidInputError("a router needs at least one tool")
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"tool names must be unique, got {names}")
    return tools


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError("question must be a non-empty string")
    return question.strip()


class EmbeddingRouter:
    """Routes by similarity of the question to each tool's description and examples, plus lexical cues."""

    def __init__(
        self, embedder: Embedder, tools: Sequence[Tool], *, cue_weight: float = CUE_WEIGHT, top_n: int = TOP_N
    ) -> None:
        self.embedder = embedder
        self.tools = _check_tools(tools)
        self.cue_weight = cue_weight
        self.top_n = top_n
        self._vectors: list[np.ndarray] | None = None  # per tool: description + examples, embedded lazily

    def __repr__(self) -> str:
        return f"EmbeddingRouter(tools={[t.name for t in self.tools]}, cue_weight={self.cue_weight})"

    def _tool_vectors(self) -> list[np.ndarray]:
        if self._vectors is None:
            texts = [[t.description, *t.examples] for t in self.tools]
            flat = self.embedder.embed([x for group in texts for x in group])
            out, start = [], 0
            for group in texts:
                out.append(np.asarray(flat[start : start + len(group)], dtype=np.float32))
                start += len(group)
            self._vectors = out
        return self._vectors

    def score(self, question: str) -> dict[str, ToolScore]:
        """Every tool's semantic and lexical score for ``question``."""
        question = _check_question(question)
        q = np.asarray(self.embedder.embed([question])[0], dtype=np.float32)
        scores: dict[str, ToolScore] = {}
        for tool, vectors in zip(self.tools, self._tool_vectors()):
            cosines = np.sort(vectors @ q)[::-1][: self.top_n]
            found = (re.search(c, question, re.IGNORECASE) for c in tool.cues)
            cues = [m.group(0).strip() for m in found if m]  # the words that matched, for display
            scores[tool.name] = ToolScore(float(cosines.mean()), self.cue_weight * min(len(cues), MAX_CUES), cues)
        return scores

    def route(self, question: str) -> RouteDecision:
        details = self.score(question)
        best = max(self.tools, key=lambda t: details[t.name].total).name  # ties: the first tool
        d = details[best]
        cue_text = f"; cues: {', '.join(repr(c) for c in d.cues)}" if d.cues else ""
        reason = f"closest to {best}'s description and examples (similarity {d.semantic:.3f}{cue_text})"
        return RouteDecision(best, {k: v.total for k, v in details.items()}, reason, "embedding", details)


class LLMRouter:
    """Lets a tool-calling LLM pick the tool; ``fallback`` decides when the model calls none.

    The request offers every tool as a function with ``tool_choice`` (default "required"; servers
    that reject it are asked again without it). A model without tool calling
    (no ``complete_with_tools``) is asked to name the tool in plain text instead.
    """

    def __init__(
        self,
        llm: LLM,
        tools: Sequence[Tool],
        fallback: Router | None = None,
        *,
        tool_choice: str = "required",
    ) -> None:
        self.llm = llm
        self.tools = _check_tools(tools)
        self.fallback = fallback
        self.tool_choice = tool_choice

    def __repr__(self) -> str:
        return f"LLMRouter(model={getattr(self.llm, 'model', None)!r}, tools={[t.name for t in self.tools]})"

    def route(self, question: str) -> RouteDecision:
        question = _check_question(question)
        names = [t.name for t in self.tools]
        chosen, how = self._ask(question)
        if chosen not in names:
            what = f"called unknown tool {chosen!r}" if chosen else "called no tool"
            if self.fallback is None:
                raise LLMError(f"the LLM {what} when routing {question!r} (tools: {', '.join(names)})")
            decision = self.fallback.route(question)
            decision.reason = f"the LLM {what}; {decision.reason}"
            return decision
        scores = {name: 1.0 if name == chosen else 0.0 for name in names}
        return RouteDecision(chosen, scores, f"the LLM ({self.llm.model}) {how}", "llm")

    def _ask(self, question: str) -> tuple[str | None, str]:
        messages = router_messages(question)
        complete_with_tools = getattr(self.llm, "complete_with_tools", None)
        if complete_with_tools is None:
            listing = "\n".join(f"- {t.name}: {t.description}" for t in self.tools)
            ask = f"Tools:\n{listing}\n\nAnswer with the tool name only.\n\nQuestion: {question}"
            prompt = [*messages[:-1], ChatMessage("user", ask)]
            reply = self.llm.complete(prompt, temperature=0.0, max_tokens=20)
            found = [t.name for t in self.tools if re.search(rf"\b{re.escape(t.name)}\b", reply)]
            return (found[0] if found else None), f"named {found[0] if found else '?'} in its reply"
        specs = [t.openai_spec() for t in self.tools]
        try:
            reply = complete_with_tools(messages, specs, tool_choice=self.tool_choice, temperature=0.0)
        except LLMError as e:
            # Servers without "required" (older vLLM, some proxies) answer 400 naming the field:
            # ask again with the server's default choice.
            if e.status_code not in (400, 422) or "tool_choice" not in str(e):
                raise
            reply = complete_with_tools(messages, specs, tool_choice=None, temperature=0.0)
        if not reply.tool_calls:
            return None, "called no tool"
        call = reply.tool_calls[0]
        args = call.arguments if isinstance(call.arguments, Mapping) else {}
        return call.name, f"called {call.name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


# ---------------------------------------------------------------------- the two tools of graph questions

VECTOR_TOOL = "vector"
GRAPH_TOOL = "graph"

VECTOR_DESCRIPTION = (
    "Search the text of graph nodes (names, descriptions) by meaning and answer from the best matches. "
    "For what something is, how it works or will change, why, and what a description says."
)
VECTOR_EXAMPLES = [
    "What is the migration project about?",
    "How does the login flow work?",
    "Describe the plan for improving search results.",
    "Why was the caching layer introduced?",
    "What will change in the billing module?",
    "Explain what the onboarding task involves.",
]
VECTOR_CUES = [
    r"^\s*how (will|does|do|is|are|can|should|would)\b",
    r"\b(describe|explain|summari[sz]e|details? (of|about)|why)\b",
    r"\bwhat (is|are|does|do)\b.*\b(about|mean|involve|do)\b",
]

GRAPH_DESCRIPTION = (
    "Write and run a Cypher query over the whole graph. For counting, totals, rankings (most, least), "
    "lists of entities matching a condition, and relationships: dependencies, ownership, paths."
)
GRAPH_EXAMPLES = [
    "How many orders were shipped last month?",
    "Which supplier has the most products?",
    "Count the documents of each author.",
    "Which components does the gateway depend on?",
    "Which people work in the same team as Alice?",
    "What is connected to the storage cluster, directly or indirectly?",
    "List all projects owned by the platform group.",
]
GRAPH_CUES = [
    r"\bhow many\b",
    r"\b(count|number of|total|average|sum of|maximum|minimum)\b",
    r"\b(most|least|fewest|largest|smallest|top \d+)\b",
    r"\bdepends? on\b|\bdependen(t|cy|cies)\b",
    r"\b(directly|indirectly|transitively|path|connected|linked)\b",
    r"\b(assigned to|maintained by|owned by|belongs? to|part of|member of)\b",
    r"^\s*(which|list)\b",
]


def vector_tool(run: Callable[[str], Any] | None = None, about: str = "") -> Tool:
    """The default text-search tool; ``about`` adds what is indexed (e.g. "Task nodes: name, description")."""
    description = VECTOR_DESCRIPTION + (f" Indexed: {about}." if about else "")
    return Tool(VECTOR_TOOL, description, list(VECTOR_EXAMPLES), run, list(VECTOR_CUES))


def graph_tool(run: Callable[[str], Any] | None = None, about: str = "") -> Tool:
    """The default graph-query tool; ``about`` adds what the graph holds (e.g. its labels)."""
    description = GRAPH_DESCRIPTION + (f" The graph has: {about}." if about else "")
    return Tool(GRAPH_TOOL, description, list(GRAPH_EXAMPLES), run, list(GRAPH_CUES))
