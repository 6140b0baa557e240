"""Node references: small nodes that stand for a big one, for :class:`RecursiveRetriever`.

Two kinds, after the "recursive retriever + node references" study (LlamaIndex, on the
Llama 2 paper):

**Chunk references** (:func:`chunk_references`). Each document is split into parents of
``parent_size`` (1024) tokens, and each parent into children of each of ``sub_sizes``
(128, 256, 512) tokens. A child has ``role: "child"``, its ``chunk_size``, and the
relationships ``ref`` and ``parent`` naming its parent. Offsets of every node are offsets
into the original document (``doc.text[char_start:char_end] == node.text``).

**Metadata references** (:func:`metadata_references`). Per parent, a summary
(``role: "summary"``) and ``n_questions`` questions (``role: "question"``) that refer to
it. With an LLM they are written by the LLM. Without one they are *extractive*
(``extractive: True``, and a ``label`` saying what they are):

* the summary is the 2-3 most central sentences of the parent (highest mean cosine to the
  parent's other sentences), in text order;
* the questions are replaced by the parent's key sentences, verbatim: the sentences that
  best cover what the summary leaves out (maximal marginal relevance over centrality,
  counting the summary's sentences as already chosen).

Why key sentences rather than keyphrases: a question asks for a fact, and the fact is
stated by a sentence. The default embedder is a sentence model trained on pairs such as
questions and the passages answering them, so a question embeds close to a sentence that
answers it, while a bag of keyphrases embeds as a vague topic and adds little that BM25
over the children does not already catch. Sentences also need no part-of-speech tagging,
and being verbatim they cannot misstate the parent.

**What to search.** The default embedder (all-MiniLM-L6-v2) reads 256 tokens, so a
1024-token parent is embedded from its first ~254 tokens only (and 256/512-token children
from theirs); such nodes are tagged ``embedding_truncated: True``. Parents stay in the
store (they are what recursion returns) but are left out of search by
:func:`search_filter`; ``search_filter(include_parents_in_search=True)`` searches them too,
as the study did (with truncated embeddings).

Every derived node has its parent's ``ref_doc_id``, so deleting a document deletes all its
references, and a deterministic id, so re-running gives the same ids (and ``add`` replaces).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.ingest.splitter import SentenceSplitter, SpanCounter, chunk_id
from kvgraph.llm.cache import JsonlCache
from kvgraph.llm.jobs import run_jobs
from kvgraph.schema import Document, Metadata, Node, NodeRelationship
from kvgraph.text import split_sentences

if TYPE_CHECKING:  # kvgraph.llm imports httpx; only the LLM path needs it, so it is imported there
    from kvgraph.embed.base import Embedder
    from kvgraph.embed.tokens import TokenCounter
    from kvgraph.filters import FilterSpec
    from kvgraph.llm.base import LLM, ChatMessage

log = logging.getLogger("kvgraph.retrieve")

REF = "ref"
_PARENT = NodeRelationship.PARENT.value
_CHILD = NodeRelationship.CHILD.value
_SOURCE = NodeRelationship.SOURCE.value

SUMMARY_SENTENCES = 3
# About the default embedder's 254-token window at ~4 characters per token: a longer
# extractive summary would be embedded truncated. The most central sentence is always kept.
SUMMARY_MAX_CHARS = 1000
MAX_SENTENCE_WORDS = 120  # longer "sentences" are table or reference debris from PDF text
KEY_SENTENCE_LAMBDA = 0.5  # MMR: weight of centrality against redundancy with what is chosen
EMBED_BATCH = 256

_WS = re.compile(r"\s+")
_SENTENCE_END = (".", "!", "?", ".)", '."', ".\u201d", "?\u201d", '?"')

# Metadata of the parent that describes the parent's own chunk, not provenance: not copied
# onto summaries and questions.
_CHUNK_KEYS = frozenset(
    {"char_start", "char_end", "chunk_index", "n_tokens", "chunk_size", "level", "role", "embedding_truncated"}
)


# ---------------------------------------------------------------------- search helpers


def normalize_ws(text: str) -> str:
    """Collapse each run of whitespace to one space and strip the ends (as the extractive answerer quotes)."""
    return _WS.sub(" ", text).strip()


def search_filter(include_parents_in_search: bool = False) -> FilterSpec:
    """The filter for the base retriever of a :class:`RecursiveRetriever` over reference nodes.

    By default every node except parents (plain chunks, children, summaries, questions);
    ``include_parents_in_search=True`` searches parents too (None: no filter).
    ``$ne`` also matches nodes without a ``role``, so plain chunks stay searchable.
    """
    return None if include_parents_in_search else {"role": {"$ne": "parent"}}


def parent_nodes(nodes: Iterable[Node]) -> list[Node]:
    """The parents among ``nodes`` (``role: "parent"``), in order."""
    return [node for node in nodes if node.metadata.get("role") == "parent"]


def embed_nodes(nodes: Sequence[Node], embedder: Embedder, batch_size: int = EMBED_BATCH) -> int:
    """Embed the nodes that have no embedding yet (in batches); return how many were embedded."""
    todo = [node for node in nodes if node.embedding is None]
    for i in range(0, len(todo), batch_size):
        part = todo[i : i + batch_size]
        for node, vec in zip(part, embedder.embed([node.text for node in part])):
            node.embedding = vec
    return len(todo)


# ---------------------------------------------------------------------- chunk references


def _check_sizes(parent_size: int, sub_sizes: Sequence[int]) -> list[int]:
    sizes = list(sub_sizes)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in [parent_size, *sizes]):
        raise InvalidInputError(f"parent_size and sub_sizes must be ints, got {parent_size!r}, {sizes!r}")
    if not sizes:
        raise InvalidInputError("sub_sizes must name at least one child chunk size")
    if len(set(sizes)) != len(sizes) or any(not 0 < s < parent_size for s in sizes):
        raise InvalidInputError(f"sub_sizes must be distinct and smaller than parent_size ({parent_size}), got {sizes}")
    return sizes


def _tag_truncation(nodes: Iterable[Node], counter: TokenCounter) -> None:
    """Mark nodes longer than the embedder's window (their embedding will only see the start)."""
    max_tokens = getattr(counter, "max_tokens", None)
    if max_tokens is None:
        return
    for node in nodes:
        n = node.metadata.get("n_tokens")
        node.metadata["embedding_truncated"] = isinstance(n, int) and n + 2 > max_tokens


