"""Questions over a knowledge graph, each sent to the tool that can answer it.

:class:`GraphQA` has two tools and a router between them (:mod:`kvgraph.graphqa.router`):

- **vector**: search the indexed node texts (:class:`~kvgraph.graphqa.node_index.NodeIndex`) and
  answer from the best nodes, cited by their graph keys. With an LLM the answer is written by
  it (:class:`~kvgraph.answer.synthesize.LLMAnswerer`); offline it quotes the nodes' sentences
  (:class:`~kvgraph.answer.extractive.ExtractiveAnswerer`).
- **graph**: text-to-Cypher (:class:`~kvgraph.graphqa.text2cypher.TextToCypher`): an LLM writes a
  read-only query, the rows answer. Offline this tool raises LLMUnavailableError, which says
  how to configure an LLM and how to run Cypher directly with ``kvgraph graph query``.

With an LLM the router lets the model pick a tool by tool calling; offline it compares the
question's embedding with each tool's description and examples. The decision and its scores
are part of every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.base import GraphStore
from kvgraph.graphqa.node_index import NodeHit, NodeIndex
from kvgraph.graphqa.router import (
    GRAPH_TOOL,
    VECTOR_TOOL,
    EmbeddingRouter,
    LLMRouter,
    RouteDecision,
    Router,
    Tool,
    graph_tool,
    vector_tool,
)
from kvgraph.graphqa.text2cypher import GraphAnswer, TextToCypher
from kvgraph.llm.base import LLM, LLMUnavailableError
from kvgraph.schema import Citation, Node, NodeWithScore

TOOL_CHOICES = ("auto", VECTOR_TOOL, GRAPH_TOOL)


@dataclass
class GraphQAResult:
    """An answer, the tool that made it and the router's decision (forced when a tool was named)."""

    question: str
    tool: str
    decision: RouteDecision
    answer_text: str
    citations: list[Citation] = field(default_factory=list)  # vector tool: node_id is the graph key
    hits: list[NodeHit] = field(default_factory=list)  # vector tool: the nodes found
    graph: GraphAnswer | None = None  # graph tool: the query, its rows and attempts

    @property
    def cypher(self) -> str | None:
        return self.graph.cypher if self.graph else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "tool": self.tool,
            "route": self.decision.to_dict(),
            "answer": self.answer_text,
            "citations": [
                {"number": c.number, "node_key": c.node_id, "source": c.source, "score": c.score}
                for c in self.citations
            ],
            "hits": [h.to_dict() for h in self.hits],
            "graph": self.graph.to_dict() if self.graph else None,
        }


