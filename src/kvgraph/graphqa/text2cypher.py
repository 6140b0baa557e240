"""Text-to-Cypher: an LLM writes a read-only Cypher query for a question, kvgraph checks and runs it.

The steps, each there because models get it wrong in practice:

1. **Prompt.** The graph's schema (``GraphStore.schema().text()``, with the relationship
   directions spelled out) and a few (question, Cypher) examples as earlier chat turns.
2. **Cleaning** (:func:`clean_cypher`). Replies come wrapped in code fences, prefixed with
   ``cypher`` or "Here is the query:", followed by explanations or by chat-template tokens
   such as ``<|im_end|>``. Only the query is kept, up to its first ``;``.
3. **Direction correction** (:func:`correct_directions`). A pattern such as
   ``(:Team)-[:ASSIGNED_TO]->(:Task)`` that contradicts the schema's
   ``(:Task)-[:ASSIGNED_TO]->(:Team)`` parses and runs, but returns nothing; it is flipped.
4. **Validation.** The read-only guard and the engine's own parser and binder
   (``GraphStore.explain``, in the store's sandbox process on Ladybug) check the query before it
   runs. The model's reply is untrusted input (a prompt can be injected through the question or
   the graph's own text): a write, a statement off the allow-list, a query over the size limits
   or one that crashed the sandbox is refused and never retried.
5. **One retry** (by default) with the failed query and the engine's error message, which
   usually names the unknown property or label exactly; an open-ended traversal or a function
   off the allow-list is sent back the same way, with the guard's message.
6. **Running** with ``read_only=True`` (the guard again, the sandbox, a timeout and a row limit),
   then an answer written by the LLM from the rows, returned together with the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.base import (
    DEFAULT_TIMEOUT_S,
    CypherSyntaxError,
    GraphError,
    GraphSchema,
    GraphStore,
    QueryAbortedError,
    QueryResult,
    WriteRejectedError,
)
from kvgraph.graphdb.guard import FunctionNotAllowedError, UnboundedTraversalError, check_read_only
from kvgraph.llm.base import LLM, LLMUnavailableError, require_llm
from kvgraph.llm.prompts import cypher_messages, cypher_retry_messages, graph_answer_messages

DEFAULT_MAX_ROWS = 1_000  # rows a generated query may return; an answer is written from at most 50 of them

# Examples from a graph other than the user's, to show the form of good queries: case-insensitive
# text, named columns, aggregation with ORDER BY/LIMIT, directions as the schema gives them and
# bounded variable-length paths. Their schema: (:Book)-[:WRITTEN_BY]->(:Author), (:Book)-[:CITES]->(:Book).
DEFAULT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "How many books are checked out?",
        "MATCH (b:Book) WHERE toLower(b.status) = 'checked out' RETURN count(b) AS books",
    ),
    (
        "Which author wrote the most books?",
        "MATCH (b:Book)-[:WRITTEN_BY]->(a:Author)\nRETURN a.name AS author, count(b) AS books\n"
        "ORDER BY books DESC LIMIT 1",
    ),
    (
        "Which books cite Graph Databases, directly or through other books?",
        "MATCH (b:Book)-[:CITES*1..5]->(g:Book)\nWHERE toLower(g.title) = 'graph databases'\n"
        "RETURN DISTINCT b.title AS book",
    ),
)

OFFLINE_HINT = (
    '; or write the Cypher yourself and run it read-only with: kvgraph graph query "MATCH (n) RETURN n LIMIT 5"'
)


class CypherGenerationError(GraphError):
    """The LLM produced no query that the engine accepted, within the allowed attempts."""

    def __init__(self, message: str, attempts: list[CypherAttempt]) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass
class CypherAttempt:
    """One round of generation: the model's raw reply, the query made of it and what went wrong."""

    reply: str
    cypher: str
    error: str | None = None
    corrected: bool = False  # relationship directions were flipped to match the schema

    def to_dict(self) -> dict[str, Any]:
        return {"reply": self.reply, "cypher": self.cypher, "error": self.error, "corrected": self.corrected}


