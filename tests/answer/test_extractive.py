"""The extractive answerer with the real default embedder on the Llama 2 paper.

The paper (``llama2/llama2_paper_pdftext.txt`` in the shared datasets, pages separated by
``---`` lines) is split per page with the embedder's own token counter, embedded, and searched
by cosine with numpy, the way the engine retrieves. Questions then go to the answerer with the
top chunks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from kvgraph.answer.extractive import (
    DEFAULT_MIN_SCORE,
    NO_ANSWER,
    Extract,
    ExtractiveAnswerer,
    extract_sentences,
    is_useful_sentence,
    layout,
    normalize_ws,
)
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.schema import Answer, Document, Node, NodeWithScore
from support import datasets_root

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS = datasets_root()
LLAMA2_TEXT = DATASETS / "llama2" / "llama2_paper_pdftext.txt"

SAFETY_QUESTION = "Can you tell me about the key concepts for safety finetuning"
# Questions the paper answers, and questions it does not: the floor (DEFAULT_MIN_SCORE) must
# separate them. Measured with all-MiniLM-L6-v2 int8: answered questions' best sentences score
# 0.64-1.05; unrelated ones at most 0.37 ("flat tire" meets "Is the Earth flat or round?").
ANSWERED = [
    SAFETY_QUESTION,
    "What is Ghost Attention?",
    "What context length does Llama 2 support?",
    "How was the reward model trained?",
    "What is rejection sampling fine-tuning?",
    "Which optimizer was used for pretraining?",
    "What are the limitations of Llama 2-Chat?",
    "What is red teaming and how was it done?",
]
UNRELATED = [
    "What is the capital of Mongolia?",
    "Who won the 2018 FIFA World Cup?",
    "What is the boiling point of water at sea level?",
    "How do I change a flat tire on a bicycle?",
    "How do I reset my router password?",
    "What are the symptoms of the flu?",
]

# Hyphen/space variants: "fine-tuning", "fine tuning", "finetuning".
FT = r"fine[-\s]?tuning"
SUPERVISED_SAFETY_FT = re.compile(rf"supervised\s+safety\s+{FT}|safety\s+supervised\s+{FT}", re.IGNORECASE)
SAFETY_RLHF = re.compile(r"safety[-\s]+RLHF", re.IGNORECASE)
SAFETY_CONTEXT_DISTILLATION = re.compile(r"safety[-\s]+context[-\s]+distillation", re.IGNORECASE)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def llama_nodes(embedder: OnnxEmbedder) -> list[Node]:
    if not LLAMA2_TEXT.is_file():
        pytest.skip(f"shared dataset missing: {LLAMA2_TEXT} (set KVGRAPH_DATASETS to the datasets folder)")
    pages = LLAMA2_TEXT.read_text(encoding="utf-8").split("\n---\n")
    assert len(pages) == 77  # one segment per PDF page (see the dataset's README)
    docs = [
        Document(id=f"llama2#page={n}", text=text, metadata={"file_name": "llama2_paper_pdftext.txt", "page": n})
        for n, text in enumerate(pages, start=1)
    ]
    nodes = SentenceSplitter(embedder.token_counter(), chunk_size=254, chunk_overlap=32).split_many(docs)
    vectors = embedder.embed([n.text for n in nodes])
    for node, vector in zip(nodes, vectors):
        node.embedding = vector
    return nodes


@pytest.fixture(scope="module")
def answerer(embedder: OnnxEmbedder) -> ExtractiveAnswerer:
    return ExtractiveAnswerer(embedder)


def ranked(embedder: OnnxEmbedder, nodes: list[Node], question: str) -> list[NodeWithScore]:
    """All nodes by cosine to the question, best first."""
    vectors = [n.embedding_array() for n in nodes]
    matrix = np.vstack([v for v in vectors if v is not None])
    assert len(matrix) == len(nodes)
    scores = matrix @ embedder.embed([question])[0]
    return [NodeWithScore(nodes[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")]


def retrieve(embedder: OnnxEmbedder, nodes: list[Node], question: str, k: int = 5) -> list[NodeWithScore]:
    return ranked(embedder, nodes, question)[:k]


# ---------------------------------------------------------------------- checking answers

_LINE_MARKER = re.compile(r" \[(\d+)\]$")


def quotes(answer: Answer) -> tuple[list[tuple[str, int]], list[str]]:
    """The answer's quoted sentences with their citation numbers, and its section label lines."""
    sentences: list[tuple[str, int]] = []
    labels: list[str] = []
    for line in answer.text.splitlines():
        if not line.strip():
            continue
        if not _LINE_MARKER.search(line):
            labels.append(line)
            continue
        body = line.removeprefix("- ")
        parts = re.split(r" \[(\d+)\](?: |$)", body)
        assert parts[-1] == "", f"text after the last marker: {line!r}"
        for sentence, number in zip(parts[0:-1:2], parts[1:-1:2]):
            sentences.append((sentence, int(number)))
    return sentences, labels