class GraphQA:
    """Answers questions over ``graph_store`` with the vector tool or the graph tool, chosen per question.

    ``node_index`` may be None (nothing indexed): then only the graph tool is offered.
    ``llm`` None means offline: extractive answers from nodes, and no text-to-Cypher.
    ``examples`` are few-shot (question, Cypher) pairs for text-to-Cypher; ``k`` nodes are searched.
    """

    def __init__(
        self,
        graph_store: GraphStore,
        embedder: Embedder,
        node_index: NodeIndex | None = None,
        llm: LLM | None = None,
        *,
        examples: Sequence[tuple[str, str]] | None = None,
        k: int = 4,
        router: Router | None = None,
    ) -> None:
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        self.graph_store = graph_store
        self.embedder = embedder
        self.node_index = node_index
        self.llm = llm
        self.k = k
        self.text2cypher = TextToCypher(llm, graph_store, examples)
        self._tools: list[Tool] | None = None
        self._router = router

    def __repr__(self) -> str:
        return f"GraphQA(tools={[t.name for t in self.tools()]}, llm={getattr(self.llm, 'model', None)!r}, k={self.k})"

    # ------------------------------------------------------------------ tools and routing

    def _indexed(self) -> dict[str, dict[str, Any]]:
        return self.node_index.manifest() if self.node_index is not None else {}

    def tools(self) -> list[Tool]:
        """The tools on offer, described with what is indexed and what the graph holds."""
        if self._tools is None:
            tools = []
            indexed = self._indexed()
            if indexed:
                about = "; ".join(f"{label} nodes ({', '.join(e['text_properties'])})" for label, e in indexed.items())
                tools.append(vector_tool(self._vector, about))
            labels = ", ".join(sorted(self.graph_store.schema().node_labels))
            tools.append(graph_tool(self._graph, f"nodes labelled {labels}" if labels else ""))
            self._tools = tools
        return self._tools

    def router(self) -> Router:
        if self._router is None:
            offline = EmbeddingRouter(self.embedder, self.tools())
            self._router = LLMRouter(self.llm, self.tools(), fallback=offline) if self.llm is not None else offline
        return self._router

    def route(self, question: str) -> RouteDecision:
        """Which tool would answer ``question``, and why."""
        tools = self.tools()
        if len(tools) == 1:
            return RouteDecision(
                tools[0].name, {tools[0].name: 1.0}, "the only tool (no graph nodes are indexed)", "forced"
            )
        return self.router().route(question)

    # ------------------------------------------------------------------ answering

    def ask(self, question: str, tool: str = "auto") -> GraphQAResult:
        """Answer ``question`` with ``tool`` ("vector", "graph") or the router's choice ("auto")."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("question must be a non-empty string")
        if tool not in TOOL_CHOICES:
            raise InvalidInputError(f"tool must be one of {', '.join(TOOL_CHOICES)}, got {tool!r}")
        if tool == "auto":
            decision = self.route(question)
        else:
            decision = RouteDecision(tool, {tool: 1.0}, f"asked for the {tool} tool", "forced")
        if decision.tool == VECTOR_TOOL:
            result = self._vector(question)
        else:
            try:
                result = self._graph(question)
            except LLMUnavailableError as e:
                if tool != "auto":
                    raise
                hint = (
                    " (or ask with --tool vector for an answer from the indexed node texts)" if self._indexed() else ""
                )
                raise LLMUnavailableError(f"this question needs a graph query ({decision.reason}); {e}{hint}") from None
        result.decision = decision
        return result

    def _vector(self, question: str) -> GraphQAResult:
        if self.node_index is None or not self._indexed():
            raise InvalidInputError(
                "no graph nodes are indexed for the vector tool; index some first, e.g. "
                "kvgraph graph index-nodes --label Task --text name,description"
            )
        hits = self.node_index.search(question, self.k)
        indexed = self._indexed()
        nodes = [
            NodeWithScore(
                Node(h.node_key, answer_text(h, indexed), {"file_name": f"{h.label} {h.name or h.node_key}"}), h.score
            )
            for h in hits
        ]
        if self.llm is not None:
            from kvgraph.answer.synthesize import LLMAnswerer

            answer = LLMAnswerer(self.llm).answer(question, nodes)
        else:
            from kvgraph.answer.extractive import ExtractiveAnswerer

            answer = ExtractiveAnswerer(self.embedder).answer(question, nodes)
        decision = RouteDecision(VECTOR_TOOL, {}, "", "forced")
        return GraphQAResult(question, VECTOR_TOOL, decision, answer.text, answer.citations, hits)

    def _graph(self, question: str) -> GraphQAResult:
        graph_answer = self.text2cypher.ask(question)
        decision = RouteDecision(GRAPH_TOOL, {}, "", "forced")
        return GraphQAResult(question, GRAPH_TOOL, decision, graph_answer.answer_text, graph=graph_answer)


def answer_text(hit: NodeHit, indexed: dict[str, dict[str, Any]]) -> str:
    """A node's text for answering: one paragraph per property value.

    Paragraphs make an extractive answer quote the description's sentences rather than one
    run-on "name: ... description: ... status: ..." line; the property names are left out of
    the quotes (the citation names the node).
    """
    names = indexed.get(hit.label, {}).get("text_properties") or list(hit.properties)
    values = [hit.properties.get(n) for n in names]
    paragraphs = [str(v).strip() for v in values if v is not None and str(v).strip()]
    return "\n\n".join(paragraphs) or hit.text