def parent_chunks(
    docs: Iterable[Document], counter: TokenCounter, parent_size: int = 1024, overlap: int = 20
) -> list[Node]:
    """Only the parents :func:`chunk_references` would make (same ids), for metadata references alone."""
    docs = list(docs)
    splitter = SentenceSplitter(counter, parent_size, overlap, enforce_max_tokens=False)
    chunks_per_doc = splitter.chunk_regions([(doc.text, 0, len(doc.text)) for doc in docs], SpanCounter(counter))
    out: list[Node] = []
    for doc, chunks in zip(docs, chunks_per_doc):
        out.extend(
            splitter.make_nodes(
                doc, chunks, salt=f"parent:{parent_size}", extra={"role": "parent", "chunk_size": parent_size}
            )
        )
    _tag_truncation(out, counter)
    return out


def chunk_references(
    docs: Iterable[Document],
    counter: TokenCounter,
    parent_size: int = 1024,
    sub_sizes: Sequence[int] = (128, 256, 512),
    overlap: int = 20,
) -> list[Node]:
    """Parents split from each document, and their children of each of ``sub_sizes``, in one list.

    Per document: its parents, then for each parent its children (smallest size first).
    Sizes are counted with ``counter`` (the embedder's tokenizer); every node has at most
    its ``chunk_size`` tokens. Parents and children larger than the counter's window are
    kept (not enforced against it) and tagged ``embedding_truncated``. Ids are deterministic:
    a child's id hashes its document, size, parent id and text, so children of different
    sizes (or of two overlapping parents) with the same text are distinct nodes.
    """
    docs = list(docs)
    sizes = _check_sizes(parent_size, sub_sizes)
    counts = SpanCounter(counter)  # each sentence is counted once for all levels
    parent_splitter = SentenceSplitter(counter, parent_size, overlap, enforce_max_tokens=False)
    parent_chunks = parent_splitter.chunk_regions([(doc.text, 0, len(doc.text)) for doc in docs], counts)
    # (document, parent node, parent's span) for every parent of every document
    parents: list[tuple[Document, Node, int, int]] = []
    for doc, chunks in zip(docs, parent_chunks):
        nodes = parent_splitter.make_nodes(
            doc, chunks, salt=f"parent:{parent_size}", extra={"role": "parent", "chunk_size": parent_size}
        )
        parents.extend((doc, node, chunk.start, chunk.end) for node, chunk in zip(nodes, chunks))
    children: dict[str, list[Node]] = {parent.id: [] for _, parent, _, _ in parents}
    regions = [(doc.text, start, end) for doc, _, start, end in parents]
    for size in sorted(sizes):
        splitter = SentenceSplitter(counter, size, overlap, enforce_max_tokens=False)
        for (doc, parent, _, _), chunks in zip(parents, splitter.chunk_regions(regions, counts)):
            kids = splitter.make_nodes(
                doc, chunks, salt=f"child:{size}:{parent.id}", extra={"role": "child", "chunk_size": size}
            )
            for kid in kids:
                kid.relationships[REF] = parent.id
                kid.relationships[_PARENT] = parent.id
            children[parent.id].extend(kids)
    out: list[Node] = []
    for doc in docs:
        doc_parents = [parent for d, parent, _, _ in parents if d is doc]
        out.extend(doc_parents)
        for parent in doc_parents:
            parent.relationships[_CHILD] = [kid.id for kid in children[parent.id]]
            out.extend(children[parent.id])
    _tag_truncation(out, counter)
    return out