def check_answer(answer: Answer, nodes: list[NodeWithScore], max_chars: int = 900, max_sentences: int = 6) -> None:
    """The properties every extractive answer has."""
    assert answer.mode == "extractive"
    assert answer.source_nodes == nodes
    sentences, labels = quotes(answer)
    assert sentences, answer.text
    numbers = [c.number for c in answer.citations]
    assert numbers == list(range(1, len(numbers) + 1))  # contiguous from 1
    first_use = list(dict.fromkeys(n for _, n in sentences))
    assert first_use == numbers  # numbered in order of first citation, and every citation used
    by_number = {c.number: c for c in answer.citations}
    texts = {hit.node.id: normalize_ws(hit.node.text) for hit in nodes}
    for sentence, number in sentences:
        # Verbatim: after whitespace normalisation, a substring of the node its marker cites.
        assert sentence in texts[by_number[number].node_id], (sentence, number)
        assert len(sentence.split()) >= 2
    cited_text = " ".join(texts[c.node_id] for c in answer.citations)
    for label in labels:  # section labels are the cited nodes' own headings
        assert label in cited_text, label
    assert len(answer.text) <= max_chars
    assert len(sentences) <= max_sentences
    assert len({s.lower() for s, _ in sentences}) == len(sentences)  # nothing quoted twice


# ---------------------------------------------------------------------- the question


def test_retrieval_ranks_section_4_2_in_the_top_two(embedder: OnnxEmbedder, llama_nodes: list[Node]) -> None:
    hits = ranked(embedder, llama_nodes, SAFETY_QUESTION)
    ranks = [r for r, hit in enumerate(hits, start=1) if hit.node.metadata["page"] in (23, 24)]
    # Pages 23-24 hold Section 4.2 Safety Fine-Tuning. Measured: page 24 (4.2.2/4.2.3) is 2nd,
    # page 23 chunks 3rd and 4th, behind page 20 (the introduction to Section 4, Safety).
    assert ranks[0] <= 2, f"ranks of the page 23/24 chunks: {ranks[:8]}"


def test_answers_the_safety_question_from_the_top_five(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer
) -> None:
    hits = retrieve(embedder, llama_nodes, SAFETY_QUESTION)
    answer = answerer.answer(SAFETY_QUESTION, hits)
    check_answer(answer, hits)
    # The summary sentence of Section 4.2 leads, cited to page 23.
    sentences, labels = quotes(answer)
    assert "we describe our approach to safety fine-tuning" in sentences[0][0]
    assert answer.citations[0].page == 23
    assert "4.2 Safety Fine-Tuning" in labels
    assert SUPERVISED_SAFETY_FT.search(answer.text), answer.text
    assert {23, 24} <= {c.page for c in answer.citations}


def test_names_the_three_safety_techniques_when_their_list_is_retrieved(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer
) -> None:
    # The chunk that lists the techniques (page 23) is not in the cosine top 5 (measured: 16th),
    # so retrieve just deep enough to include it, as a better retriever would.
    hits = ranked(embedder, llama_nodes, SAFETY_QUESTION)
    k = 1 + next(r for r, hit in enumerate(hits) if "3. Safety Context Distillation" in hit.node.text)
    assert k <= 20
    hits = hits[:k]
    answer = answerer.answer(SAFETY_QUESTION, hits)
    check_answer(answer, hits)
    pages = {c.number: c.page for c in answer.citations}
    for pattern in (SUPERVISED_SAFETY_FT, SAFETY_RLHF, SAFETY_CONTEXT_DISTILLATION):
        lines = [line for line in answer.text.splitlines() if pattern.search(line)]
        assert lines, f"{pattern.pattern} not in:\n{answer.text}"
        cited = {pages[int(n)] for line in lines for n in re.findall(r"\[(\d+)\]", line)}
        assert cited and cited <= {23, 24}, (lines, cited)


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("question", ANSWERED)
def test_answers_are_verbatim_cited_and_within_budget(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer, question: str
) -> None:
    hits = retrieve(embedder, llama_nodes, question)
    check_answer(answerer.answer(question, hits), hits)


