"""Readers that turn evaluation datasets into one in-memory form, :class:`EvalDataset`.

Every reader returns passages (the pool to index), queries (with the ids of *all* their gold
passages, and reference answers where the format has them) and a ``meta`` dict of counts.
Malformed input raises :class:`~kvgraph.errors.InvalidInputError` whose message starts with the
file and says where in it what is wrong; a reader never lets a ``KeyError`` or a raw
``json.JSONDecodeError`` escape.

Formats:

- :func:`read_llamaindex_rag`: LlamaIndex ``LabelledRagDataset`` JSON.
- :func:`read_llamaindex_qa`: LlamaIndex ``EmbeddingQAFinetuneDataset`` JSON.
- :func:`read_beir`: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
- :func:`read_hipporag`: HippoRAG's multi-hop question and corpus JSON pair
  (:func:`read_hotpotqa_subset` for the shared copy).
- :func:`read_squad`: SQuAD v1.1 JSON (:func:`read_squad_dev` for the shared copy).
- :func:`read_page_questions`: hand-written questions with gold *pages* of a page-separated text
  in the shared datasets (``bench/data/llama2_dev_questions.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from kvgraph.errors import InvalidInputError
from kvgraph.eval.sources import datasets_root, paged_text

PathLike = str | os.PathLike[str]

HOTPOTQA_DIR = "hotpotqa_hipporag"
HOTPOTQA_QUESTIONS = "hotpotqa_train.json"
HOTPOTQA_CORPUS = "hotpotqa_train_corpus.json"
SQUAD_DEV = "squad/dev-v1.1.from-explorer.json"


@dataclass
class Passage:
    """One retrievable unit of a dataset's pool.

    ``text`` is the body only; ``title`` is kept apart so that a caller chooses whether to index it
    (see :attr:`full_text`).
    """

    id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """``title + " " + text`` (or just ``text`` without a title): HippoRAG's indexing convention."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass
class Query:
    """One evaluation question.

    ``relevant`` holds the ids of *all* its gold passages (multi-hop recall needs every one of them),
    in the order the dataset gives them; ``answers`` holds reference answers, possibly none;
    ``tags`` are labels a report can split by (the Llama 2 dev set's ``paraphrase``, ``numeric``...).
    """

    id: str
    text: str
    relevant: list[str]
    answers: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


@dataclass
class EvalDataset:
    """Passages, queries and a ``meta`` dict (format, source path, counts) of one dataset."""

    name: str
    passages: list[Passage]
    queries: list[Query]
    meta: dict[str, Any] = field(default_factory=dict)
    # "documents": passages are added as documents (one per passage); "files": each passage is
    # written to its own Markdown file and ingested like a user's folder (the Llama 2 pages)
    ingest: str = "documents"

    def gold(self) -> dict[str, list[str]]:
        """Query id -> gold passage ids, the form :func:`kvgraph.eval.metrics.evaluate_retrieval` takes."""
        return {q.id: list(q.relevant) for q in self.queries}


# ---------------------------------------------------------------------------------------------
# Validation helpers: each error names the file and the place in it ("examples[3].query").

_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _fail(path: Path, what: str) -> NoReturn:
    raise InvalidInputError(f"{path}: {what}")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        _fail(path, f"{what} not found" if not path.exists() else f"{what} is not a regular file")