# ---------------------------------------------------------------------- metadata references


@dataclass(frozen=True)
class MetadataProgress:
    """Where :func:`metadata_references` stands; passed to ``progress`` after each parent.

    ``requests`` counts LLM requests made by this call and ``cached`` the LLM results read
    from the cache instead; the token counts are what ``llm.usage`` grew by during this call
    (zero for servers that report no usage, and always without an LLM).
    """

    done: int
    total: int
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _derived_metadata(parent: Node, role: str, label: str, extractive: bool) -> Metadata:
    metadata: Metadata = {k: v for k, v in parent.metadata.items() if k not in _CHUNK_KEYS}
    metadata.update(role=role, label=label, extractive=extractive)
    return metadata


def _derived_node(parent: Node, role: str, index: int, text: str, metadata: Metadata) -> Node:
    relationships: dict[str, str | list[str]] = {REF: parent.id}
    source = parent.relationships.get(_SOURCE)
    if isinstance(source, str):
        relationships[_SOURCE] = source
    return Node(
        id=chunk_id(parent.id, role, str(index), text),
        text=text,
        metadata=metadata,
        ref_doc_id=parent.ref_doc_id,
        relationships=relationships,
    )


def _check_parents(parents: Sequence[Node], n_questions: int) -> None:
    if isinstance(n_questions, bool) or not isinstance(n_questions, int) or n_questions < 0:
        raise InvalidInputError(f"n_questions must be an int >= 0, got {n_questions!r}")
    seen: set[str] = set()
    for parent in parents:
        if not isinstance(parent, Node):
            raise InvalidInputError(f"parents must be Nodes, got {type(parent).__name__}")
        if parent.id in seen:
            raise InvalidInputError(f"parent {parent.id!r} is given twice")
        seen.add(parent.id)


def metadata_references(
    parents: Sequence[Node],
    embedder: Embedder,
    n_questions: int = 5,
    llm: LLM | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    concurrency: int = 4,
    progress: Callable[[MetadataProgress], None] | None = None,
) -> list[Node]:
    """A summary and ``n_questions`` questions (or key sentences) per parent, each referring to it.

    Without ``llm`` the nodes are extractive (see the module docstring) and come embedded
    with ``embedder`` (the sentences are embedded anyway to find the central ones). With
    ``llm``, two requests per parent (summary, questions) run on ``concurrency`` threads;
    each result is appended to the JSONL file ``cache_path`` as soon as it arrives, keyed
    by (model, parent id, text hash, kind), so an interrupted run resumes where it stopped
    and a re-run makes no request. LLM-written nodes have no embedding (:func:`embed_nodes`).
    Per parent the output is its summary, then its questions; parents without a usable
    sentence (a bibliography page, a table) get none offline.
    """
    parents = list(parents)
    _check_parents(parents, n_questions)
    if llm is None:
        return _extractive_references(parents, embedder, n_questions, progress)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError(f"concurrency must be an int >= 1, got {concurrency!r}")
    return _LLMReferences(llm, n_questions, cache_path, concurrency, progress).run(parents)


