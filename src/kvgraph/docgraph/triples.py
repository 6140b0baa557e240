"""Triple extraction with an LLM: (subject, relation, object) facts, each with the chunk it came from.

The offline extractor (:mod:`kvgraph.docgraph.extract`) finds names; it cannot say how two names
relate. With an OpenAI-compatible LLM configured, :class:`TripleExtractor` asks for each
chunk's facts as JSON, the way HippoRAG's OpenIE step does, and the graph builder turns them
into entity nodes, ``MENTIONS`` edges from the chunk and ``RELATED`` edges between subject and
object that keep the relation text and the chunk id (provenance).

Extraction is paid once: every result is appended to a JSON Lines cache keyed by (prompt
version, model, chunk text), so an interrupted build resumes, a rebuild after ingest asks only
about new or changed chunks, and a build without an LLM reuses what the cache holds.
Token use and progress are reported as they accrue (:class:`TripleProgress`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kvgraph.docgraph.extract import entity_key
from kvgraph.errors import InvalidInputError
from kvgraph.llm.cache import JsonlCache
from kvgraph.llm.jobs import run_jobs

if TYPE_CHECKING:
    from kvgraph.llm.base import LLM
    from kvgraph.schema import Node

log = logging.getLogger(__name__)

PROMPT_VERSION = 1  # part of the cache key: a changed prompt must not reuse old answers
MAX_FIELD_CHARS = 200  # longer "entities" are sentences the model copied, not names

TRIPLES_PROMPT = """\
Extract the facts this passage states, as knowledge-graph triples.

Rules:
- A triple is ["subject", "relation", "object"].
- Subject and object are specific entities as the passage names them: people, places, \
organisations, works, events, dates, quantities. Write full names, never pronouns ("he", "it").
- The relation is a short lowercase verb phrase ("was born in", "directed", "is part of").
- At most {max_triples} triples, the most informative first.
- Reply with JSON only, in this form: {{"triples": [["subject", "relation", "object"]]}}

Title: {title}
Passage:
{text}"""

TRIPLES_RETRY = (
    'That reply was not the JSON asked for. Reply with JSON only: {"triples": [["subject", "relation", "object"]]}'
)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_WRAPPING = "\"'\u201c\u201d`* "


@dataclass(frozen=True)
class Triple:
    """One fact: ``subject`` -``relation``-> ``object``, stated in chunk ``chunk_id``."""

    subject: str
    relation: str
    object: str
    chunk_id: str


@dataclass(frozen=True)
class TripleProgress:
    """Where a :class:`TripleExtractor` run stands; passed to ``progress`` after each chunk.

    ``requests`` counts LLM requests made by this run, ``cached`` chunks answered from the
    cache, ``missing`` chunks with no result (no LLM configured and nothing cached). Token
    counts are what the LLM's ``usage`` grew by during this run (zero for servers that report none).
    """

    done: int
    total: int
    requests: int = 0
    cached: int = 0
    missing: int = 0
    unparsable: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class TripleResult:
    """The triples of a run, by chunk id, and its final :class:`TripleProgress`."""

    triples: dict[str, list[Triple]]
    stats: TripleProgress
    model: str = ""
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return sum(len(t) for t in self.triples.values())


def _clean(value: object) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return ""
    return " ".join(str(value).split()).strip(_WRAPPING)


def _json_values(text: str) -> list[Any]:
    """Every JSON object or array that starts somewhere in ``text`` (code fences first)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    found: list[Any] = []
    for candidate in candidates:
        for i, ch in enumerate(candidate):
            if ch not in "[{":
                continue
            try:
                value, _ = decoder.raw_decode(candidate, i)
            except ValueError:
                continue
            found.append(value)
            break  # the first complete value in this candidate is the answer
    return found


def _rows(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for name in ("triples", "facts", "relations", "triplets"):
            if isinstance(value.get(name), list):
                return list(value[name])
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def parse_triples(reply: str, max_triples: int | None = None) -> list[tuple[str, str, str]] | None:
    """The ``(subject, relation, object)`` rows of an LLM reply, or ``None`` when it holds no usable JSON.

    Accepts ``{"triples": [[s, r, o], ...]}``, a bare list, rows as objects with
    subject/relation (or predicate)/object keys, and JSON inside code fences. Rows with an
    empty or overlong field, a subject that is its own object, and repeats are dropped.
    """
    for value in _json_values(reply):
        rows = _rows(value)
        if rows is None:
            continue
        out: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str, str]] = set()
        for row in rows:
            if isinstance(row, (list, tuple)) and len(row) >= 3:
                s, r, o = (_clean(x) for x in row[:3])
            elif isinstance(row, dict):
                s = _clean(row.get("subject", row.get("head")))
                r = _clean(row.get("relation", row.get("predicate", row.get("relationship"))))
                o = _clean(row.get("object", row.get("tail")))
            else:
                continue
            if not (s and r and o) or max(len(s), len(r), len(o)) > MAX_FIELD_CHARS:
                continue
            ks, ko = entity_key(s), entity_key(o)
            if not ks or not ko or ks == ko:
                continue
            norm = (ks, r.lower(), ko)
            if norm in seen:
                continue
            seen.add(norm)
            out.append((s, r.lower(), o))
        return out if max_triples is None else out[:max_triples]
    return None