@dataclass
class GraphAnswer:
    """An answer from the graph: the query that was run, its rows and the text written from them."""

    question: str
    cypher: str
    columns: list[str]
    rows: list[list[Any]]
    answer_text: str
    attempts: list[CypherAttempt] = field(default_factory=list)
    truncated: bool = False

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def rows_text(self, max_rows: int = 20) -> str:
        """The rows as a small plain-text table."""
        return rows_text(self.columns, self.rows, max_rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "cypher": self.cypher,
            "columns": self.columns,
            "rows": self.rows,
            "truncated": self.truncated,
            "answer": self.answer_text,
            "attempts": [a.to_dict() for a in self.attempts],
        }


# ---------------------------------------------------------------------- cleaning

# Tokens of chat templates that leak into replies of local models.
_SPECIAL_TOKENS = re.compile(r"<\|[A-Za-z0-9_]*\|>|</?s>|\[/?INST\]|<end_of_turn>|<start_of_turn>|<eos>|<bos>")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
# Clauses a query can start with (writes included, so that a write is extracted whole and refused).
_START = re.compile(
    r"(?i)^\s*(?:OPTIONAL\s+MATCH|MATCH|WITH|UNWIND|CALL|RETURN|CREATE|MERGE|DETACH\s+DELETE|DELETE|"
    r"SET|REMOVE|LOAD|COPY|FOREACH|EXPLAIN|PROFILE|USE|DROP)\b"
)
_CONTINUE = re.compile(r"(?i)^\s*(?:WHERE|ORDER\s+BY|LIMIT|SKIP|UNION|AND|OR|XOR)\b")
_LABEL_PREFIX = re.compile(
    r"(?i)^\s*(?:cypher(?:\s+query)?|query|answer)\s*:?\s*(?=\n|$|(?:OPTIONAL|MATCH|WITH|CALL)\b)"
)
# First words that make a line part of the query rather than prose after it.
_CYPHER_WORDS = frozenset(
    {
        *("OPTIONAL", "MATCH", "WITH", "UNWIND", "CALL", "RETURN", "WHERE", "ORDER", "BY", "LIMIT", "SKIP"),
        *("UNION", "ALL", "AND", "OR", "XOR", "NOT", "AS", "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT"),
        *("ASC", "DESC", "ASCENDING", "DESCENDING", "CREATE", "MERGE", "DELETE", "DETACH", "SET", "REMOVE"),
        *("FOREACH", "LOAD", "COPY", "IN", "IS", "NULL", "ON", "YIELD", "EXISTS", "COUNT"),
    }
)
_PROSE = re.compile(r"^[A-Z][a-z']+[,:]?\s+[a-z]")


def _is_prose(line: str) -> bool:
    """A line of explanation after the query ("This query counts ...", "Note: ...")."""
    if line[:1].isspace():
        return False  # indented: a continuation of the query
    first = line.split(None, 1)[0].strip(":,").upper() if line.strip() else ""
    if first in _CYPHER_WORDS:
        return False
    if line.rstrip().endswith((".", "!", "?", ":")) and _PROSE.match(line):
        return True
    return bool(_PROSE.match(line)) and not re.search(r"[()\[\]{}=<>$]", line)


def _cut_at_semicolon(text: str) -> str:
    """``text`` up to its first ``;`` outside string literals and backticks."""
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == ";":
            return text[:i]
        i += 1
    return text


def clean_cypher(reply: str) -> str:
    """The Cypher query in a model's ``reply``, without fences, labels, prose or template tokens.

    Returns "" when the reply has no text; a reply without any recognisable clause is
    returned stripped, for the engine to reject with a useful message.
    """
    text = _SPECIAL_TOKENS.sub("", reply).replace("\r\n", "\n")
    fences = _FENCE.findall(text)
    if fences:
        # Prefer a fence marked as Cypher; else the first one.
        chosen = next((body for lang, body in fences if lang.lower() in ("cypher", "sql", "neo4j")), fences[0][1])
        text = chosen
    text = _LABEL_PREFIX.sub("", text.strip()).strip().strip("`").strip()
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    if start is None:
        # "Cypher: MATCH ..." on one line with a longer label, e.g. "Here is the query: MATCH (n) ..."
        m = re.search(r"(?i)\b(OPTIONAL\s+MATCH|MATCH)\b", text)
        return _cut_at_semicolon(text[m.start() :] if m else text).strip()
    kept: list[str] = []
    rest = lines[start:]
    for i, line in enumerate(rest):
        if not line.strip():
            following = next((x for x in rest[i + 1 :] if x.strip()), "")
            continues = _START.match(following) or _CONTINUE.match(following) or following[:1].isspace()
            if not following or not continues:
                break
            continue
        if kept and _is_prose(line):
            break
        kept.append(line.rstrip())
    return _cut_at_semicolon("\n".join(kept)).strip()