# -- extractive ------------------------------------------------------------------------


def _candidate_spans(text: str) -> list[tuple[int, int]]:
    """Sentences that can stand alone: prose, not headings, captions, references or table debris."""
    from kvgraph.text import is_useful_sentence

    spans = []
    for start, end in split_sentences(text):
        sentence = normalize_ws(text[start:end])
        if sentence.startswith("#") or len(sentence.split()) > MAX_SENTENCE_WORDS:
            continue
        # A summary or key sentence must be a whole sentence: this drops contents lines
        # ("2. Reinforcement Learning with Human Feedback (RLHF) 9") and cut-off fragments.
        if not sentence.endswith(_SENTENCE_END):
            continue
        if is_useful_sentence(sentence):
            spans.append((start, end))
    return spans


def _centrality(vecs: np.ndarray) -> np.ndarray:
    """Each row's mean cosine to the other rows (rows are unit vectors)."""
    m = len(vecs)
    if m == 1:
        return np.ones(1, dtype=np.float32)
    sims = vecs @ vecs.T
    return np.asarray((sims.sum(axis=1) - np.diag(sims)) / (m - 1))


def _pick_summary(centrality: np.ndarray, lengths: Sequence[int]) -> list[int]:
    """The most central sentences that fit SUMMARY_MAX_CHARS (the first one always), as indices."""
    picked: list[int] = []
    chars = 0
    for i in np.argsort(-centrality, kind="stable").tolist():
        if len(picked) >= SUMMARY_SENTENCES:
            break
        if picked and chars + 1 + lengths[i] > SUMMARY_MAX_CHARS:
            continue
        picked.append(i)
        chars += lengths[i] + (1 if len(picked) > 1 else 0)
    return sorted(picked)


def _pick_key_sentences(vecs: np.ndarray, centrality: np.ndarray, summary: Sequence[int], n: int) -> list[int]:
    """``n`` sentences by MMR over centrality, the summary's sentences counted as already chosen.

    When the parent has fewer than ``n`` other sentences, the summary's sentences fill up.
    """
    m = len(vecs)
    sims = vecs @ vecs.T
    chosen = list(summary)
    available = np.ones(m, dtype=bool)
    available[list(summary)] = False
    picked: list[int] = []
    while len(picked) < min(n, m):
        if not available.any():  # only summary sentences are left
            rest = [i for i in np.argsort(-centrality, kind="stable").tolist() if i not in picked]
            picked.extend(rest[: n - len(picked)])
            break
        redundancy = sims[:, chosen].max(axis=1) if chosen else np.zeros(m)
        score = KEY_SENTENCE_LAMBDA * centrality - (1 - KEY_SENTENCE_LAMBDA) * redundancy
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        chosen.append(best)
        available[best] = False
    return sorted(picked)


def _extractive_references(
    parents: Sequence[Node],
    embedder: Embedder,
    n_questions: int,
    progress: Callable[[MetadataProgress], None] | None,
) -> list[Node]:
    spans = [_candidate_spans(parent.text) for parent in parents]
    # Overlapping parents share sentences: embed each distinct sentence once, in one call.
    texts = list(dict.fromkeys(parent.text[s:e] for parent, ps in zip(parents, spans) for s, e in ps))
    raw = np.asarray(embedder.embed(texts), dtype=np.float32) if texts else np.zeros((0, 0), dtype=np.float32)
    vectors = _unit(raw)  # for cosines; nodes keep the embedder's own vectors (a dot-product store needs those)
    row = {text: i for i, text in enumerate(texts)}
    out: list[Node] = []
    summaries: list[Node] = []
    for done, (parent, ps) in enumerate(zip(parents, spans), 1):
        if ps:
            sentences = [parent.text[s:e] for s, e in ps]
            vecs = vectors[[row[t] for t in sentences]]
            centrality = _centrality(vecs)
            summary = _pick_summary(centrality, [len(normalize_ws(t)) for t in sentences])
            summary_node = _derived_node(
                parent,
                "summary",
                0,
                " ".join(normalize_ws(sentences[i]) for i in summary),
                _derived_metadata(parent, "summary", "extractive summary", extractive=True),
            )
            summaries.append(summary_node)
            out.append(summary_node)
            base = parent.metadata.get("char_start")
            for rank, i in enumerate(_pick_key_sentences(vecs, centrality, summary, n_questions)):
                metadata = _derived_metadata(parent, "question", "key sentence", extractive=True)
                start, end = ps[i]
                if isinstance(base, int) and not isinstance(base, bool):  # offsets into the document, like chunks
                    metadata.update(char_start=base + start, char_end=base + end)
                node = _derived_node(parent, "question", rank, sentences[i], metadata)
                node.embedding = raw[row[sentences[i]]].copy()
                out.append(node)
        if progress is not None:
            progress(MetadataProgress(done=done, total=len(parents)))
    embed_nodes(summaries, embedder)
    return out


