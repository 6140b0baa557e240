"""The offline answerer: quote the retrieved sentences that answer the question, with citations.

No language model is involved, so nothing is invented: an answer is made of sentences of
the retrieved nodes, each quoted whole and cited. The steps:

1. **Candidates.** Each node's text is cut into sentences (``kvgraph.text``).
   Markdown headings are not candidates; they become the *section label* of the sentences
   under them. Fragments that make poor answers are dropped: fewer than :data:`MIN_ANSWER_WORDS`
   words, table debris and ``---`` separators, page headers and footers (``Page 3``, short
   lines repeated in several nodes), sentences that are mostly digits and symbols, contents
   lines, run-in headings, short figure captions, bare citations and reference-list entries
   (and whole chunks of a bibliography). A list introduced by a lead-in sentence ("we use
   the following techniques:") is also a candidate as a whole: the lead-in and the first
   sentence of each item, quoted together. A sentence that also occurs in a better-ranked
   node (chunk overlap) is kept once.
2. **Scores.** The question, the candidates and their section labels are embedded in one
   call. A candidate's relevance is its cosine to the question, lifted part of the way
   towards its section label's cosine when that is higher (:data:`SECTION_LIFT`), plus
   :data:`LEXICAL_WEIGHT` times the idf-weighted share of the question's content words it
   contains (stopwords and question phrasing such as "tell me about the key concepts" left
   out), plus a small prior for the retrieval rank of its node (:data:`RANK_WEIGHT`).
3. **Floor.** When no candidate reaches ``min_score`` the answer is :data:`NO_ANSWER` with no
   citations. Otherwise candidates within :data:`RELATIVE_CUTOFF` of the best, or containing
   most of the question's content words (:data:`COVERAGE_ELIGIBLE`), may be quoted.
4. **Selection.** Greedy maximal marginal relevance; a candidate whose cosine to one already
   chosen is ``redundancy`` or more is never taken, and a new section is preferred to a
   second sentence of one already quoted. Selection stops at ``max_sentences`` quoted
   sentences, or when nothing more fits in ``max_chars`` (a sentence that does not fit is
   skipped for a shorter one, never cut; when nothing relevant fits, the answer is
   :data:`NO_ANSWER`).
5. **Layout.** Quotes are grouped by node, the node of the best quote first; within a node
   they keep their order in the text. Each node and section starts a paragraph, with the
   section label on a line of its own above it when it differs from the previous
   paragraph's. Every quoted sentence is followed by `` [n]``, ``n`` numbering the nodes in
   order of first citation; a list is quoted as its lead-in line and one ``- item`` line per
   item.

So every line of an answer is either a section label (the text of a Markdown heading of a
cited node without its ``#`` marks, or the last part of its ``heading_path`` metadata before
the first heading) or quoted sentences each followed by its marker,
optionally after a ``- `` bullet. "Verbatim" means: each quoted sentence is the source
sentence with each run of whitespace (PDF line breaks included) replaced by one space and a
leading list marker ("1. ", "- ", "(a) "), surrounding emphasis marks or table pipes
removed. After the same whitespace normalisation of the node text, it is a substring of the
node its marker cites.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError
from kvgraph.schema import Answer, Citation, Node, NodeWithScore, source_label
from kvgraph.text import (
    MIN_ANSWER_WORDS,
    is_prose,
    is_reference_entry,
    is_useful_sentence,
    split_sentences,
)

NO_ANSWER = "No passage in the knowledge base answers this question."

# Calibrated for the default embedder (all-MiniLM-L6-v2, int8) on the Llama 2 paper with the
# top 5 chunks (tests/llm/test_extractive.py): for 8 questions the paper answers the best
# candidate scores 0.64-1.05; for 6 unrelated ones ("Who won the 2018 FIFA World Cup?") at
# most 0.37, reached by a word in common ("How do I change a flat tire?" meets "Is the Earth
# flat or round?"). Other embedders have other cosine scales: pass ``min_score`` for them.
DEFAULT_MIN_SCORE = 0.45

MAX_CANDIDATES = 300  # sentences embedded per answer, from the first nodes on (bounds the time for large k)
MAX_LABEL_WORDS = 12  # a longer heading (a caption, a sentence the converter marked up) is quoted, not a label
MAX_LIST_ITEMS = 6  # a longer list is not quoted as a whole
LEXICAL_WEIGHT = 0.3  # weight of question-word coverage (0..1) next to the cosine
SECTION_LIFT = 0.5  # how far a more relevant section heading lifts the sentences under it (0..1)
RANK_WEIGHT = 0.03  # the node retrieved first gets this much, later ones a harmonic share
SAME_SECTION_PENALTY = 0.05  # selection prefers a new section of the sources to a second sentence of one
LENGTH_PENALTY = 0.15  # selection cost of a sentence as long again as a quarter of max_chars
BIBLIOGRAPHY_SHARE = 0.3  # a node with this share of reference-list entries is a bibliography: skipped
RELATIVE_CUTOFF = 0.2  # candidates scoring this far below the best one are not quoted...
COVERAGE_ELIGIBLE = 0.6  # ...unless they contain this share of the question's content words

_WS = re.compile(r"\s+")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_HEADING = re.compile(r"^#{1,6}\s*(.*?)\s*#*\s*$", re.DOTALL)
_LIST_MARKER = re.compile(r"^(?:[-*+•◦▪‣]|\d{1,3}(?:\.\d{1,3})*[.)]|\(?[a-zA-Z]\)|[ivxIVX]{1,4}\.)\s+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.*\S)\1$", re.DOTALL)  # used with match(): anchored
_CELL = re.compile(r"[^|\s](?:[^|]*[^|\s])?")
_WORD = re.compile(r"[^\W_]+(?:[-'\u2019][^\W_]+)*")
_BIBLIOGRAPHY_HEADINGS = frozenset({"references", "bibliography", "works cited", "literature cited", "citations"})

# Function words, and the phrasing of questions ("can you tell me about the key concepts
# of ..."), which says nothing about the topic and would reward sentences for "key" or "tell".
_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    may might must shall us via per etc e g ie eg use used uses using get gets got make made
    tell explain describe describes description give show list summarize summarise summary overview know
    please want like thing things key concept main important idea information detail details say said
    question answer mean means meaning
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Extract:
    """A quotable piece of a retrieved node: one sentence, or a list with its lead-in.

    ``lines`` are whitespace-normalised sentences (a list: the lead-in, then the first
    sentence of each item) and ``spans`` where each is in ``node.text``.
    """

    lines: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    node_index: int  # index into the nodes passed to answer()
    section: str | None  # the Markdown heading the piece is under, if the node shows one
    score: float = 0.0  # relevance (see Relevance.total); set by select()

    @property
    def text(self) -> str:
        """What is embedded and scored: the lines joined by spaces."""
        return " ".join(self.lines)

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def is_list(self) -> bool:
        return len(self.lines) > 1


@dataclass(frozen=True)
class Relevance:
    """Per-candidate relevance parts; ``vectors`` are the candidates' unit embeddings."""

    total: np.ndarray  # semantic + LEXICAL_WEIGHT * coverage + RANK_WEIGHT * rank prior
    semantic: np.ndarray  # cosine to the question, lifted by a more relevant section heading
    coverage: np.ndarray  # idf-weighted share of the question's content words, 0..1
    vectors: np.ndarray


