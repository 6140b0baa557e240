"""An LLM-free question set over paged text (the Llama 2 paper), with gold defined by character offsets.

The recursive-retrieval study this reproduces asked an LLM to write questions about each
1024-token chunk. Without an LLM (``kvgraph eval generate`` needs one), the questions here are
built from the text itself, deterministically:

1. **Passages** are the 1024-token parents that :func:`kvgraph.retrieve.chunk_references` cuts
   from each page (same splitter, sizes and overlap, so a parent passage *is* the retrieval unit
   of the ``base``, ``chunk_refs`` and ``metadata_refs`` retrievers). Ids are ``"<page id>:<i>"``.
2. **Source sentences**: per parent, ``per_parent`` sentences drawn at random (seeded per
   parent) among its *eligible* sentences: prose that ends like a sentence, 10-60 words, at
   least 6 content words, starting with a capital (a lowercase start is the tail of a sentence
   cut by a page break), not the page's first sentence (it may continue the previous page), not
   a heading, caption stub, table row or bibliography entry
   (:func:`kvgraph.text.is_useful_sentence`), and found only once in the whole text.
3. **Gold**: every parent whose character range contains the whole sentence span (a sentence
   in the 20-token overlap of two parents has both as gold). Offsets are into the page text.
4. **Query**, one of :data:`KINDS`:

   * ``sentence``: the sentence verbatim. Every word of the query is in the gold passage, so it
     overstates every retriever, favours exact lexical match (BM25), and favours small nodes that
     contain the sentence with little else (128-token children) and the extractive metadata
     references, which *are* verbatim sentences of the parent.
   * ``keywords``: :data:`N_KEYWORDS` of the sentence's content words, drawn at random (seeded by
     the query id), in sentence order, like a keyword search by someone who half remembers the
     passage. Lexical anchors without syntax: good for BM25, poor for a sentence-embedding model.
     (Picking the highest-IDF words instead picks words that are rare *in this paper*, often
     generic ones such as "began" or "eventually", which no one would type.)
   * ``masked``: the sentence with its :data:`N_MASKED` most specific content words removed,
     roughly what a question about the sentence's fact keeps (the context, not the answer).
     It removes the rare-term anchors BM25 relies on, so it leans towards dense retrieval.

   All three are biased towards lexical overlap with the gold passage compared with an LLM's
   (or a person's) paraphrased questions; comparing retrievers across the three kinds shows how
   much a ranking depends on the construction. The IDF, stopword list and thresholds are fixed
   here (not shared with the answerer) so that the set does not change when other code does.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import EvalDataset, Passage, Query
from kvgraph.schema import Document
from kvgraph.text import split_sentences

if TYPE_CHECKING:
    from kvgraph.embed.tokens import TokenCounter

KINDS = ("sentence", "keywords", "masked")
N_KEYWORDS = 5
N_MASKED = 3
MIN_WORDS, MAX_WORDS = 10, 60
MIN_CONTENT_WORDS = 6
_SENTENCE_END = (".", "!", "?", '."', ".\u201d")
_WS = re.compile(r"\s+")
# A word, keeping inner hyphens, apostrophes and dots: "2-Chat", "GPT-3.5", "don't".
_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'.\u2019][A-Za-z0-9]+)*")
# A fixed list (see the module docstring): function words, and words every sentence of a paper uses.
_STOPWORD_TEXT = """
    a about above after again against all also although am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either et al few for from
    further had has have having he her here hers him his how however i if in into is it its itself just like may
    me might more most much must my no nor not now of off on once only or other our ours out over own per same
    she should show shown shows since so some such than that the their theirs them then there these they this
    those though through thus to too under until up upon us use used uses using very via was we well were what
    when where which while who whom why will with within without would yet you your e.g i.e eg ie see table
    figure section appendix one two three first second also based new
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class SourceSentence:
    """A sentence a query was built from: its page, its span in the page text, and its gold parents."""

    page_id: str
    start: int
    end: int
    text: str  # whitespace-normalised
    parents: tuple[str, ...]  # passage ids of the parents whose range holds the whole span


def normalize_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def content_words(text: str) -> list[str]:
    """The words of ``text`` that are not stopwords or single characters, in order, first occurrence only."""
    out: list[str] = []
    seen: set[str] = set()
    for word in words(text):
        low = word.lower()
        if low in _STOPWORDS or len(low) < 2 or low in seen:
            continue
        seen.add(low)
        out.append(word)
    return out