def _unit(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    return np.asarray(vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12))


# -- with an LLM -----------------------------------------------------------------------

PROMPT_VERSION = 1  # part of the cache key: changing a prompt must not reuse old answers

SUMMARY_PROMPT = """\
Summarize the following passage in 2 to 4 sentences. Name its key topics and the specific facts it states \
(names, numbers, findings). Reply with the summary only.

Passage:
{text}"""

QUESTIONS_PROMPT = """\
Passage:
{text}

Write exactly {n} questions that this passage answers specifically and that other parts of the document are \
unlikely to answer. Use the passage's own terms. Reply with a numbered list, one question per line, and nothing else."""

QUESTIONS_RETRY = "That was {got} questions. Reply with exactly {n} questions, numbered 1 to {n}, one per line."

# A list item: "1.", "1)", "(1)", "Q1:", "Question 1:", "-", "*", "•", optionally in bold.
_ITEM = re.compile(
    r"^\s*(?:\*\*)?(?:\(?\d{1,2}[.):]|q(?:uestion)?\s*\d{1,2}\s*[.):]|[-*\u2022\u2013])(?:\*\*)?\s+",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"^\s*(?:here (?:is|are)\b.*|summary\s*:|sure[,!.].*)", re.IGNORECASE)
_WRAPPING = "\"'\u201c\u201d*` "


def parse_questions(text: str, n: int | None = None) -> list[str]:
    """The questions of an LLM reply: numbered or bulleted list items, else lines ending in "?".

    An item that wraps onto the next line is joined back; a lead-in ("Here are 5
    questions:") and duplicates are dropped; at most ``n`` are returned.
    """
    items: list[str] = []
    open_item = False  # the last item may continue on the next line
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            open_item = False
            continue
        marker = _ITEM.match(line)
        if marker:
            items.append(line[marker.end() :])
            open_item = True
        elif open_item and not items[-1].rstrip(_WRAPPING).endswith("?"):
            items[-1] += " " + line
        else:
            open_item = False
    if not items:  # no list markers: one question per line, or several in one paragraph
        lines = [line.strip() for line in text.splitlines() if line.strip().endswith("?")]
        pieces = [q.strip() for q in re.split(r"(?<=\?)\s+", " ".join(lines))]
        items = [q for q in pieces if q.endswith("?")]
    out: list[str] = []
    for item in items:
        question = normalize_ws(item).strip(_WRAPPING)
        if question and question.lower() not in {q.lower() for q in out} and not question.endswith(":"):
            out.append(question)
    return out if n is None else out[:n]