# ---------------------------------------------------------------------- text helpers


def normalize_ws(text: str) -> str:
    """Collapse each run of whitespace to one space and strip the ends."""
    return _WS.sub(" ", text).strip()


def _stem(word: str) -> str:
    """A crude suffix stripper, so that "pretrained", "pretraining" and "pretrains" meet.

    Consistency matters more than linguistics: question and sentences go through the same
    function, and the embedding carries the finer morphology.
    """
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith(("ss", "us", "is")):
            word = word[: -len(suffix)]
            break
    # "stopped" -> "stopp" -> "stop", like "stops" -> "stop".
    if len(word) > 4 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


def _terms(text: str, parts: bool) -> set[str]:
    """Content words of ``text``: lowercased, stopwords out, suffixes stripped.

    A hyphenated word is one term without the hyphen ("fine-tuning" = "finetuning"); with
    ``parts`` its pieces count too, so that a question saying "fine tuning" still matches.
    """
    out: set[str] = set()
    for raw in _WORD.findall(text.lower()):
        pieces = re.split(r"[-'\u2019]", raw)
        words = ["".join(pieces)]
        if parts and len(pieces) > 1:
            words += pieces
        for word in words:
            if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
                continue
            stem = _stem(word)
            if stem not in _STOPWORDS:
                out.add(stem)
    return out