def parent_passages(
    pages: Sequence[Document], counter: TokenCounter, parent_size: int = 1024, overlap: int = 20
) -> list[tuple[Passage, Document, int, int]]:
    """The parents of every page as passages, with their page and character range in it.

    Uses :func:`kvgraph.retrieve.chunk_references` itself (children are cut and dropped: they
    cost token counting only), so the passages are exactly the references' parents.
    """
    from kvgraph.ingest.references import chunk_references, parent_nodes

    by_id = {page.id: page for page in pages}
    if len(by_id) != len(pages):
        raise InvalidInputError("pages must have distinct ids")
    smallest = min(parent_size - 1, 128) if parent_size > 1 else 1
    out: list[tuple[Passage, Document, int, int]] = []
    for node in parent_nodes(chunk_references(pages, counter, parent_size, (smallest,), overlap)):
        page = by_id[str(node.ref_doc_id)]
        start, end, index = (node.metadata[key] for key in ("char_start", "char_end", "chunk_index"))
        assert isinstance(start, int) and isinstance(end, int)  # the splitter always sets them
        out.append((Passage(id=f"{page.id}:{index}", text=node.text), page, start, end))
    return out


def _eligible(text: str) -> bool:
    from kvgraph.text import is_useful_sentence

    n_words = len(text.split())
    return (
        MIN_WORDS <= n_words <= MAX_WORDS
        and text.endswith(_SENTENCE_END)
        and not text.startswith("#")
        and text[:1].isupper()
        and len(content_words(text)) >= MIN_CONTENT_WORDS
        and is_useful_sentence(text)
    )


def candidate_sentences(
    pages: Sequence[Document], parents: Sequence[tuple[Passage, Document, int, int]]
) -> dict[str, list[SourceSentence]]:
    """Eligible sentences (see the module docstring), grouped under the first parent that holds each."""
    spans: list[tuple[Document, int, int, str]] = []
    for page in pages:
        for i, (start, end) in enumerate(split_sentences(page.text)):
            if i > 0:  # the first sentence of a page may be the tail of the previous page's last
                spans.append((page, start, end, normalize_ws(page.text[start:end])))
    # Found only once in the whole text (not just once among the spans: a repeat can hide inside a
    # span glued to a heading), else the gold would be ambiguous.
    corpus = "\n".join(normalize_ws(page.text) for page in pages)
    ranges: dict[str, list[tuple[str, int, int]]] = {}
    for passage, page, start, end in parents:
        ranges.setdefault(page.id, []).append((passage.id, start, end))
    grouped: dict[str, list[SourceSentence]] = {passage.id: [] for passage, _, _, _ in parents}
    for page, start, end, text in spans:
        if not _eligible(text) or corpus.count(text) > 1:
            continue
        gold = tuple(pid for pid, a, b in ranges.get(page.id, []) if a <= start and end <= b)
        if gold:  # a sentence cut by a parent boundary belongs wholly to no parent: not usable
            grouped[gold[0]].append(SourceSentence(page.id, start, end, text, gold))
    return grouped


def sentence_idf(pages: Sequence[Document]) -> dict[str, float]:
    """Inverse document frequency of each lowercased word, sentences of all pages as the documents."""
    df: Counter[str] = Counter()
    n = 0
    for page in pages:
        for start, end in split_sentences(page.text):
            n += 1
            df.update({w.lower() for w in words(page.text[start:end])})
    return {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items()}


def specific_words(text: str, idf: dict[str, float], n: int) -> list[str]:
    """The ``n`` content words of ``text`` with the highest IDF (earlier first on ties), in text order."""
    cands = content_words(text)
    ranked = sorted(range(len(cands)), key=lambda i: (-idf.get(cands[i].lower(), 0.0), i))[:n]
    return [cands[i] for i in sorted(ranked)]


def make_query(text: str, kind: str, idf: dict[str, float], seed: str = "") -> str:
    """The query of ``kind`` (see :data:`KINDS`) for a source sentence (``seed`` drives the keyword draw)."""
    if kind == "sentence":
        return text
    if kind == "keywords":
        cands = content_words(text)
        picked = random.Random(f"{seed}:{text}").sample(range(len(cands)), min(N_KEYWORDS, len(cands)))
        return " ".join(cands[i] for i in sorted(picked))
    if kind == "masked":
        drop = {w.lower() for w in specific_words(text, idf, N_MASKED)}
        kept = _WORD.sub(lambda m: "" if m.group(0).lower() in drop else m.group(0), text)
        kept = re.sub(r"\s+([,.;:!?)])", r"\1", normalize_ws(kept))  # no space left before punctuation
        return re.sub(r"\(\s*\)|\s{2,}", " ", kept).strip()
    raise InvalidInputError(f"unknown question kind {kind!r}; use one of {', '.join(KINDS)}")