def parse_summary(text: str) -> str:
    """The summary of an LLM reply, without a lead-in line ("Here is a summary:") or wrapping quotes."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and _PREAMBLE.match(lines[0]) and lines[0].rstrip().endswith(":"):
        lines = lines[1:]
    summary = normalize_ws(" ".join(lines))
    summary = re.sub(r"^summary\s*:\s*", "", summary, flags=re.IGNORECASE)
    return summary.strip(_WRAPPING)


class _LLMReferences:
    """One run of LLM-written summaries and questions over a list of parents."""

    def __init__(
        self,
        llm: LLM,
        n_questions: int,
        cache_path: str | os.PathLike[str] | None,
        concurrency: int,
        progress: Callable[[MetadataProgress], None] | None,
    ) -> None:
        self.llm = llm
        self.model = str(getattr(llm, "model", "") or "")
        self.n = n_questions
        self.cache = JsonlCache(cache_path)
        self.concurrency = concurrency
        self.progress = progress
        self._lock = threading.Lock()
        self._requests = 0
        self._cached = 0
        self._usage0 = self._usage()

    def _usage(self) -> tuple[int, int]:
        usage = getattr(self.llm, "usage", None)
        return (int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))

    def _snapshot(self, done: int, total: int) -> MetadataProgress:
        prompt, completion = self._usage()
        return MetadataProgress(
            done=done,
            total=total,
            requests=self._requests,
            cached=self._cached,
            prompt_tokens=prompt - self._usage0[0],
            completion_tokens=completion - self._usage0[1],
        )

    def _key(self, parent: Node, kind: str) -> tuple[str, dict[str, Any]]:
        text_hash = hashlib.sha256(parent.text.encode("utf-8", "surrogatepass")).hexdigest()
        n = self.n if kind == "questions" else 0
        info = {"model": self.model, "parent_id": parent.id, "text_sha256": text_hash, "kind": kind, "n": n}
        key = hashlib.sha256(json.dumps([PROMPT_VERSION, *info.values()]).encode()).hexdigest()
        return key, info

    def _complete(self, messages: list[ChatMessage]) -> str:
        reply = self.llm.complete(messages, temperature=0.0)
        with self._lock:
            self._requests += 1
        return reply

    def _ask(self, parent: Node, kind: str) -> Any:
        """The parsed result of one request kind for one parent (from the cache when there)."""
        from kvgraph.llm.base import ChatMessage

        key, info = self._key(parent, kind)
        cached = self.cache.get(key)
        if cached is not None:
            with self._lock:
                self._cached += 1
            return cached
        result: Any
        if kind == "summary":
            result = parse_summary(self._complete([ChatMessage("user", SUMMARY_PROMPT.format(text=parent.text))]))
        else:
            prompt = ChatMessage("user", QUESTIONS_PROMPT.format(text=parent.text, n=self.n))
            reply = self._complete([prompt])
            result = parse_questions(reply, self.n)
            if len(result) < self.n:  # one reminder; then keep what there is, so a re-run does not ask forever
                retry = ChatMessage("user", QUESTIONS_RETRY.format(got=len(result), n=self.n))
                again = parse_questions(self._complete([prompt, ChatMessage("assistant", reply), retry]), self.n)
                result = again if len(again) > len(result) else result
        self.cache.put(key, result, info)
        return result

    def run(self, parents: Sequence[Node]) -> list[Node]:
        kinds = ["summary"] + (["questions"] if self.n else [])
        results: dict[tuple[int, str], Any] = {}
        remaining = {p: len(kinds) for p in range(len(parents))}
        done = 0

        def collect(job: tuple[int, str], result: Any) -> None:
            nonlocal done
            results[job] = result
            remaining[job[0]] -= 1
            if remaining[job[0]] == 0:
                done += 1
                if self.progress is not None:
                    self.progress(self._snapshot(done, len(parents)))

        jobs = [(p, kind) for p in range(len(parents)) for kind in kinds]
        run_jobs(jobs, lambda job: self._ask(parents[job[0]], job[1]), collect, self.concurrency, "kvgraph-metaref")
        final = self._snapshot(done, len(parents))
        log.info(
            "metadata references: %d parents, %d LLM requests (%d cached results), %d prompt + %d completion tokens",
            final.total,
            final.requests,
            final.cached,
            final.prompt_tokens,
            final.completion_tokens,
        )
        return self._nodes(parents, results)

    def _nodes(self, parents: Sequence[Node], results: dict[tuple[int, str], Any]) -> list[Node]:
        out: list[Node] = []
        for p, parent in enumerate(parents):
            summary = results.get((p, "summary"))
            if isinstance(summary, str) and summary:
                metadata = _derived_metadata(parent, "summary", "summary", extractive=False)
                metadata["model"] = self.model
                out.append(_derived_node(parent, "summary", 0, summary, metadata))
            questions = results.get((p, "questions")) or []
            for i, question in enumerate(q for q in questions if isinstance(q, str) and q):
                metadata = _derived_metadata(parent, "question", "question", extractive=False)
                metadata["model"] = self.model
                out.append(_derived_node(parent, "question", i, question, metadata))
        return out