# ---------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class _Piece:
    """A sentence span of a node, cleaned, with what list detection needs to know."""

    text: str
    start: int
    end: int
    section: str | None
    item: bool  # starts a list item ("1. ", "- ")
    after_blank: bool  # a blank line separates it from the previous piece


def _heading_of(metadata_heading: object) -> str | None:
    if isinstance(metadata_heading, str) and metadata_heading.strip():
        # heading_path is "Guide > Install > Linux": the innermost section labels a sentence.
        return metadata_heading.split(">")[-1].strip()
    return None


def _pieces(node: Node) -> Iterator[_Piece]:
    """The sentences of ``node`` with their section labels; headings become labels, not pieces."""
    text = node.text
    section = _heading_of(node.metadata.get("heading_path"))
    previous_end = 0
    for start, end in split_sentences(text):
        after_blank = _BLANK_LINE.search(text, previous_end, start) is not None
        previous_end = end
        raw = text[start:end]
        heading = _HEADING.match(raw)
        if heading:
            label = normalize_ws(heading.group(1)).rstrip(":").strip()
            if label and len(label.split()) <= MAX_LABEL_WORDS and not label.endswith((".", "]")):
                section = label
                continue
            # A sentence or caption that the converter made a heading: a candidate like any other.
            start, end = start + heading.start(1), start + heading.end(1)
        marker = _LIST_MARKER.match(raw)
        if marker:
            start += marker.end()
        emphasis = _EMPHASIS.match(text, start, end)
        if emphasis:  # "**Table 16: ...**": quote what is inside the emphasis marks
            start, end = emphasis.start(2), emphasis.end(2)
        if "|" in text[start:end]:
            # A table row ("|Overview|Llama 2 was pretrained on ...|"): its longest cell may be a sentence.
            cells = [m.span() for m in _CELL.finditer(text, start, end)]
            if cells:
                start, end = max(cells, key=lambda span: span[1] - span[0])
        if start < end:
            yield _Piece(normalize_ws(text[start:end]), start, end, section, marker is not None, after_blank)


def _lists(pieces: Sequence[_Piece], node_index: int) -> Iterator[Extract]:
    """Lead-in sentences ending in ':' with the first sentence of each list item that follows."""
    for i, lead in enumerate(pieces):
        if lead.item or not lead.text.endswith(":") or not is_prose(lead.text, MIN_ANSWER_WORDS):
            continue
        items: list[_Piece] = []
        for piece in pieces[i + 1 :]:
            if piece.section != lead.section:  # a heading ends the list
                break
            if piece.item:
                items.append(piece)
            elif piece.after_blank or not items:  # a new paragraph; or no list right after the lead-in
                break
            # else: a further sentence of the current item, left out of the quote
        if 2 <= len(items) <= MAX_LIST_ITEMS and all(is_prose(p.text, 2) for p in items):
            chosen = [lead, *items]
            yield Extract(
                tuple(p.text for p in chosen), tuple((p.start, p.end) for p in chosen), node_index, lead.section
            )


