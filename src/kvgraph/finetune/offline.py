"""Training pairs made without an LLM, from the chunks themselves (or from a labelled set).

- :func:`inverse_cloze_pairs`: the inverse cloze task (Lee et al., 2019, ORQA): a sentence of a
  chunk is the query and the rest of the chunk, the sentence cut out, is the positive. The model
  learns which contexts surround a statement in *this* corpus, its vocabulary and style.
- :func:`heading_pairs`: a section heading (Markdown ``heading_path``, a ``title``, or a ``#``
  heading line inside the chunk) is the query, the text under it the positive, the heading cut
  out. Titles are what people type.
- :func:`link_pairs`: a sentence that names another titled chunk (an article, a page or section
  title) is the query, that chunk the positive: a question naming an entity should find the
  entity's own text.
- :func:`labelled_pairs`: questions someone labelled with their relevant passages (SQuAD, BEIR,
  HippoRAG, ...), one pair per relevant passage.

What each source is worth is measured in docs/finetune.md: the answer differs by corpus.
Evaluation sentences must never be queries here (they would be learnt by heart): pass them as
``exclude``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence

from kvgraph.finetune.pairs import TrainingPair, normalize_query
from kvgraph.schema import Node
from kvgraph.text import is_useful_sentence, split_sentences

MIN_QUERY_WORDS = 6
MAX_QUERY_WORDS = 60
MIN_CONTEXT_WORDS = 20
_WS = re.compile(r"\s+")
_HEADING_LINE = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SECTION_NUMBER = re.compile(r"^(?:[A-Z]\.)?\d+(?:\.\d+)*\.?\s+")  # "2.1 ", "A.3 "


def _ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _doc_of(node: Node) -> str:
    return node.ref_doc_id or node.id


def _rng(seed: int, key: str) -> random.Random:
    # Seeded per node, so adding a chunk does not change the pairs drawn for the others.
    return random.Random(int(hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()[:16], 16))


class Excluded:
    """Sentences that must not become queries: equal after normalisation, or one inside the other."""

    def __init__(self, sentences: Iterable[str] = ()) -> None:
        self.keys = [k for k in (normalize_query(s) for s in sentences) if k]
        self._exact = set(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def hit(self, text: str) -> bool:
        key = normalize_query(text)
        if not key:
            return False
        if key in self._exact:
            return True
        # A chunk's sentence splitter and the evaluation's may cut one sentence differently.
        return any(k in key or key in k for k in self.keys if min(len(k), len(key)) >= 30)


def inverse_cloze_pairs(
    nodes: Sequence[Node],
    per_chunk: int = 2,
    seed: int = 0,
    exclude: Excluded | None = None,
    min_query_words: int = MIN_QUERY_WORDS,
    min_context_words: int = MIN_CONTEXT_WORDS,
) -> list[TrainingPair]:
    """Up to ``per_chunk`` (sentence -> rest of the chunk) pairs per node, drawn at random (seeded)."""
    out: list[TrainingPair] = []
    for node in nodes:
        text = node.text
        candidates = []
        for start, end in split_sentences(text):
            sentence = _ws(text[start:end])
            n_words = len(sentence.split())
            if not min_query_words <= n_words <= MAX_QUERY_WORDS or not is_useful_sentence(sentence):
                continue
            if exclude is not None and exclude.hit(sentence):
                continue
            candidates.append((start, end, sentence))
        rng = _rng(seed, node.id)
        rng.shuffle(candidates)
        taken = 0
        for start, end, sentence in candidates:
            if taken >= per_chunk:
                break
            rest = _ws(text[:start] + " " + text[end:])
            if len(rest.split()) < min_context_words:
                continue
            out.append(TrainingPair(sentence, rest, source="ict", doc_id=_doc_of(node), positive_id=node.id))
            taken += 1
    return out


def _clean_heading(text: str) -> str:
    text = _ws(text.strip("#*_ ").replace("**", ""))
    return _SECTION_NUMBER.sub("", text).strip(" .:")


def heading_pairs(
    nodes: Sequence[Node],
    exclude: Excluded | None = None,
    min_context_words: int = MIN_CONTEXT_WORDS,
) -> list[TrainingPair]:
    """(heading -> text under it) pairs: from ``heading_path`` / ``title`` metadata and ``#`` lines in the text.

    A heading repeated in one document gives one pair per section; the heading itself is cut from
    the positive so that the pair is not an exact-match lookup. Headings of one word are skipped
    ("Introduction" matches every paper).
    """
    out: list[TrainingPair] = []
    seen: set[tuple[str, str]] = set()

    def add(heading: str, body: str, node: Node) -> None:
        query = _clean_heading(heading)
        body = _ws(body)
        if len(query.split()) < 2 or len(body.split()) < min_context_words:
            return
        if exclude is not None and exclude.hit(query):
            return
        key = (normalize_query(query), node.id)
        if key in seen:
            return
        seen.add(key)
        out.append(TrainingPair(query, body, source="heading", doc_id=_doc_of(node), positive_id=node.id))

    for node in nodes:
        text = node.text
        meta = node.metadata
        lines = list(_HEADING_LINE.finditer(text))
        path = meta.get("heading_path")
        title = meta.get("title")
        named = path.split(" > ")[-1] if isinstance(path, str) and path else title if isinstance(title, str) else ""
        if named:
            body = text
            stripped = _ws(text)
            if lines and lines[0].start() == len(text) - len(text.lstrip()):
                body = text[lines[0].end() :]  # the section's own heading line opens its text
            elif stripped.casefold().startswith(named.casefold()):
                body = stripped[len(named) :]  # "title + text", as passages are indexed
            add(named, body, node)
        for i, m in enumerate(lines):
            end = lines[i + 1].start() if i + 1 < len(lines) else len(text)
            add(m.group(2), text[m.end() : end], node)
    return out


def _title_of(node: Node) -> str:
    meta = node.metadata
    path = meta.get("heading_path")
    if isinstance(path, str) and path:
        return path.split(" > ")[-1].strip()
    title = meta.get("title")
    return title.strip() if isinstance(title, str) else ""


def link_pairs(
    nodes: Sequence[Node],
    per_target: int = 3,
    seed: int = 0,
    exclude: Excluded | None = None,
    min_title_chars: int = 6,
) -> list[TrainingPair]:
    """(sentence that names a titled chunk -> that chunk) pairs, across documents.

    Where chunks carry titles (a ``title`` or Markdown ``heading_path``: article names, page or
    section titles), a sentence elsewhere that names one is a reference to it, as a question
    that names an entity is: the pair teaches the model to bring the named chunk up for it. At
    most ``per_target`` sentences per titled chunk, drawn at random (seeded); a chunk's own
    document never links to itself. The first chunk of a document stands for its title.
    """
    targets: dict[str, Node] = {}
    for node in nodes:
        title = _title_of(node)
        key = title.casefold()
        if len(title) >= min_title_chars and key not in targets:
            targets[key] = node
    if not targets:
        return []
    pattern = re.compile(
        r"(?<!\w)(" + "|".join(re.escape(t) for t in sorted(targets, key=len, reverse=True)) + r")(?!\w)"
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for node in nodes:
        text = node.text
        for start, end in split_sentences(text):
            sentence = _ws(text[start:end])
            if not MIN_QUERY_WORDS <= len(sentence.split()) <= MAX_QUERY_WORDS:
                continue
            if exclude is not None and exclude.hit(sentence):
                continue
            for match in set(pattern.findall(sentence.casefold())):
                target = targets[match]
                if _doc_of(target) != _doc_of(node):
                    found.setdefault(match, []).append((sentence, node.id))
    out: list[TrainingPair] = []
    for key in sorted(found):
        target = targets[key]
        mentions = sorted(set(found[key]))
        _rng(seed, target.id).shuffle(mentions)
        for sentence, _source in mentions[:per_target]:
            out.append(
                TrainingPair(sentence, _ws(target.text), source="link", doc_id=_doc_of(target), positive_id=target.id)
            )
    return out


def labelled_pairs(
    queries: Iterable[tuple[str, Sequence[str]]],
    passages: Mapping[str, Node],
    source: str = "labelled",
) -> list[TrainingPair]:
    """One pair per (question, relevant passage); passages missing from ``passages`` are skipped."""
    out: list[TrainingPair] = []
    for text, relevant in queries:
        for pid in relevant:
            node = passages.get(pid)
            if node is None or not text.strip():
                continue
            out.append(TrainingPair(text.strip(), node.text, source=source, doc_id=_doc_of(node), positive_id=pid))
    return out