# ---------------------------------------------------------------------- direction correction

_NODE = r"\((?P<{0}>[^()]*)\)"
_HOP = re.compile(
    _NODE.format("left") + r"\s*(?P<lt><)?-\s*(?:\[(?P<rel>[^\[\]]*)\])?\s*-(?P<gt>>)?\s*(?=\((?P<right>[^()]*)\))"
)
_NODE_PATTERN = re.compile(r"\(\s*([A-Za-z_]\w*)?\s*((?::\s*`?[A-Za-z_][\w]*`?\s*)+)?")
_LABELS = re.compile(r":\s*`?([A-Za-z_]\w*)`?")


def _node_parts(inner: str) -> tuple[str | None, set[str]]:
    """The variable and labels of a node pattern's inside, e.g. ``t:Task {status: 'open'}``."""
    m = _NODE_PATTERN.match("(" + inner)
    if not m:
        return None, set()
    var = m.group(1)
    labels = set(_LABELS.findall(m.group(2) or ""))
    return var, labels


def _rel_types(inner: str) -> list[str]:
    """The relationship types of ``r:A|B*1..3 {x: 1}`` (or ``:A|:B``)."""
    head = inner.split("{", 1)[0].split("*", 1)[0]
    if ":" not in head:
        return []
    return [t.strip().strip("`").lstrip(":").strip("`") for t in head.split(":", 1)[1].split("|") if t.strip()]


def correct_directions(cypher: str, schema: GraphSchema) -> str:
    """Flip directed relationship patterns whose direction contradicts the schema's endpoints.

    A hop ``(a:A)-[:R]->(b:B)`` is kept when the schema has ``(:A)-[:R]->(:B)``; flipped to
    ``(a:A)<-[:R]-(b:B)`` when the schema only has ``(:B)-[:R]->(:A)``; left alone when the
    labels are unknown, the type is not in the schema, both directions exist, or neither does
    (the query then fails or returns nothing, and the caller's retry deals with it). Labels of
    variables are taken from every node pattern of the query, so ``(t)-[:R]->(team)`` is checked
    too once ``t`` and ``team`` got labels elsewhere.
    """
    var_labels: dict[str, set[str]] = {}
    for m in _NODE_PATTERN.finditer(cypher):
        if m.group(1) and m.group(2):
            var_labels.setdefault(m.group(1), set()).update(_LABELS.findall(m.group(2)))

    def labels_of(inner: str) -> set[str]:
        var, labels = _node_parts(inner)
        return labels or (var_labels.get(var, set()) if var else set())

    def allowed(types: list[str], a: set[str], b: set[str]) -> bool:
        for t in types:
            for src, dst in schema.rel_endpoints.get(t, []):
                if (not a or src in a) and (not b or dst in b):
                    return True
        return False

    out: list[str] = []
    last = 0
    for m in _HOP.finditer(cypher):
        if bool(m.group("lt")) == bool(m.group("gt")):
            continue  # undirected (or both ways): nothing to check
        types = _rel_types(m.group("rel") or "")
        if not types or not any(t in schema.rel_endpoints for t in types):
            continue
        left, right = labels_of(m.group("left")), labels_of(m.group("right"))
        if not left and not right:
            continue
        src, dst = (left, right) if m.group("gt") else (right, left)
        if allowed(types, src, dst) or not allowed(types, dst, src):
            continue
        rel = f"[{m.group('rel')}]" if m.group("rel") is not None else ""
        arrow = f"<-{rel}-" if m.group("gt") else f"-{rel}->"
        out.append(cypher[last : m.end("left") + 1])
        out.append(arrow)
        last = m.end()
    out.append(cypher[last:])
    return "".join(out)


# ---------------------------------------------------------------------- the generator


