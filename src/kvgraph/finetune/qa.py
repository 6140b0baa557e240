"""(question, answer) pairs for the LLM half: answers written through kvgraph's own RAG pipeline, or loaded.

:func:`answer_questions` asks every question through ``kb.ask`` (retrieval, the ``ask`` prompt,
the configured LLM) and keeps the answer text: the RA-DIT / LlamaIndex recipe of having the
LLM answer its own generated questions with the retrieved context. Answers are cached in a JSONL
file (:class:`kvgraph.llm.cache.JsonlCache`) as they arrive, so an interrupted run resumes and a
re-run pays nothing; questions run ``concurrency`` at a time (:func:`kvgraph.llm.jobs.run_jobs`).
A reply that is empty is counted and dropped (and not cached, so a re-run asks again); one that
cites no passage is counted and kept.

:func:`load_responses` reads answers a user brings: LlamaIndex ``QueryResponseDataset`` JSON
(``{"queries": {id: q}, "responses": {id: r}}``) or JSONL of ``{"query", "response"}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvgraph.errors import InvalidInputError
from kvgraph.finetune.pairs import TrainingPair
from kvgraph.llm.cache import JsonlCache
from kvgraph.llm.jobs import run_jobs
from kvgraph.schema import NodeWithScore

if TYPE_CHECKING:
    from kvgraph.kb import KnowledgeBase


@dataclass
class AnswerStats:
    """What an :func:`answer_questions` run did and cost (tokens: the LLM client's usage during the run)."""

    questions: int = 0
    done: int = 0
    cached: int = 0
    answered: int = 0
    empty: int = 0  # malformed: no text at all; dropped, not cached
    uncited: int = 0  # an answer citing no passage; kept
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _usage(llm: Any) -> tuple[int, int, int]:
    usage = getattr(llm, "usage", None)
    return (
        int(getattr(usage, "requests", 0) or 0),
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
    )


def context(kb: KnowledgeBase, question: str, k: int | None) -> list[NodeWithScore]:
    """What ``kb.ask`` answers from: the search hits and, with ``expand_neighbors``, the chunks beside them."""
    hits = kb.search(question, k=k)
    if kb.settings.expand_neighbors:
        from kvgraph.retrieve import expand_neighbors

        hits = expand_neighbors(hits, kb.store)
    return hits


def answer_questions(
    kb: KnowledgeBase,
    questions: Sequence[TrainingPair],
    cache_path: str | os.PathLike[str] | None = None,
    *,
    k: int | None = None,
    concurrency: int = 4,
    progress: Callable[[AnswerStats], None] | None = None,
) -> tuple[list[TrainingPair], AnswerStats]:
    """Each question answered as ``kb.ask`` answers it, by the configured LLM; the pairs gain their ``answer``.

    Retrieval runs in the calling thread (one knowledge-base handle is not shared between threads),
    then the LLM requests run ``concurrency`` at a time. Needs an LLM (LLMUnavailableError
    otherwise). Transport errors stop the run; what finished is in the cache, so running again resumes.
    """
    llm = kb.require_llm("kvgraph finetune dataset (answers)")
    model = str(getattr(llm, "model", "") or "")
    cache = JsonlCache(cache_path)
    stats = AnswerStats(questions=len(questions))
    usage0 = _usage(llm)
    lock = threading.Lock()
    answers: dict[int, tuple[str, int]] = {}

    def key(q: str) -> str:
        return hashlib.sha256(f"{model}\0{k}\0{q}".encode()).hexdigest()

    todo: list[int] = []
    for i, pair in enumerate(questions):
        hit = cache.get(key(pair.query))
        if isinstance(hit, dict) and isinstance(hit.get("answer"), str):
            answers[i] = (hit["answer"], int(hit.get("citations", 0)))
            stats.cached += 1
        else:
            todo.append(i)
    stats.done = stats.cached

    def report() -> None:
        if progress is not None:
            requests, prompt, completion = _usage(llm)
            with lock:
                stats.requests = requests - usage0[0]
                stats.prompt_tokens = prompt - usage0[1]
                stats.completion_tokens = completion - usage0[2]
            progress(stats)

    answerer = kb.answerer()
    contexts = {i: context(kb, questions[i].query, k) for i in todo}  # the store is read from this thread only

    def work(i: int) -> tuple[str, int]:
        answer = answerer.answer(questions[i].query, contexts[i])
        return answer.text.strip(), len(answer.citations)

    def on_result(i: int, result: tuple[str, int]) -> None:
        text, cited = result
        with lock:
            stats.done += 1
            if not text:
                stats.empty += 1
            else:
                stats.answered += 1
                answers[i] = result
                cache.put(key(questions[i].query), {"answer": text, "citations": cited}, {"model": model})
        report()

    report()
    run_jobs(todo, work, on_result, concurrency, name="kvgraph-answers")
    requests, prompt, completion = _usage(llm)
    stats.requests, stats.prompt_tokens, stats.completion_tokens = (
        requests - usage0[0],
        prompt - usage0[1],
        completion - usage0[2],
    )
    out: list[TrainingPair] = []
    for i, pair in enumerate(questions):
        if i in answers:
            text, cited = answers[i]
            stats.uncited += cited == 0
            out.append(replace(pair, answer=text, source="llm"))
    return out, stats


def load_responses(path: str | os.PathLike[str]) -> list[TrainingPair]:
    """(query, response) pairs from LlamaIndex ``QueryResponseDataset`` JSON or JSONL of ``{"query", "response"}``."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: answers file not found")
    text = p.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except ValueError:
        data = None  # JSON Lines (or broken JSON, which the line reader names)
    if isinstance(data, dict) and ("queries" in data or "responses" in data):
        queries, responses = data.get("queries"), data.get("responses")
        if not isinstance(queries, dict) or not isinstance(responses, dict):
            raise InvalidInputError(f"{p}: a QueryResponseDataset needs 'queries' and 'responses' objects (id -> text)")
        out = []
        for qid, query in queries.items():
            response = responses.get(qid)
            if not isinstance(query, str) or not isinstance(response, str):
                raise InvalidInputError(f"{p}: query {qid!r} needs a string query and a string response")
            if query.strip() and response.strip():
                out.append(TrainingPair(query.strip(), answer=response.strip(), source="file"))
        return out
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise InvalidInputError(f"{p}:{n}: not valid JSON ({e})") from None
        if not isinstance(record, dict) or not isinstance(record.get("query"), str):
            raise InvalidInputError(f"{p}:{n}: expected an object with a string 'query' and 'response'")
        response = record.get("response")
        if not isinstance(response, str):
            raise InvalidInputError(f"{p}:{n}: 'response' must be a string")
        if record["query"].strip() and response.strip():
            out.append(TrainingPair(record["query"].strip(), answer=response.strip(), source="file"))
    return out