def page_question_set(
    pages: Sequence[Document],
    counter: TokenCounter,
    kind: str = "sentence",
    per_parent: int = 2,
    seed: int = 0,
    parent_size: int = 1024,
    overlap: int = 20,
    name: str = "pages",
) -> tuple[EvalDataset, list[SourceSentence]]:
    """The question set over ``pages`` (see the module docstring) and the source sentence of each query.

    Query ``i`` comes from ``sources[i]``; its id is ``"<passage id>/<start>"``. The answer of a
    query is its source sentence (a LabelledRagDataset needs a reference answer).
    """
    if kind not in KINDS:
        raise InvalidInputError(f"unknown question kind {kind!r}; use one of {', '.join(KINDS)}")
    if isinstance(per_parent, bool) or not isinstance(per_parent, int) or per_parent < 1:
        raise InvalidInputError(f"per_parent must be an int >= 1, got {per_parent!r}")
    parents = parent_passages(pages, counter, parent_size, overlap)
    grouped = candidate_sentences(pages, parents)
    idf = sentence_idf(pages)
    sources: list[SourceSentence] = []
    queries: list[Query] = []
    for passage, _, _, _ in parents:
        # Seeded per parent (a str seed is hashed with SHA-512, stable across runs and Pythons), so
        # the choice in one parent does not depend on how many sentences the others had.
        rng = random.Random(f"{seed}:{passage.id}")
        cands = grouped[passage.id]
        for src in sorted(rng.sample(cands, min(per_parent, len(cands))), key=lambda s: s.start):
            text = make_query(src.text, kind, idf, seed=f"{seed}:{passage.id}")
            if not text:
                continue
            sources.append(src)
            queries.append(
                Query(id=f"{passage.id}/{src.start}", text=text, relevant=list(src.parents), answers=[src.text])
            )
    meta = {
        "format": "page-questions",
        "kind": kind,
        "seed": seed,
        "per_parent": per_parent,
        "parent_size": parent_size,
        "pages": len(pages),
        "passages": len(parents),
        "queries": len(queries),
        "eligible_sentences": sum(len(v) for v in grouped.values()),
        "parents_without_questions": sum(not v for v in grouped.values()),
        "queries_with_two_gold": sum(len(q.relevant) > 1 for q in queries),
    }
    passages = [passage for passage, _, _, _ in parents]
    return EvalDataset(name=f"{name}-{kind}", passages=passages, queries=queries, meta=meta), sources


def default_token_counter() -> TokenCounter:
    """The default embedder's tokenizer: the parents are cut in the tokens the questions are searched with."""
    from kvgraph.embed.onnx import OnnxEmbedder

    return OnnxEmbedder().token_counter()


def llama2_question_set(
    counter: TokenCounter,
    kind: str = "sentence",
    per_parent: int = 2,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> tuple[EvalDataset, list[SourceSentence]]:
    """:func:`page_question_set` over the shared Llama 2 paper text (:func:`kvgraph.eval.sources.llama2_pages`)."""
    from kvgraph.eval.sources import llama2_pages

    return page_question_set(llama2_pages(root), counter, kind, per_parent, seed, name="llama2")


# ---------------------------------------------------------------------- writing


def save_beir(dataset: EvalDataset, folder: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` as a BEIR folder (every passage in the corpus, all gold in ``qrels/test.tsv``).

    BEIR keeps the passages no query points to, so the distractors stay in the pool; a
    LabelledRagDataset cannot (its corpus is only the reference contexts).
    """
    root = Path(folder)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for p in dataset.passages:
            f.write(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in dataset.queries:
            f.write(json.dumps({"_id": q.id, "text": q.text}) + "\n")
    with open(root / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in dataset.queries:
            for pid in q.relevant:
                f.write(f"{q.id}\t{pid}\t1\n")
    return root


def save_llamaindex_rag(dataset: EvalDataset, path: str | os.PathLike[str], label: str = "kvgraph-extractive") -> Path:
    """Write ``dataset`` as LlamaIndex ``LabelledRagDataset`` JSON (reference contexts = gold passages' text)."""
    texts = {p.id: p.text for p in dataset.passages}
    by = {"model_name": label, "type": "ai"}
    examples = [
        {
            "query": q.text,
            "query_by": by,
            "reference_contexts": [texts[pid] for pid in q.relevant if pid in texts],
            "reference_answer": q.answers[0] if q.answers else "",
            "reference_answer_by": by,
        }
        for q in dataset.queries
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"examples": examples}, indent=1), encoding="utf-8")
    return out