class TextToCypher:
    """Answers questions over ``graph_store`` by having ``llm`` write read-only Cypher.

    ``examples`` are (question, Cypher) pairs shown to the model (default: :data:`DEFAULT_EXAMPLES`,
    from another graph; examples over your own graph help more). ``retries`` is how many times
    a failing query is sent back with the engine's error. Generated queries always run with
    ``read_only=True``, bounded by ``timeout_s`` and ``max_rows``.
    """

    def __init__(
        self,
        llm: LLM | None,
        graph_store: GraphStore,
        examples: Sequence[tuple[str, str]] | None = None,
        *,
        retries: int = 1,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int = DEFAULT_MAX_ROWS,
        fix_directions: bool = True,
    ) -> None:
        if retries < 0:
            raise InvalidInputError(f"retries must be >= 0, got {retries}")
        self.llm = llm
        self.graph_store = graph_store
        self.examples = list(DEFAULT_EXAMPLES if examples is None else examples)
        self.retries = retries
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.fix_directions = fix_directions

    def __repr__(self) -> str:
        model = getattr(self.llm, "model", None)
        return f"TextToCypher(model={model!r}, examples={len(self.examples)}, retries={self.retries})"

    def _require_llm(self) -> LLM:
        try:
            return require_llm(self.llm, "answering graph questions in plain language (text-to-Cypher)")
        except LLMUnavailableError as e:
            raise LLMUnavailableError(str(e) + OFFLINE_HINT) from None

    def generate(self, question: str) -> str:
        """A Cypher query for ``question`` that passed the read-only guard and the engine's parser."""
        cypher, _, _ = self._generate(question, run=False)
        return cypher

    def ask(self, question: str, *, synthesize: bool = True) -> GraphAnswer:
        """Generate a query for ``question``, run it read-only and answer from its rows.

        ``synthesize=False`` skips the answering call: ``answer_text`` is then the rows as text.
        """
        cypher, attempts, result = self._generate(question, run=True)
        assert result is not None  # run=True always runs the query
        if synthesize:
            llm = self._require_llm()
            text = llm.complete(graph_answer_messages(question, cypher, result.columns, result.rows)).strip()
        else:
            text = rows_text(result.columns, result.rows)
        return GraphAnswer(question, cypher, result.columns, result.rows, text, attempts, result.truncated)

    def _generate(self, question: str, *, run: bool) -> tuple[str, list[CypherAttempt], QueryResult | None]:
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("question must be a non-empty string")
        llm = self._require_llm()
        schema = self.graph_store.schema()
        schema_text = schema.text()
        messages = cypher_messages(question, schema_text, self.examples)
        attempts: list[CypherAttempt] = []
        for round_ in range(self.retries + 1):
            reply = llm.complete(messages, temperature=0.0)
            cleaned = clean_cypher(reply)
            cypher = correct_directions(cleaned, schema) if self.fix_directions and cleaned else cleaned
            attempt = CypherAttempt(reply, cypher, corrected=cypher != cleaned)
            attempts.append(attempt)
            try:
                if not cypher:
                    raise CypherSyntaxError(f"the model returned no Cypher query (reply: {reply.strip()[:200]!r})")
                check_read_only(cypher)
                self.graph_store.explain(cypher)
                result = None
                if run:
                    result = self.graph_store.query(
                        cypher, read_only=True, timeout_s=self.timeout_s, max_rows=self.max_rows
                    )
                return cypher, attempts, result
            except WriteRejectedError as e:
                attempt.error = str(e)
                if not isinstance(e, (UnboundedTraversalError, FunctionNotAllowedError)):
                    # A write (or an oversized query) is refused outright: asking again would invite another one.
                    raise type(e)(f"the generated query was refused and not run: {e}") from None
                error = str(e)
            except QueryAbortedError as e:
                attempt.error = str(e)
                raise QueryAbortedError(f"the generated query was stopped and is not retried: {e}") from None
            except GraphError as e:
                attempt.error = error = str(e)
            if round_ < self.retries:
                messages = cypher_retry_messages(question, schema_text, self.examples, cypher, error)
        raise CypherGenerationError(
            f"no working Cypher query for {question!r} after {len(attempts)} attempt(s); "
            f"last query: {attempts[-1].cypher!r}; the engine said: {attempts[-1].error}",
            attempts,
        )


def rows_text(columns: list[str], rows: list[list[Any]], max_rows: int = 20) -> str:
    """Rows as a small plain-text table (the answer when no LLM writes one)."""
    if not rows:
        return "(no rows)"
    lines = [" | ".join(columns)]
    lines += [" | ".join("" if v is None else str(v) for v in row) for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows")
    return "\n".join(lines)