@pytest.mark.parametrize(("max_chars", "max_sentences"), [(300, 6), (900, 2), (120, 1)])
def test_budget_is_respected_without_cutting_sentences(
    embedder: OnnxEmbedder, llama_nodes: list[Node], max_chars: int, max_sentences: int
) -> None:
    small = ExtractiveAnswerer(embedder, max_chars=max_chars, max_sentences=max_sentences)
    for question in ANSWERED[:4]:
        hits = retrieve(embedder, llama_nodes, question)
        answer = small.answer(question, hits)
        if answer.text == NO_ANSWER:  # nothing relevant is short enough
            assert answer.citations == []
            continue
        check_answer(answer, hits, max_chars=max_chars, max_sentences=max_sentences)


def test_a_sentence_in_two_nodes_is_quoted_once(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer
) -> None:
    hits = retrieve(embedder, llama_nodes, "What is Ghost Attention?", k=3)
    # The same text again as another node (a duplicated file, an overlapping chunk), and a
    # near-copy with different line breaks.
    copy = Node(id="copy", text=hits[0].node.text, metadata={"file_name": "copy.txt"})
    reflowed = Node(id="reflowed", text=hits[0].node.text.replace(" ", "\n", 5), metadata={"file_name": "r.txt"})
    nodes = [hits[0], NodeWithScore(copy, hits[0].score), NodeWithScore(reflowed, hits[0].score), *hits[1:]]
    answer = answerer.answer("What is Ghost Attention?", nodes)
    check_answer(answer, nodes)
    sentences, _ = quotes(answer)
    vectors = embedder.embed([s for s, _ in sentences])
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, 0.0)
    assert sims.max(initial=0.0) < answerer.redundancy
    assert "copy" not in {c.node_id for c in answer.citations}


def test_overlapping_chunks_do_not_repeat_sentences(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer
) -> None:
    # Consecutive chunks share up to 32 tokens of sentences; every page-24 chunk at once.
    question = "How does safety RLHF change the model's responses?"
    nodes = [hit for hit in ranked(embedder, llama_nodes, question) if hit.node.metadata["page"] == 24]
    assert len(nodes) >= 3
    check_answer(answerer.answer(question, nodes), nodes)


# ---------------------------------------------------------------------- no answer


def test_unrelated_question_gets_no_answer_and_no_citations(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer
) -> None:
    hits = retrieve(embedder, llama_nodes, "What is the capital of Mongolia?")
    answer = answerer.answer("What is the capital of Mongolia?", hits)
    assert answer.text == NO_ANSWER
    assert "no passage" in answer.text.lower()
    assert answer.citations == []
    assert answer.source_nodes == hits
    assert answer.mode == "extractive"


def best_score(answerer: ExtractiveAnswerer, question: str, hits: list[NodeWithScore]) -> float:
    candidates = extract_sentences([h.node for h in hits])
    return float(answerer.score(question, candidates, hits).total.max()) if candidates else 0.0


def test_the_floor_separates_answered_from_unrelated_questions(
    embedder: OnnxEmbedder, llama_nodes: list[Node], answerer: ExtractiveAnswerer
) -> None:
    answered = {q: best_score(answerer, q, retrieve(embedder, llama_nodes, q)) for q in ANSWERED}
    unrelated = {q: best_score(answerer, q, retrieve(embedder, llama_nodes, q)) for q in UNRELATED}
    # A margin on both sides, so the test says when a change of scoring moves the scales.
    assert max(unrelated.values()) <= DEFAULT_MIN_SCORE - 0.05, unrelated
    assert min(answered.values()) >= DEFAULT_MIN_SCORE + 0.1, answered
    for question in UNRELATED:
        assert answerer.answer(question, retrieve(embedder, llama_nodes, question)).text == NO_ANSWER


def test_no_nodes_gives_no_answer(answerer: ExtractiveAnswerer) -> None:
    answer = answerer.answer("What is Ghost Attention?", [])
    assert (answer.text, answer.citations, answer.source_nodes, answer.mode) == (NO_ANSWER, [], [], "extractive")


def test_nodes_without_prose_give_no_answer(answerer: ExtractiveAnswerer) -> None:
    table = Node(id="t", text="|Model|Size|\n|---|---|\n|MPT|7B|\n\n---\n\n12", metadata={"page": 3})
    blank = Node(id="b", text="   \n")
    answer = answerer.answer("Which model sizes?", [NodeWithScore(table, 0.9), NodeWithScore(blank, 0.1)])
    assert answer.text == NO_ANSWER and answer.citations == []