def extract_sentences(nodes: Sequence[Node]) -> list[Extract]:
    """The quotable sentences and lists of ``nodes``, in node order, each kept once (first occurrence)."""
    # Short lines repeated in several nodes are running headers/footers ("Llama 2 Technical Report").
    line_nodes: Counter[str] = Counter()
    for node in nodes:
        line_nodes.update({normalize_ws(line) for line in node.text.splitlines() if 0 < len(line.split()) <= 12})
    boilerplate = {line for line, count in line_nodes.items() if count >= 3}

    seen: set[str] = set()
    out: list[Extract] = []
    for index, node in enumerate(nodes):
        pieces = list(_pieces(node))
        sentences = [p for p in pieces if len(p.text.split()) >= MIN_ANSWER_WORDS]
        # A chunk of a bibliography: its titles ("Piqa: Reasoning about physical commonsense
        # in natural language.") read like sentences, but the entries around them give it away.
        entries = sum(is_reference_entry(p.text) for p in sentences)
        if entries >= 2 and entries >= BIBLIOGRAPHY_SHARE * len(sentences):
            continue
        found = [Extract((p.text,), ((p.start, p.end),), index, p.section) for p in sentences]
        for extract in [*found, *_lists(pieces, index)]:
            if extract.section and extract.section.lower() in _BIBLIOGRAPHY_HEADINGS:
                continue
            if not extract.is_list and (extract.text in boilerplate or not is_useful_sentence(extract.text)):
                continue
            key = extract.text.lower()
            if key not in seen:
                seen.add(key)
                out.append(extract)
    return out


# ---------------------------------------------------------------------- the answerer