class TripleExtractor:
    """Extract triples from chunks with ``llm`` (cache-only when ``llm`` is None), on ``concurrency`` threads."""

    def __init__(
        self,
        llm: LLM | None,
        cache_path: str | os.PathLike[str] | None = None,
        *,
        max_triples: int = 20,
        concurrency: int = 4,
        max_tokens: int = 1024,
        progress: Callable[[TripleProgress], None] | None = None,
    ) -> None:
        for name, value in (("max_triples", max_triples), ("concurrency", concurrency), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        self.llm = llm
        self.model = str(getattr(llm, "model", "") or "")
        self.cache = JsonlCache(cache_path)
        self.max_triples = max_triples
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.progress = progress
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "cached": 0, "missing": 0, "unparsable": 0}
        self._usage0 = (0, 0)

    def _usage(self) -> tuple[int, int]:
        usage = getattr(self.llm, "usage", None)
        return (int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))

    def _snapshot(self, done: int, total: int) -> TripleProgress:
        prompt, completion = self._usage()
        with self._lock:
            counts = dict(self._counts)
        return TripleProgress(
            done=done,
            total=total,
            prompt_tokens=prompt - self._usage0[0],
            completion_tokens=completion - self._usage0[1],
            **counts,
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def cache_keys(self, node: Node) -> tuple[str, str, dict[str, Any]]:
        """``node``'s cache keys, by model and for any model, from prompt version, limit, title and text (not id).

        With an LLM a result is looked up for that model (a new model is asked afresh); without
        one, the latest result of any model serves.
        """
        title = str(node.metadata.get("title") or "")
        text_hash = hashlib.sha256(node.text.encode("utf-8", "surrogatepass")).hexdigest()
        info = {"model": self.model, "chunk_id": node.id, "text_sha256": text_hash, "max_triples": self.max_triples}
        raw = [PROMPT_VERSION, self.max_triples, title, text_hash]
        by_model = hashlib.sha256(json.dumps([*raw, self.model]).encode()).hexdigest()
        any_model = hashlib.sha256(json.dumps([*raw, "*"]).encode()).hexdigest()
        return by_model, any_model, info

    def _ask(self, node: Node) -> list[tuple[str, str, str]] | None:
        """The triples of one chunk (from the cache when there); None when there is no LLM and no cached result."""
        from kvgraph.llm.base import ChatMessage

        key, any_model, info = self.cache_keys(node)
        cached = self.cache.get(key if self.llm is not None else any_model)
        if cached is not None:
            self._count("cached")
            return [(str(r[0]), str(r[1]), str(r[2])) for r in cached if isinstance(r, list) and len(r) == 3]
        if self.llm is None:
            self._count("missing")
            return None
        title = str(node.metadata.get("title") or "(none)")
        prompt = ChatMessage("user", TRIPLES_PROMPT.format(max_triples=self.max_triples, title=title, text=node.text))
        reply = self.llm.complete([prompt], temperature=0.0, max_tokens=self.max_tokens)
        self._count("requests")
        rows = parse_triples(reply, self.max_triples)
        if rows is None:  # one reminder, carrying the bad reply; then record "none" so a re-run does not ask forever
            again = self.llm.complete(
                [prompt, ChatMessage("assistant", reply), ChatMessage("user", TRIPLES_RETRY)],
                temperature=0.0,
                max_tokens=self.max_tokens,
            )
            self._count("requests")
            rows = parse_triples(again, self.max_triples)
            if rows is None:
                self._count("unparsable")
                log.warning("chunk %s: the LLM's triples were not JSON twice; recording none", node.id)
                rows = []
        self.cache.put(key, [list(r) for r in rows], info, aliases=(any_model,))
        return rows

    def extract(self, nodes: Sequence[Node]) -> TripleResult:
        """Triples for every chunk in ``nodes``. An LLM error stops the run; finished chunks stay cached."""
        t0 = time.perf_counter()
        self._usage0 = self._usage()
        self._counts = dict.fromkeys(self._counts, 0)
        out: dict[str, list[Triple]] = {}
        done = 0

        def collect(node: Node, rows: list[tuple[str, str, str]] | None) -> None:
            nonlocal done
            if rows:
                out[node.id] = [Triple(s, r, o, node.id) for s, r, o in rows]
            done += 1
            if self.progress is not None:
                self.progress(self._snapshot(done, len(nodes)))

        run_jobs(nodes, self._ask, collect, self.concurrency, "kvgraph-triples")
        stats = self._snapshot(done, len(nodes))
        log.info(
            "triples: %d chunks, %d LLM requests, %d cached, %d missing, %d + %d tokens",
            stats.total,
            stats.requests,
            stats.cached,
            stats.missing,
            stats.prompt_tokens,
            stats.completion_tokens,
        )
        return TripleResult(out, stats, self.model, time.perf_counter() - t0)