def test_blank_question_is_an_error(answerer: ExtractiveAnswerer) -> None:
    with pytest.raises(InvalidInputError):
        answerer.answer("  ", [])


# ---------------------------------------------------------------------- candidates and layout


@pytest.mark.parametrize(
    "text",
    [
        "---",
        "12",
        "Page 3 of 12",
        "Safety in Pretraining 20",  # a contents line
        "Carbon Footprint of Pretraining.",  # a run-in heading
        "Figure 5: Training Loss for Llama 2 models.",
        "|7B|16.8|18.7|22.0|",
        "(Bai et al., 2022a).",
        "Specifically, we use the following techniques in safety fine-tuning:",  # a lead-in alone
        "0.2 0.4 0.6 0.8 1.0 and 1.2.",
        "Tom Brown, Benjamin Mann, Nick Ryder, Melanie Subbiah, Jared D Kaplan, and Dario Amodei.",
        "In Proceedings of the AAAI conference on artificial intelligence, pages 7432\u20137439, 2020.",
        "CoRR, abs/1607.04606, 2016.",
        "Too short.",
    ],
)
def test_fragments_are_not_quotable(text: str) -> None:
    assert not is_useful_sentence(text)


@pytest.mark.parametrize(
    "text",
    [
        "We expand the context window for Llama 2 from 2048 tokens to 4096 tokens.",
        "Llama 2 is a new technology that carries risks with use.",
        "In Table 14, fine-tuned Llama 2-Chat shows great improvement over the pretrained Llama 2.",
    ],
)
def test_sentences_are_quotable(text: str) -> None:
    assert is_useful_sentence(text)


MARKDOWN = """\
# 2 Installing

Running head of the manual

You need Python 3.11 or later on the machine.
The installer asks three questions:

1. Where to install: it defaults to the home folder.
2. Whether to add a shortcut. It is on by default.
3. Which components to install.

|Option|Default|
|---|---|
|prefix|~/app|

That is all there is to it, and it takes a minute.
"""


def test_candidates_from_markdown() -> None:
    node = Node(id="m", text=MARKDOWN)
    other = Node(id="o", text="Running head of the manual\n\nRunning head of the manual\n\nA sentence of four words.")
    found = extract_sentences([node, other, Node(id="p", text="Running head of the manual")])
    texts = [e.text for e in found]
    assert "You need Python 3.11 or later on the machine." in texts
    assert "That is all there is to it, and it takes a minute." in texts
    assert not any("Running head" in t or "Option" in t or "prefix" in t for t in texts)  # header, table
    [listed] = [e for e in found if e.is_list]
    assert listed.lines == (
        "The installer asks three questions:",
        "Where to install: it defaults to the home folder.",
        "Whether to add a shortcut.",  # only the first sentence of an item
        "Which components to install.",
    )
    assert all(e.section == "2 Installing" for e in found if e.node_index == 0)
    for e in found:
        source = [node, other][e.node_index].text
        assert [normalize_ws(source[a:b]) for a, b in e.spans] == list(e.lines)


def test_layout_groups_by_best_node_then_text_order() -> None:
    def ex(text: str, node: int, start: int, score: float, section: str | None = None) -> Extract:
        return Extract((text,), ((start, start + len(text)),), node, section, score)

    chosen = [
        ex("Best of node one.", 1, 50, 0.9, "Intro"),
        ex("Earlier in node one.", 1, 10, 0.5, "Intro"),
        ex("Node zero says this.", 0, 0, 0.7),
        ex("Later in node one.", 1, 90, 0.6, "Details"),
    ]
    text, order = layout(chosen)
    assert order == [1, 0]
    assert text == (
        "Intro\nEarlier in node one. [1] Best of node one. [1]\n\nDetails\nLater in node one. [1]\n\n"
        "Node zero says this. [2]"
    )


def test_list_is_quoted_as_lines(embedder: OnnxEmbedder) -> None:
    answerer = ExtractiveAnswerer(embedder)
    node = Node(id="m", text=MARKDOWN, metadata={"file_name": "manual.md"})
    answer = answerer.answer("What questions does the installer ask?", [NodeWithScore(node, 0.8)])
    lines = answer.text.splitlines()
    assert "The installer asks three questions: [1]" in lines
    assert "- Where to install: it defaults to the home folder. [1]" in lines
    assert [c.source for c in answer.citations] == ["manual.md"]