class ExtractiveAnswerer:
    """Answers from retrieved nodes by quoting their most relevant sentences, with ``[n]`` citations.

    ``max_sentences`` and ``max_chars`` bound the answer: at most that many quoted sentences
    (a list's lead-in and items count one each) and ``len(answer.text) <= max_chars``.
    ``redundancy`` is the cosine between two sentences at which the second is a
    near-duplicate and never quoted; ``mmr_lambda`` trades relevance (1.0) against novelty.
    ``min_score`` is the relevance the best sentence must reach for anything to be quoted
    (None: always quote something when there is a candidate sentence).
    """

    def __init__(
        self,
        embedder: Embedder,
        max_sentences: int = 6,
        max_chars: int = 900,
        redundancy: float = 0.85,
        min_score: float | None = DEFAULT_MIN_SCORE,
        mmr_lambda: float = 0.8,
    ) -> None:
        if max_sentences < 1:
            raise InvalidInputError(f"max_sentences must be at least 1, got {max_sentences}")
        if max_chars < 1:
            raise InvalidInputError(f"max_chars must be at least 1, got {max_chars}")
        if not 0.0 < redundancy <= 1.0:
            raise InvalidInputError(f"redundancy must be in (0, 1], got {redundancy}")
        if not 0.0 <= mmr_lambda <= 1.0:
            raise InvalidInputError(f"mmr_lambda must be in [0, 1], got {mmr_lambda}")
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.redundancy = redundancy
        self.min_score = min_score
        self.mmr_lambda = mmr_lambda

    def __repr__(self) -> str:
        return (
            f"ExtractiveAnswerer({self.embedder!r}, max_sentences={self.max_sentences}, max_chars={self.max_chars}, "
            f"redundancy={self.redundancy}, min_score={self.min_score}, mmr_lambda={self.mmr_lambda})"
        )

    def answer(self, question: str, nodes: Sequence[NodeWithScore]) -> Answer:
        """Quote the sentences of ``nodes`` that best answer ``question``; see the module docstring."""
        nodes = list(nodes)
        chosen = self.select(question, nodes)
        if not chosen:
            return Answer(NO_ANSWER, [], nodes, mode="extractive")
        text, order = layout(chosen)
        return Answer(text, [make_citation(number, nodes[i]) for number, i in enumerate(order, 1)], nodes, "extractive")

    def select(self, question: str, nodes: Sequence[NodeWithScore]) -> list[Extract]:
        """The pieces an answer quotes, with their scores, in the order they were chosen."""
        if not question.strip():
            raise InvalidInputError("question is empty")
        # Embedding dominates the time (~3 ms a sentence here); nodes come best first, so the cap keeps theirs.
        candidates = extract_sentences([n.node for n in nodes])[:MAX_CANDIDATES]
        if not candidates:
            return []
        rel = self.score(question, candidates, nodes)
        best = float(rel.total.max())
        if self.min_score is not None and best < self.min_score:
            return []
        # Quote what is close to the best, and what contains most of what the question asks
        # about: a broad question ("the key concepts of X") is answered by several sections
        # whose sentences the embedding ranks well below the one summary sentence.
        floor = self.min_score if self.min_score is not None else -math.inf
        eligible = [
            i
            for i in range(len(candidates))
            if rel.total[i] >= best - RELATIVE_CUTOFF
            or (rel.coverage[i] >= COVERAGE_ELIGIBLE and rel.total[i] >= floor)
        ]
        scored = [replace(c, score=float(t)) for c, t in zip(candidates, rel.total)]
        return [scored[i] for i in self._mmr(eligible, rel.total, rel.vectors, scored)]

    def score(self, question: str, candidates: Sequence[Extract], nodes: Sequence[NodeWithScore]) -> Relevance:
        """How relevant each candidate is to ``question`` (see :class:`Relevance`).

        One embedding call covers the question, the candidates and their distinct section labels.
        """
        sections = sorted({c.section for c in candidates if c.section})
        vectors = self.embedder.embed([question, *(c.text for c in candidates), *sections])
        q, sents, heads = vectors[0], vectors[1 : 1 + len(candidates)], vectors[1 + len(candidates) :]
        cosine = sents @ q
        # A sentence often names its topic only in the heading above it ("Safety RLHF" over
        # "We observe early ..."). The heading lifts it part of the way towards the heading's own
        # relevance, and never lowers it. (Embedding "heading: sentence" instead made empty
        # sentences such as "An example can be found in Table 5." look as relevant as the heading.)
        section_cosine = dict(zip(sections, (heads @ q).tolist()))
        lift = np.asarray(
            [max(0.0, section_cosine[c.section] - cosine[i]) if c.section else 0.0 for i, c in enumerate(candidates)],
            dtype=np.float32,
        )
        semantic = cosine + SECTION_LIFT * lift
        coverage = _coverage(question, candidates)
        total = semantic + LEXICAL_WEIGHT * coverage + RANK_WEIGHT * _rank_prior(nodes, candidates)
        return Relevance(total.astype(np.float32), semantic, coverage, sents)

    def _mmr(
        self, eligible: list[int], scores: np.ndarray, vectors: np.ndarray, candidates: list[Extract]
    ) -> list[int]:
        """Greedy maximal marginal relevance within the sentence and character budgets."""
        picked: list[int] = []
        remaining = sorted(eligible, key=lambda i: -scores[i])
        closest = np.zeros(len(scores), dtype=np.float32)  # cosine to the most similar chosen candidate
        covered: set[tuple[int, str | None]] = set()  # (node, section) of the chosen candidates
        used_spans: set[tuple[int, tuple[int, int]]] = set()
        n_lines = 0
        # A long sentence spends much of the answer on one point: past a quarter of the
        # budget it must be that much more relevant to be chosen over two shorter ones.
        long_after = self.max_chars / 4

        def gain(i: int) -> float:
            c = candidates[i]
            longest = max(len(line) for line in c.lines)
            return float(
                self.mmr_lambda * scores[i]
                - (1 - self.mmr_lambda) * closest[i]
                - SAME_SECTION_PENALTY * ((c.node_index, c.section) in covered)
                - LENGTH_PENALTY * max(0.0, longest / long_after - 1.0)
            )

        while remaining:
            taken = None
            for i in sorted(remaining, key=gain, reverse=True):
                fits = n_lines + len(candidates[i].lines) <= self.max_sentences
                if fits and len(layout([candidates[j] for j in [*picked, i]])[0]) <= self.max_chars:
                    taken = i
                    break
                # It does not fit now, and will fit less once more is chosen: drop it for good.
                remaining.remove(i)
            if taken is None:
                break
            c = candidates[taken]
            picked.append(taken)
            n_lines += len(c.lines)
            covered.add((c.node_index, c.section))
            used_spans.update((c.node_index, span) for span in c.spans)
            closest = np.maximum(closest, vectors @ vectors[taken])
            # Near-duplicates, and sentences already quoted as part of a list (or the reverse), go.
            remaining = [
                i
                for i in remaining
                if i != taken
                and closest[i] < self.redundancy
                and not any((candidates[i].node_index, span) in used_spans for span in candidates[i].spans)
            ]
        return picked


