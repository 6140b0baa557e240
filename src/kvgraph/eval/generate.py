"""Generate an evaluation dataset from ingested nodes with an LLM: questions each node answers.

The idea of LlamaIndex's ``generate_question_context_pairs``: show the LLM one node's text and ask
for ``per_node`` questions that only that text answers; the node is then the relevant document of
its questions. Replies of small local models are messy (numbered lists, bullets, preambles, answers
after the questions, too many or too few lines), so the parsing keeps only what reads as a question.

Generation is resumable: with ``cache_path``, each node's questions are appended to a JSONL file as
soon as they arrive, keyed by (model, node id, hash of the node text, per_node). A re-run asks
nothing for nodes already done, and after adding nodes only the new ones are sent.

:func:`to_llamaindex_qa` exports the questions in the JSON shape of LlamaIndex's
``EmbeddingQAFinetuneDataset`` (``queries``, ``corpus``, ``relevant_docs``, ``mode``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.eval.judge import judge_many
from kvgraph.llm.base import LLM, ChatMessage
from kvgraph.schema import Node

QUESTIONS_SYSTEM = """\
You write questions for testing a search engine over a document collection.
Each question must be answerable from the given context alone, and must make sense to a reader who \
has not seen it: name the subject instead of saying "the context", "the passage" or "the text"."""

QUESTIONS_USER = """\
Context:
---
{context}
---

Write exactly {n} different questions that can be answered only from the context above.
Reply with the questions only, one per line: no numbering, no answers, no other text."""

CORRECTIVE = "Reply with only {n} questions, one per line, each ending with a question mark."

MAX_CONTEXT_CHARS = 8000
"""Longer node texts are cut to this many characters in the prompt, to fit small context windows."""


@dataclass(frozen=True, slots=True)
class GeneratedQuestion:
    """A question generated from the node ``node_id`` by ``model``; that node is its relevant document."""

    question: str
    node_id: str
    model: str = ""


@dataclass
class GenerationStats:
    """What a :func:`generate_questions` run did and cost.

    Token counts are the change of ``llm.usage`` during the run (zero when the LLM keeps no
    usage, or the server reports none); other use of the same client meanwhile is counted too.
    """

    nodes: int = 0
    nodes_cached: int = 0  # answered from the cache, no request
    nodes_generated: int = 0  # sent to the LLM
    nodes_skipped: int = 0  # empty text: nothing to ask about
    nodes_failed: int = 0  # the LLM gave no usable question (not cached, so a re-run tries again)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class GeneratedQuestions(list[GeneratedQuestion]):
    """The questions of a run, in node order, with the run's :class:`GenerationStats` as ``stats``."""

    def __init__(self, questions: Sequence[GeneratedQuestion] = (), stats: GenerationStats | None = None) -> None:
        super().__init__(questions)
        self.stats = stats or GenerationStats()


# -- generation ---------------------------------------------------------------------------


def generate_questions(
    llm: LLM,
    nodes: Sequence[Node],
    per_node: int = 2,
    concurrency: int = 4,
    cache_path: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    retries: int = 1,
    max_context_chars: int = MAX_CONTEXT_CHARS,
) -> GeneratedQuestions:
    """Ask ``llm`` for ``per_node`` questions about each node; return them in node order.

    A node whose reply holds no question gets ``retries`` corrective follow-ups; if it still
    yields none it contributes no question and is not cached. Fewer than ``per_node`` valid
    questions are kept as they are; more are cut to ``per_node``. ``progress(done, total)``
    counts nodes, cached ones included. LLM transport errors propagate; the nodes finished
    before them stay in the cache, so running again resumes.
    """
    if per_node < 1:
        raise ValueError(f"per_node must be at least 1, got {per_node}")
    model = str(getattr(llm, "model", "") or "")
    cache = _Cache(Path(cache_path), model, per_node) if cache_path is not None else None
    stats = GenerationStats(nodes=len(nodes))
    usage_before = _usage_snapshot(llm)

    results: dict[int, list[str]] = {}
    todo: list[int] = []
    for i, node in enumerate(nodes):
        if not node.text.strip():
            stats.nodes_skipped += 1
            results[i] = []
        elif cache is not None and (cached := cache.get(node)) is not None:
            stats.nodes_cached += 1
            results[i] = cached
        else:
            todo.append(i)
    total = len(nodes)
    already = total - len(todo)
    if progress is not None and already:
        progress(already, total)

    lock = threading.Lock()  # stats are updated from the worker threads

    def work(i: int) -> list[str]:
        node = nodes[i]
        questions, calls = _ask(llm, node.text, per_node, retries=retries, max_chars=max_context_chars)
        with lock:
            stats.requests += calls
        if questions and cache is not None:
            cache.put(node, questions)
        return questions

    step = None if progress is None else (lambda done, _n: progress(already + done, total))
    answers = judge_many(work, todo, concurrency=concurrency, progress=step)
    for i, questions in zip(todo, answers):
        results[i] = questions
        stats.nodes_generated += 1
        if not questions:
            stats.nodes_failed += 1

    usage_after = _usage_snapshot(llm)
    stats.prompt_tokens = usage_after[0] - usage_before[0]
    stats.completion_tokens = usage_after[1] - usage_before[1]
    out = [GeneratedQuestion(q, nodes[i].id, model) for i in range(len(nodes)) for q in results[i]]
    return GeneratedQuestions(out, stats)