def _read_json(path: Path, what: str) -> Any:
    _require_file(path, what)
    try:
        # utf-8-sig: files saved by some Windows tools start with a BOM, which json.loads rejects
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        _fail(path, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})")
    except UnicodeDecodeError as e:
        _fail(path, f"not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:
        _fail(path, f"cannot be read ({e.strerror or e})")


def _iter_jsonl(path: Path, what: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, object)`` per non-blank line; ``where`` is ``"line N"`` for error messages."""
    _require_file(path, what)
    try:
        with path.open(encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"line {lineno}", json.loads(line)
                except json.JSONDecodeError as e:
                    _fail(path, f"line {lineno} is not valid JSON ({e.msg} at column {e.colno})")
    except UnicodeDecodeError as e:
        _fail(path, f"not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:
        _fail(path, f"cannot be read ({e.strerror or e})")


def _as(value: Any, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    # bool is an int subclass: a JSON true must not pass as a number
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        expected = " or ".join(dict.fromkeys(_JSON_TYPES.get(k, k.__name__) for k in _kinds(kind)))
        _fail(path, f"{where} should be {expected}, not {_json_type(value)}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _get(obj: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``obj[key]``, checked to be a JSON object holding a value of ``kind`` under ``key``."""
    _as(obj, dict, path, where)
    if key not in obj:
        _fail(path, f"{where} has no {key!r} field")
    return _as(obj[key], kind, path, f"{where}.{key}" if where != "the top level" else key)


def _str_list(value: Any, path: Path, where: str) -> list[str]:
    _as(value, list, path, where)
    for i, item in enumerate(value):
        _as(item, str, path, f"{where}[{i}]")
    return list(value)


def _id(value: Any, path: Path, where: str) -> str:
    # BEIR and HotpotQA ids are strings, but some exports write numeric ids; both mean the same id
    return str(_as(value, (str, int), path, where))


def _dedup(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _check_unique_queries(queries: list[Query], path: Path) -> None:
    dup = [qid for qid, n in Counter(q.id for q in queries).items() if n > 1]
    if dup:
        _fail(path, f"{len(dup)} query id(s) occur more than once, e.g. {dup[0]!r}")


def text_id(text: str) -> str:
    """A passage id derived from its text: the first 16 hex digits of its SHA-1."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# LlamaIndex


def read_llamaindex_rag(path: PathLike) -> EvalDataset:
    """Read a LlamaIndex ``LabelledRagDataset`` JSON (``LabelledRagDataset.save_json``).

    Layout: ``{"examples": [{"query", "reference_contexts": [str] | null, "reference_answer", ...}]}``.
    Passages are the distinct reference contexts, with id :func:`text_id` of their text, so a context
    shared by several examples is one passage. Query ids are the example's index (``"0"``, ``"1"``, ...)
    because examples carry no id. ``relevant`` lists that example's contexts; ``answers`` is
    ``[reference_answer]`` (empty when the answer is empty). A ``null`` ``reference_contexts`` gives a
    query without gold passages (still usable for answer metrics), counted in ``meta``.
    """
    p = Path(path)
    data = _read_json(p, "LabelledRagDataset JSON")
    examples = _get(data, "examples", list, p, "the top level")
    passages: dict[str, Passage] = {}
    queries: list[Query] = []
    without_contexts = 0
    for i, ex in enumerate(examples):
        where = f"examples[{i}]"
        text = _get(ex, "query", str, p, where)
        contexts = _get(ex, "reference_contexts", (list, type(None)), p, where)
        answer = _get(ex, "reference_answer", str, p, where)
        relevant: list[str] = []
        for ctx in _str_list(contexts or [], p, f"{where}.reference_contexts"):
            pid = text_id(ctx)
            passages.setdefault(pid, Passage(id=pid, text=ctx))
            relevant.append(pid)
        without_contexts += not relevant
        queries.append(Query(id=str(i), text=text, relevant=_dedup(relevant), answers=[answer] if answer else []))
    meta = {
        "format": "llamaindex-rag",
        "path": str(p),
        "queries": len(queries),
        "passages": len(passages),
        "queries_without_gold": without_contexts,
    }
    return EvalDataset(name=p.stem, passages=list(passages.values()), queries=queries, meta=meta)


def read_llamaindex_qa(path: PathLike) -> EvalDataset:
    """Read a LlamaIndex ``EmbeddingQAFinetuneDataset`` JSON (``EmbeddingQAFinetuneDataset.save_json``).

    Layout: ``{"queries": {qid: text}, "corpus": {node_id: text}, "relevant_docs": {qid: [node_id]}}``.
    Passage ids are the corpus keys, query ids the query keys. Queries with no relevant docs are dropped
    (they can only score zero and there is no answer to grade); ``meta`` counts them, and counts gold ids
    missing from the corpus (kept: they lower recall, as they should).
    """
    p = Path(path)
    data = _read_json(p, "EmbeddingQAFinetuneDataset JSON")
    query_texts = _get(data, "queries", dict, p, "the top level")
    corpus = _get(data, "corpus", dict, p, "the top level")
    relevant_docs = _get(data, "relevant_docs", dict, p, "the top level")
    passages = [Passage(id=nid, text=_as(text, str, p, f"corpus[{nid!r}]")) for nid, text in corpus.items()]
    gold = {qid: _dedup(_str_list(ids, p, f"relevant_docs[{qid!r}]")) for qid, ids in relevant_docs.items()}
    queries: list[Query] = []
    dropped = 0
    for qid, text in query_texts.items():
        _as(text, str, p, f"queries[{qid!r}]")
        if gold.get(qid):
            queries.append(Query(id=qid, text=text, relevant=gold[qid]))
        else:
            dropped += 1
    meta = {
        "format": "llamaindex-qa",
        "path": str(p),
        "queries": len(queries),
        "passages": len(passages),
        "queries_without_gold": dropped,
        "gold_for_unknown_queries": sum(qid not in query_texts for qid in gold),
        "gold_not_in_corpus": sum(pid not in corpus for q in queries for pid in q.relevant),
    }
    return EvalDataset(name=p.stem, passages=passages, queries=queries, meta=meta)


# ---------------------------------------------------------------------------------------------
# BEIR


def read_beir(folder: PathLike, split: str = "test") -> EvalDataset:
    """Read a BEIR dataset folder.

    ``corpus.jsonl`` lines are ``{"_id", "title", "text"}`` (``title`` optional), ``queries.jsonl`` lines
    ``{"_id", "text"}``, and ``qrels/<split>.tsv`` has the header ``query-id corpus-id score`` then one
    tab-separated judgement per line. Judgements with score > 0 are gold (BEIR's convention; graded
    relevance collapses to binary). Only queries with at least one gold passage are kept, in
    ``queries.jsonl`` order.
    """
    root = Path(folder)
    if not root.is_dir():
        _fail(root, "BEIR folder not found")
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        # say which splits exist: a wrong split name is the usual mistake
        splits = sorted(f.stem for f in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        _fail(qrels_path, f"qrels for split {split!r} not found (available: {', '.join(splits) or 'none'})")

    passages: list[Passage] = []
    seen: set[str] = set()
    for where, obj in _iter_jsonl(corpus_path, "BEIR corpus"):
        pid = _id(_get(obj, "_id", (str, int), corpus_path, where), corpus_path, f"{where}._id")
        if pid in seen:
            _fail(corpus_path, f"{where}: passage id {pid!r} occurs more than once")
        seen.add(pid)
        title = _as(obj.get("title") or "", str, corpus_path, f"{where}.title")
        passages.append(Passage(id=pid, text=_get(obj, "text", str, corpus_path, where), title=title))

    gold: dict[str, list[str]] = {}
    judgements = 0
    try:
        lines = qrels_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(qrels_path, f"cannot be read ({e})")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3:  # tolerate space-separated files; BEIR ids contain no whitespace
            cols = line.split()
        if lineno == 1 and cols and cols[0] == "query-id":
            continue
        if len(cols) != 3:
            _fail(qrels_path, f"line {lineno} should have 3 columns (query-id, corpus-id, score), has {len(cols)}")
        try:
            score = float(cols[2])
        except ValueError:
            _fail(qrels_path, f"line {lineno}: score {cols[2]!r} is not a number")
        judgements += 1
        if score > 0:
            gold.setdefault(cols[0], []).append(cols[1])

    queries: list[Query] = []
    known: set[str] = set()
    for where, obj in _iter_jsonl(queries_path, "BEIR queries"):
        qid = _id(_get(obj, "_id", (str, int), queries_path, where), queries_path, f"{where}._id")
        text = _get(obj, "text", str, queries_path, where)
        known.add(qid)
        if qid in gold:
            queries.append(Query(id=qid, text=text, relevant=_dedup(gold[qid])))
    _check_unique_queries(queries, queries_path)
    meta = {
        "format": "beir",
        "path": str(root),
        "split": split,
        "queries": len(queries),
        "passages": len(passages),
        "judgements": judgements,
        "gold_for_unknown_queries": sum(qid not in known for qid in gold),
        "gold_not_in_corpus": sum(pid not in seen for q in queries for pid in q.relevant),
    }
    return EvalDataset(name=root.name, passages=passages, queries=queries, meta=meta)


# ---------------------------------------------------------------------------------------------
# HippoRAG (HotpotQA / 2WikiMultiHopQA / MuSiQue)


def _text_key(text: str) -> str:
    """A passage text without any whitespace: HotpotQA joins sentences with ``""``, 2Wiki with ``" "``."""
    return "".join(text.split())


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@dataclass
class _Corpus:
    """The passages of a HippoRAG corpus and the indexes that resolve a gold paragraph to *one* of them."""

    passages: list[Passage] = field(default_factory=list)
    by_title: dict[str, list[str]] = field(default_factory=dict)
    by_title_text: dict[tuple[str, str], str] = field(default_factory=dict)
    by_text: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0

    def add(self, title: str, text: str) -> None:
        ids = self.by_title.setdefault(title, [])
        # ids are titles (unique in HippoRAG's HotpotQA corpora); a repeated title (MuSiQue has
        # several paragraphs per title) gets "#2", "#3", ... in corpus order
        pid = title if not ids else f"{title}#{len(ids) + 1}"
        ids.append(pid)
        self.passages.append(Passage(id=pid, text=text, title=title))
        key = (title, _text_key(text))
        if key in self.by_title_text:
            self.duplicates += 1  # the same paragraph twice: gold names the first copy
        else:
            self.by_title_text[key] = pid
        self.by_text.setdefault(key[1], []).append(pid)


def _hipporag_corpus(corpus: Any, path: Path) -> _Corpus:
    """Passages and their lookup indexes, from either corpus layout HippoRAG has used."""
    out = _Corpus()
    if isinstance(corpus, dict):
        # HippoRAG 1: {title: [sentence, ...]}; sentences carry their own leading spaces
        for title, body in corpus.items():
            where = f"corpus[{title!r}]"
            out.add(title, body if isinstance(body, str) else "".join(_str_list(body, path, where)))
    elif isinstance(corpus, list):
        # HippoRAG 2 and its MuSiQue / 2Wiki files: [{"title", "text", "idx"?}, ...]
        for i, entry in enumerate(corpus):
            out.add(_get(entry, "title", str, path, f"[{i}]"), _get(entry, "text", str, path, f"[{i}]"))
    else:
        _fail(path, f"the corpus should be an object (title -> sentences) or an array, not {_json_type(corpus)}")
    return out


def _sentences(body: Any, path: Path, where: str) -> str:
    """A context paragraph's text: a string, or its sentences joined (the key ignores whitespace)."""
    return body if isinstance(body, str) else " ".join(_str_list(body, path, where))


def _gold_paragraphs(q: dict[str, Any], path: Path, where: str) -> list[tuple[str, str | None]]:
    """The question's gold paragraphs as ``(title, text)``; ``text`` is None when only the title is known.

    Follows HippoRAG's ``get_gold_docs``: HotpotQA and 2Wiki name gold *titles* in
    ``supporting_facts`` and the paragraph is the ``context`` entry of that title; MuSiQue lists
    ``paragraphs`` with ``is_supporting`` (a paragraph without the flag counts as supporting, as in
    HippoRAG's own query files) and the text in ``paragraph_text`` or ``text``; NQ-style items list
    ``contexts`` with ``is_supporting``.
    """
    if "supporting_facts" in q:
        titles: list[str] = []
        needed: dict[str, int] = {}  # title -> sentences its paragraph must have (largest cited index + 1)
        for j, fact in enumerate(_get(q, "supporting_facts", list, path, where)):
            fwhere = f"{where}.supporting_facts[{j}]"
            if not isinstance(fact, list) or not fact:
                _fail(path, f"{fwhere} should be a [title, sentence_index] array, not {_json_type(fact)}")
            title = _as(fact[0], str, path, f"{fwhere}[0]")
            titles.append(title)
            if len(fact) > 1 and isinstance(fact[1], int) and not isinstance(fact[1], bool):
                needed[title] = max(needed.get(title, 0), fact[1] + 1)
        context = q.get("context")
        if context is None:
            return [(t, None) for t in _dedup(titles)]
        texts: dict[str, list[tuple[str, int]]] = {}
        for j, entry in enumerate(_as(context, list, path, f"{where}.context")):
            cwhere = f"{where}.context[{j}]"
            if not isinstance(entry, list) or len(entry) != 2:
                _fail(path, f"{cwhere} should be a [title, sentences] array")
            title = _as(entry[0], str, path, f"{cwhere}[0]")
            n = 1 if isinstance(entry[1], str) else len(_as(entry[1], list, path, f"{cwhere}[1]"))
            texts.setdefault(title, []).append((_sentences(entry[1], path, f"{cwhere}[1]"), n))
        found: list[tuple[str, str | None]] = []
        for t in _dedup(titles):
            candidates = texts.get(t, [])
            if len(candidates) > 1:  # a title twice in one context: the cited sentence must exist in it
                candidates = [c for c in candidates if c[1] >= needed.get(t, 0)] or candidates
            # a gold title missing from the context is still gold: resolved by title alone
            found += [(t, text) for text, _ in candidates] if candidates else [(t, None)]
        return found
    for key in ("paragraphs", "contexts"):
        if key in q:
            out: list[tuple[str, str | None]] = []
            for j, para in enumerate(_get(q, key, list, path, where)):
                pwhere = f"{where}.{key}[{j}]"
                _as(para, dict, path, pwhere)
                supporting = para.get("is_supporting", key == "paragraphs")
                if supporting is False or (key == "contexts" and not supporting):
                    continue
                title = _get(para, "title", str, path, pwhere)
                body = para.get("paragraph_text", para.get("text"))
                out.append((title, None if body is None else _as(body, str, path, f"{pwhere}.paragraph_text")))
            return out
    _fail(path, f"{where} has neither 'supporting_facts' nor 'paragraphs' (the gold passages)")


@dataclass
class _GoldStats:
    missing: int = 0  # gold paragraphs in no corpus passage (kept as ids: they lower recall)
    by_overlap: int = 0  # text differed from every passage; matched to the same-title passage it overlaps most
    ambiguous: int = 0  # only a title was known and several passages have it: all of them count


def _resolve(corpus: _Corpus, title: str, text: str | None, stats: _GoldStats) -> list[str]:
    """The corpus passage a gold paragraph *is*: by title and text, never every passage of a title."""
    same_title = corpus.by_title.get(title, [])
    if text is not None:
        key = _text_key(text)
        pid = corpus.by_title_text.get((title, key))
        if pid is not None:
            return [pid]
        by_text = corpus.by_text.get(key, [])
        if len(by_text) == 1:  # the title is spelled differently in the corpus
            return by_text
        if len(same_title) == 1:
            return same_title
        if same_title:
            stats.by_overlap += 1
            words = _words(text)
            texts = {p.id: p.text for p in corpus.passages if p.title == title}

            def overlap(pid: str) -> float:
                other = _words(texts[pid])
                return len(words & other) / max(len(words | other), 1)

            return [max(same_title, key=overlap)]
    elif same_title:
        if len(same_title) > 1:
            stats.ambiguous += 1
        return list(same_title)
    stats.missing += 1
    return [title]


def read_hipporag(questions_path: PathLike, corpus_path: PathLike) -> EvalDataset:
    """Read a HippoRAG multi-hop dataset (HotpotQA, 2WikiMultiHopQA, MuSiQue): questions and their corpus.

    HippoRAG ships ``NAME.json`` (questions) and ``NAME_corpus.json`` (passages). Questions are
    HotpotQA / 2Wiki items ``{"_id", "question", "answer", "supporting_facts": [[title, i]],
    "context": [[title, sentences]]}`` or MuSiQue items ``{"id", "question", "answer",
    "answer_aliases", "paragraphs": [{"idx", "title", "paragraph_text", "is_supporting"}]}``. The
    corpus is ``{title: [sentence, ...]}`` (HippoRAG 1) or ``[{"title", "text", "idx"}]``. Following
    the HotpotQA README, a passage's title is its title and its text ``"".join(sentences)``; its id
    is the title, with ``#2``, ``#3``... when a title repeats (index :attr:`Passage.full_text`).

    **Gold is by passage identity, not by title** (as HippoRAG's evaluation, which compares
    ``title + text``): a gold paragraph is the corpus passage with its title and text (whitespace
    ignored), so a title with several paragraphs gives a question only the one it needs. When the
    text matches no passage, the passage with that text under another title, then the only
    passage of that title, then the same-title passage sharing the most words is taken; when a
    question names only a title (no context), every passage of that title counts, and ``meta``
    says how often. ``relevant`` holds *every* gold passage (2 per HotpotQA question, 2-4 per
    MuSiQue question); ``answers`` is ``[answer]`` plus any ``answer_aliases``.
    """
    qpath, cpath = Path(questions_path), Path(corpus_path)
    corpus = _hipporag_corpus(_read_json(cpath, "HippoRAG corpus JSON"), cpath)
    raw = _as(_read_json(qpath, "HippoRAG questions JSON"), list, qpath, "the top level")
    queries: list[Query] = []
    stats = _GoldStats()
    for i, q in enumerate(raw):
        where = f"[{i}]"
        _as(q, dict, qpath, where)
        key = "_id" if "_id" in q else "id" if "id" in q else None
        qid = _id(q[key], qpath, f"{where}.{key}") if key else str(i)
        answer = _get(q, "answer", (str, list), qpath, where)
        answers = [answer] if isinstance(answer, str) else _str_list(answer, qpath, f"{where}.answer")
        answers += _str_list(q.get("answer_aliases") or [], qpath, f"{where}.answer_aliases")
        relevant: list[str] = []
        for title, text in _gold_paragraphs(q, qpath, where):
            relevant += _resolve(corpus, title, text, stats)
        text = _get(q, "question", str, qpath, where)
        queries.append(Query(id=qid, text=text, relevant=_dedup(relevant), answers=_dedup([a for a in answers if a])))
    _check_unique_queries(queries, qpath)
    meta = {
        "format": "hipporag",
        "path": str(qpath),
        "corpus_path": str(cpath),
        "queries": len(queries),
        "passages": len(corpus.passages),
        "repeated_titles": sum(len(ids) > 1 for ids in corpus.by_title.values()),
        "duplicate_passages": corpus.duplicates,
        "gold_per_query": dict(sorted(Counter(len(q.relevant) for q in queries).items())),
        "types": dict(Counter(str(q.get("type")) for q in raw if "type" in q)),
        "levels": dict(Counter(str(q.get("level")) for q in raw if "level" in q)),
        "gold_not_in_corpus": stats.missing,
        "gold_matched_by_word_overlap": stats.by_overlap,
        "gold_by_ambiguous_title": stats.ambiguous,
    }
    return EvalDataset(name=qpath.stem, passages=corpus.passages, queries=queries, meta=meta)


def read_hotpotqa_subset(root: PathLike | None = None) -> EvalDataset:
    """HippoRAG's 100-question HotpotQA subset and its 994-passage corpus, from the shared datasets folder.

    ``root`` is the datasets folder (default: ``KVGRAPH_DATASETS`` or ``../shared/datasets``).
    """
    folder = datasets_root(root) / HOTPOTQA_DIR
    if not folder.is_dir():
        _fail(folder, "HotpotQA subset not found (set KVGRAPH_DATASETS or pass the datasets folder)")
    ds = read_hipporag(folder / HOTPOTQA_QUESTIONS, folder / HOTPOTQA_CORPUS)
    ds.name = HOTPOTQA_DIR
    return ds


# ---------------------------------------------------------------------------------------------
# SQuAD


def read_squad(path: PathLike, max_articles: int | None = None) -> EvalDataset:
    """Read a SQuAD v1.1 JSON: ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``.

    One passage per paragraph, id ``f"{article_index}:{paragraph_index}"`` (0-based) and title the
    article's title; one query per question (its SQuAD ``id``), whose single gold passage is its own
    paragraph and whose answers are the ``answers[].text`` strings in file order (duplicates kept, as in
    the official file). ``answer_start`` is not needed, so the shared copy rebuilt from the SQuAD explorer
    (which lacks it) reads the same as the official file; questions are stripped because that copy's
    whitespace around them may differ. ``max_articles`` keeps only the first articles.
    """
    p = Path(path)
    if max_articles is not None and max_articles < 0:
        raise InvalidInputError(f"max_articles must be >= 0, got {max_articles}")
    data = _read_json(p, "SQuAD JSON")
    articles = _get(data, "data", list, p, "the top level")[:max_articles]
    passages: list[Passage] = []
    queries: list[Query] = []
    n_answers = 0
    for ai, article in enumerate(articles):
        awhere = f"data[{ai}]"
        title = _get(article, "title", str, p, awhere)
        for pi, para in enumerate(_get(article, "paragraphs", list, p, awhere)):
            pwhere = f"{awhere}.paragraphs[{pi}]"
            pid = f"{ai}:{pi}"
            passages.append(Passage(id=pid, text=_get(para, "context", str, p, pwhere), title=title))
            for qi, qa in enumerate(_get(para, "qas", list, p, pwhere)):
                qwhere = f"{pwhere}.qas[{qi}]"
                answers = [
                    _get(ans, "text", str, p, f"{qwhere}.answers[{j}]")
                    for j, ans in enumerate(_get(qa, "answers", list, p, qwhere))
                ]
                n_answers += len(answers)
                qid = _id(_get(qa, "id", (str, int), p, qwhere), p, f"{qwhere}.id")
                text = _get(qa, "question", str, p, qwhere).strip()
                queries.append(Query(id=qid, text=text, relevant=[pid], answers=answers))
    _check_unique_queries(queries, p)
    meta = {
        "format": "squad",
        "path": str(p),
        "version": data.get("version"),
        "articles": len(articles),
        "paragraphs": len(passages),
        "questions": len(queries),
        "answers": n_answers,
    }
    return EvalDataset(name=p.stem, passages=passages, queries=queries, meta=meta)


def read_squad_dev(root: PathLike | None = None, max_articles: int | None = None) -> EvalDataset:
    """The shared SQuAD v1.1 dev set (48 articles, 2,067 paragraphs, 10,570 questions).

    ``root`` is the datasets folder (default: ``KVGRAPH_DATASETS`` or ``../shared/datasets``).
    """
    path = datasets_root(root) / SQUAD_DEV
    if not path.is_file():
        _fail(path, "SQuAD dev set not found (set KVGRAPH_DATASETS or pass the datasets folder)")
    ds = read_squad(path, max_articles=max_articles)
    ds.name = "squad-dev-v1.1"
    return ds


# ---------------------------------------------------------------------------------------------
# Questions with gold pages (the hand-written Llama 2 dev set)

PAGE_KINDS = ("factual", "conceptual", "numeric")


def page_id(page: int) -> str:
    """The passage id of a 1-based page number: ``page-007``; also the stem of its file when ingested."""
    return f"page-{page:03d}"


def read_page_questions(path: PathLike, root: PathLike | None = None) -> EvalDataset:
    """Read questions whose gold answers are *pages* of a page-separated text in the shared datasets.

    Layout: ``{"name", "source": "llama2/llama2_paper_pdftext.txt", "questions": [{"id",
    "question", "gold_pages": [23], "kind": "factual|conceptual|numeric", "paraphrase": bool,
    "answer"?}]}``. ``source`` is relative to the datasets folder (``root``, else
    ``KVGRAPH_DATASETS``, else ``../shared/datasets``) and is split into pages at ``---`` lines,
    so the repository holds only the questions. Passages are the pages (id :func:`page_id`);
    ``ingest`` is ``"files"``: the runner writes one Markdown file per page and ingests the folder,
    as a new user would, and a retrieved chunk counts for the page its file (or ``page`` metadata)
    names. Query ``tags`` are the ``kind`` and ``paraphrase`` when true.
    """
    p = Path(path)
    data = _read_json(p, "page questions JSON")
    _as(data, dict, p, "the top level")
    source = _get(data, "source", str, p, "the top level")
    pages = paged_text(datasets_root(root) / source)
    passages = [Passage(id=page_id(n), text=text) for n, text in pages if text.strip()]
    known = {ps.id for ps in passages}
    queries: list[Query] = []
    for i, q in enumerate(_get(data, "questions", list, p, "the top level")):
        where = f"questions[{i}]"
        qid = _id(_get(q, "id", (str, int), p, where), p, f"{where}.id")
        gold = _get(q, "gold_pages", list, p, where)
        relevant = []
        for j, page in enumerate(gold):
            _as(page, int, p, f"{where}.gold_pages[{j}]")
            if page_id(page) not in known:
                _fail(p, f"{where}.gold_pages[{j}]: {source} has no text on page {page} ({len(pages)} pages)")
            relevant.append(page_id(page))
        if not relevant:
            _fail(p, f"{where}.gold_pages is empty: every question needs a gold page")
        kind = _get(q, "kind", str, p, where)
        if kind not in PAGE_KINDS:
            _fail(p, f"{where}.kind should be one of {', '.join(PAGE_KINDS)}, not {kind!r}")
        tags = [kind] + (["paraphrase"] if _as(q.get("paraphrase", False), bool, p, f"{where}.paraphrase") else [])
        answer = _as(q.get("answer") or "", str, p, f"{where}.answer")
        text = _get(q, "question", str, p, where).strip()
        if not text:
            _fail(p, f"{where}.question is empty")
        queries.append(Query(qid, text, _dedup(relevant), [answer] if answer else [], tags))
    _check_unique_queries(queries, p)
    meta = {
        "format": "pages",
        "path": str(p),
        "source": source,
        "pages": len(passages),
        "queries": len(queries),
        "tags": dict(Counter(t for q in queries for t in q.tags)),
        "gold_per_query": dict(sorted(Counter(len(q.relevant) for q in queries).items())),
    }
    name = str(data.get("name") or p.stem)
    return EvalDataset(name=name, passages=passages, queries=queries, meta=meta, ingest="files")