def layout(chosen: Sequence[Extract]) -> tuple[str, list[int]]:
    """The answer text quoting ``chosen``, and the node indices in citation-number order.

    Nodes come in the order of their best-scoring piece; a node's pieces in text order. One
    paragraph per node and section, under a section label line where the section changes.
    """
    best: dict[int, float] = {}
    for c in chosen:
        best[c.node_index] = max(best.get(c.node_index, -math.inf), c.score)
    order = sorted(best, key=lambda i: -best[i])  # stable: ties keep the order of choice
    paragraphs: list[str] = []
    previous_section: str | None = None
    for number, node_index in enumerate(order, start=1):
        pieces = sorted((c for c in chosen if c.node_index == node_index), key=lambda c: c.start)
        groups: list[list[Extract]] = []
        for c in pieces:
            if groups and groups[-1][-1].section == c.section:
                groups[-1].append(c)
            else:
                groups.append([c])
        for group in groups:
            section = group[0].section
            lines = [section] if section and section != previous_section else []
            inline: list[str] = []
            for c in group:
                if not c.is_list:
                    inline.append(f"{c.text} [{number}]")
                    continue
                if inline:
                    lines.append(" ".join(inline))
                    inline = []
                lines.append(f"{c.lines[0]} [{number}]")
                lines.extend(f"- {item} [{number}]" for item in c.lines[1:])
            if inline:
                lines.append(" ".join(inline))
            paragraphs.append("\n".join(lines))
            previous_section = section
    return "\n\n".join(paragraphs), order


def make_citation(number: int, hit: NodeWithScore) -> Citation:
    """The citation ``[number]`` of a retrieved node: its id, source label, file, page and retrieval score."""
    meta = hit.node.metadata
    file_path, page = meta.get("file_path"), meta.get("page")
    return Citation(
        number=number,
        node_id=hit.node.id,
        source=source_label(meta),
        file_path=file_path if isinstance(file_path, str) else None,
        page=page if isinstance(page, int) and not isinstance(page, bool) else None,
        score=float(hit.score),
    )


def _coverage(question: str, candidates: Sequence[Extract]) -> np.ndarray:
    """Idf-weighted share (0..1) of the question's content words in each candidate.

    Idf is taken over the candidates, so words every retrieved sentence has (the subject of
    the whole document) count little. Words found only in the candidate's section label
    count half: the heading says what the section is about, but the quote should say it too.
    """
    q_terms = _terms(question, parts=False)
    if not q_terms:
        return np.zeros(len(candidates), dtype=np.float32)
    sent_terms = [_terms(c.text, parts=True) for c in candidates]
    head_terms = {c.section: _terms(c.section, parts=True) for c in candidates if c.section}
    n = len(candidates)
    df = Counter(t for terms in sent_terms for t in terms & q_terms)
    idf = {t: math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in q_terms}
    total = sum(idf.values())
    out = np.zeros(n, dtype=np.float32)
    for i, (c, terms) in enumerate(zip(candidates, sent_terms)):
        in_heading = (head_terms[c.section] - terms) if c.section else set()
        out[i] = (sum(idf[t] for t in q_terms & terms) + 0.5 * sum(idf[t] for t in q_terms & in_heading)) / total
    return out


def _rank_prior(nodes: Sequence[NodeWithScore], candidates: Sequence[Extract]) -> np.ndarray:
    """1, 1/2, 1/3, ... by the retrieval rank (score order) of each candidate's node."""
    order = sorted(range(len(nodes)), key=lambda i: -nodes[i].score)
    rank = {node_index: r for r, node_index in enumerate(order)}
    return np.asarray([1.0 / (1 + rank[c.node_index]) for c in candidates], dtype=np.float32)