def question_messages(text: str, n: int, max_chars: int = MAX_CONTEXT_CHARS) -> list[ChatMessage]:
    """The chat messages asking for ``n`` questions about ``text``."""
    context = text.strip()
    if len(context) > max_chars:
        context = context[:max_chars].rstrip() + " ..."
    return [ChatMessage("system", QUESTIONS_SYSTEM), ChatMessage("user", QUESTIONS_USER.format(context=context, n=n))]


def _ask(llm: LLM, text: str, n: int, *, retries: int, max_chars: int) -> tuple[list[str], int]:
    """Up to ``n`` questions about ``text`` and the number of LLM calls it took."""
    messages = question_messages(text, n, max_chars)
    calls = 0
    for _ in range(max(retries, 0) + 1):
        raw = llm.complete(messages, temperature=0.0)
        calls += 1
        questions = parse_questions(raw, n)
        if questions:
            return questions, calls
        messages += [ChatMessage("assistant", raw), ChatMessage("user", CORRECTIVE.format(n=n))]
    return [], calls


def _usage_snapshot(llm: LLM) -> tuple[int, int]:
    # ``usage`` is not part of the LLM protocol: OpenAICompatibleLLM has it, test doubles may not.
    usage = getattr(llm, "usage", None)
    prompt = getattr(usage, "prompt_tokens", 0)
    completion = getattr(usage, "completion_tokens", 0)
    return (prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


# -- parsing ------------------------------------------------------------------------------

# List markers, possibly several ("- 1. "): bullets, "1." "1)" "(1)" "1:" "a)", "Q1:" "Question 2 -".
_MARKER = re.compile(
    r"^(?:[-*•·+>]+|\(?\d{1,3}[.):\]]|\(?[a-hA-H][.)]|Q(?:uestion)?\s*\d{0,3}\s*[:.)\-])\s*",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*```")
# Lines that introduce, close or annotate the list rather than being questions.
_CHATTER = re.compile(
    r"^(?:here(?:'s| is| are)|sure\b|certainly\b|okay\b|ok\b|of course\b|below\b|the following\b|i hope\b|"
    r"let me know\b|note\b|answers?\s*[:\-]|a\s*\d*\s*[:.)\-]|context\b|questions?\s*:?\s*$)",
    re.IGNORECASE,
)
# A line without "?" is kept only when it reads like a question or a request for information.
_INTERROGATIVE = re.compile(
    r"^(?:what|who|whom|whose|which|when|where|why|how|is|are|was|were|do|does|did|can|could|should|would|will|"
    r"has|have|had|according|name|list|describe|explain|identify|in what|to what|on what|for what)\b",
    re.IGNORECASE,
)
# "1. What is X? 2. Why is Y?" on one line: split before each new number.
_INLINE_SPLIT = re.compile(r"(?<=\?)\s+(?=(?:\(?\d{1,3}[.)]|Q\d{1,3}\s*[:.)]|[-*•])\s)")
_MIN_WORDS = 3


def parse_questions(text: str, n: int | None = None) -> list[str]:
    """The questions in an LLM reply, deduplicated, in order, at most ``n`` of them.

    Accepts a JSON list of strings (or ``{"questions": [...]}``) as well as lines with list
    markers, bullets, markdown emphasis and blank lines; drops preambles ("Here are the
    questions:"), answers and lines that do not read as questions; cuts text after a line's last
    question mark (answers, references in brackets).
    """
    candidates = _json_questions(text)
    if candidates is None:
        candidates = []
        for line in text.splitlines():
            if _FENCE.match(line):
                continue
            candidates.extend(_INLINE_SPLIT.split(line))
    out: list[str] = []
    seen: set[str] = set()
    for candidate in candidates:
        question = _clean(candidate)
        if question is None:
            continue
        key = re.sub(r"[\W_]+", " ", question.casefold()).strip()
        if key in seen:
            continue
        seen.add(key)
        out.append(question)
        if n is not None and len(out) >= n:
            break
    return out


def _json_questions(text: str) -> list[str] | None:
    """The questions of a reply that is (or contains, fenced or after a preamble) a JSON list."""
    bodies = [m.group(1) for m in re.finditer(r"```[\w-]*\s*(.*?)\s*```", text, re.DOTALL)]
    if "[" in text and "]" in text:
        bodies.append(text[text.index("[") : text.rindex("]") + 1])
    bodies.append(text.strip())
    for body in bodies:
        if not body.startswith(("[", "{")):
            continue
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if isinstance(data, Mapping):
            data = data.get("questions")
        if isinstance(data, list) and data and all(isinstance(q, str) for q in data):
            return list(data)
    return None


def _clean(line: str) -> str | None:
    """A candidate line as a question, or None when it is not one."""
    text = line.strip()
    # Strip list markers and the emphasis around them, as often as they nest ("**1.** ", "- Q1: ").
    while True:
        stripped = _MARKER.sub("", text.strip().strip("*_#").strip(), count=1)
        if stripped == text:
            break
        text = stripped
    text = text.strip().strip("*_`").strip()
    if len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
        text = text[1:-1].strip()
    if not text or _CHATTER.match(text) or text.endswith(":"):
        return None
    if "?" in text:
        text = text[: text.rindex("?") + 1].rstrip("*_\"'” ")
        if not text.endswith("?"):
            text += "?"
    elif not _INTERROGATIVE.match(text) or re.search(r"\bquestions?\b", text, re.IGNORECASE):
        # Without a question mark, only an interrogative or imperative opening counts, and a line
        # talking about "questions" is the reply's framing ("List of questions"), not a question.
        return None
    if len(text.split()) < _MIN_WORDS:
        return None
    return text


# -- cache --------------------------------------------------------------------------------


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class _Cache:
    """Questions per node in an append-only JSONL file; the last record for a key wins."""

    path: Path
    model: str
    per_node: int
    _entries: dict[tuple[str, str, str, int], list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                record = _record(line)
                if record is not None:
                    key = (record["model"], record["node_id"], record["text_sha256"], record["per_node"])
                    self._entries[key] = record["questions"]

    def _key(self, node: Node) -> tuple[str, str, str, int]:
        return (self.model, node.id, _text_hash(node.text), self.per_node)

    def get(self, node: Node) -> list[str] | None:
        return self._entries.get(self._key(node))

    def put(self, node: Node, questions: list[str]) -> None:
        key = self._key(node)
        record = {
            "model": key[0],
            "node_id": key[1],
            "text_sha256": key[2],
            "per_node": key[3],
            "questions": questions,
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._entries[key] = questions
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A run killed mid-write can leave a last line without its newline: start a fresh line
            # so the new record is not glued to the broken one (which the reader skips).
            needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(("\n" if needs_newline else "") + line)
                f.flush()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _record(line: str) -> dict[str, Any] | None:
    """A cache record, or None for a blank, truncated or foreign line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    ok = (
        isinstance(record.get("model"), str)
        and isinstance(record.get("node_id"), str)
        and isinstance(record.get("text_sha256"), str)
        and isinstance(record.get("per_node"), int)
        and isinstance(record.get("questions"), list)
        and all(isinstance(q, str) for q in record["questions"])
    )
    return record if ok else None


# -- export -------------------------------------------------------------------------------


def _query_id(question: GeneratedQuestion) -> str:
    # Deterministic ids (LlamaIndex uses random UUIDs) keep exports of the same run identical.
    digest = hashlib.sha256(f"{question.node_id}\0{question.question}".encode()).hexdigest()
    return f"q-{digest[:16]}"


def to_llamaindex_qa(questions: Sequence[GeneratedQuestion], nodes: Sequence[Node]) -> dict[str, Any]:
    """The questions as LlamaIndex ``EmbeddingQAFinetuneDataset`` JSON.

    ``{"queries": {qid: question}, "corpus": {node_id: text}, "relevant_docs": {qid: [node_id]},
    "mode": "text"}``. The corpus holds every node, also those without questions (they are the
    distractors a retriever must rank below the relevant one). Raises ValueError when a
    question's node is not among ``nodes``.
    """
    corpus = {node.id: node.text for node in nodes}
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for q in questions:
        if q.node_id not in corpus:
            raise ValueError(f"question {q.question!r} was generated from node {q.node_id!r}, which is not in nodes")
        qid = _query_id(q)
        queries[qid] = q.question
        docs = relevant.setdefault(qid, [])
        if q.node_id not in docs:
            docs.append(q.node_id)
    return {"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"}


def save_json(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented UTF-8 JSON to ``path`` atomically (a crash leaves the old file whole)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=2)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
