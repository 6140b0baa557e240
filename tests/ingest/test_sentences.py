"""Sentence boundaries: abbreviations and other periods that do not end sentences, block
structure (paragraphs, lists, headings), clause/word fallbacks and span invariants."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvgraph.text import split_clauses, split_sentences, split_words

LLAMA2 = Path("/work/shared/datasets/llama2/llama2_paper_pdftext.txt")


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Titles.
        (
            "Dr. Smith met Mr. Jones and Mrs. Brown. Ms. Lee and Prof. Kim stayed on St. Mark Street.",
            ["Dr. Smith met Mr. Jones and Mrs. Brown.", "Ms. Lee and Prof. Kim stayed on St. Mark Street."],
        ),
        # References to figures, equations, sections, tables, numbers.
        (
            "See Fig. 2 and Figs. 3-4. Eq. 5 holds. Sec. 4 and Tab. 1 agree. It is No. 7 cf. Table 2. "
            "We use approx. 5 GB.",
            [
                "See Fig. 2 and Figs. 3-4.",
                "Eq. 5 holds.",
                "Sec. 4 and Tab. 1 agree.",
                "It is No. 7 cf. Table 2.",
                "We use approx. 5 GB.",
            ],
        ),
        # Initials.
        ("J. R. R. Tolkien wrote it. He liked it.", ["J. R. R. Tolkien wrote it.", "He liked it."]),
        # Decimals, versions and vs.
        (
            "The score was 3.5 vs. 4.2 in v1.2.3 of the tool. Then it rose.",
            ["The score was 3.5 vs. 4.2 in v1.2.3 of the tool.", "Then it rose."],
        ),
        # e.g. / i.e. / et al.
        (
            "Models, e.g. GPT-4 and i.e. Llama, work. Touvron et al. (2023) agree. Also Smith et al. Show it.",
            ["Models, e.g. GPT-4 and i.e. Llama, work.", "Touvron et al. (2023) agree.", "Also Smith et al. Show it."],
        ),
        # etc. followed by lowercase continues the sentence; followed by a capital it ends it.
        (
            "Apples, pears, etc. were sold. We stopped, etc. Then more came.",
            ["Apples, pears, etc. were sold.", "We stopped, etc.", "Then more came."],
        ),
        # Ellipses inside a sentence; ? and ! followed by a capital.
        (
            "Wait... it is fine. Really? Yes! 42 is the answer.",
            ["Wait... it is fine.", "Really?", "Yes!", "42 is the answer."],
        ),
        # URLs and e-mail addresses.
        (
            "Visit https://example.com/a.b?x=1 or mail first.last@example.org today. Next one.",
            ["Visit https://example.com/a.b?x=1 or mail first.last@example.org today.", "Next one."],
        ),
        # Quotes and brackets after and before the boundary.
        (
            'He said "Go." Then he left. (See below.) Next [1]. "Quoted" start.',
            ['He said "Go."', "Then he left.", "(See below.)", "Next [1].", '"Quoted" start.'],
        ),
        # A lowercase word after a period does not start a sentence; "ms" is a unit, not "Ms.".
        ("It took 5 ms. Then it ended. in lower case.", ["It took 5 ms.", "Then it ended. in lower case."]),
        # "No." ends a sentence unless a number follows.
        ("The answer is No. Nobody asked.", ["The answer is No.", "Nobody asked."]),
        # Numbers at a sentence end followed by a capital do end the sentence (not at line start).
        ("We trained for 3. Then we stopped.", ["We trained for 3.", "Then we stopped."]),
    ],
)
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_blocks_lists_headings_and_rules() -> None:
    text = (
        "# Title\n"
        "Intro line one\ncontinues here.\n\n"
        "Contents:\n"
        "1. Introduction to things\n"
        "2. Pretraining data\n"
        "2.1. Details\n"
        "- bullet one\n"
        "* bullet two\n"
        "| a | b |\n"
        "|---|---|\n"
        "---\n"
        "Page two text.\n"
        "## Sub heading\n"
        "Body"
    )
    assert sentences(text) == [
        "# Title",
        "Intro line one\ncontinues here.",
        "Contents:",
        "1. Introduction to things",
        "2. Pretraining data",
        "2.1. Details",
        "- bullet one",
        "* bullet two",
        "| a | b |",
        "|---|---|",
        "---",
        "Page two text.",
        "## Sub heading",
        "Body",
    ]


def test_list_number_at_text_start_and_roman_numerals() -> None:
    assert sentences("1. Introduction starts here. More text.") == ["1. Introduction starts here.", "More text."]
    assert sentences("II. Methods\nIII. Results") == ["II. Methods", "III. Results"]


def test_exact_spans_exclude_whitespace() -> None:
    text = "  First one.   Second one!\n\n\tThird?  "
    assert split_sentences(text) == [(2, 12), (15, 26), (29, 35)]
    assert split_sentences("") == []
    assert split_sentences(" \n\t ") == []
    assert split_sentences("no terminator") == [(0, 13)]


def test_crlf_paragraphs() -> None:
    assert sentences("One line\r\n\r\nTwo line") == ["One line", "Two line"]


def test_split_clauses() -> None:
    text = "first part, second part; third: fourth \u2014 fifth\u2013sixth 3,000 a:b x - y"
    parts = [text[s:e] for s, e in split_clauses(text, 0, len(text))]
    assert parts == [
        "first part,",
        "second part;",
        "third:",
        "fourth \u2014",
        "fifth\u2013",
        "sixth 3,000 a:b x -",
        "y",
    ]
    # Offsets stay in the full text's coordinates.
    offset_text = "XX" + text
    assert split_clauses(offset_text, 2, len(offset_text))[0] == (2, 13)
    # Nothing to split at: the trimmed span itself.
    assert split_clauses("  one two  ", 0, 11) == [(2, 9)]


def test_split_words() -> None:
    assert split_words("ab  cd\nef", 0, 9) == [(0, 2), (4, 6), (7, 9)]
    assert split_words("ab  cd\nef", 1, 5) == [(1, 2), (4, 5)]


_PIECES = st.sampled_from(
    ["word", "Word", "Dr.", "e.g.", "3.5", "1.", "etc.", ".", "?", "!", "...", ",", "\n", "\n\n", "# H", "- ", "|x|"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_PIECES, st.sampled_from([" ", "", "\n", "  ", "\t"])), max_size=60))
def test_spans_are_ordered_trimmed_and_cover_all_text(parts: list[tuple[str, str]]) -> None:
    text = "".join(a + b for a, b in parts)
    spans = split_sentences(text)
    covered = [False] * len(text)
    prev_end = 0
    for s, e in spans:
        assert prev_end <= s < e <= len(text)
        assert not text[s].isspace() and not text[e - 1].isspace()
        for k in range(s, e):
            covered[k] = True
        prev_end = e
    # Only whitespace is left out.
    assert all(covered[k] or text[k].isspace() for k in range(len(text)))


@pytest.mark.skipif(not LLAMA2.exists(), reason="Llama 2 paper text not available")
def test_speed_and_sanity_on_llama2_paper() -> None:
    text = LLAMA2.read_text(encoding="utf-8") * 8  # about 2 MB
    t0 = time.perf_counter()
    spans = split_sentences(text)
    elapsed = time.perf_counter() - t0
    # Typically 15-30 MB/s; the bound is loose so that a busy machine does not fail it.
    assert len(text) / elapsed > 2e6, f"{len(text) / elapsed / 1e6:.1f} MB/s"
    lengths = sorted(e - s for s, e in spans)
    assert lengths[len(lengths) // 2] > 20  # real sentences, not fragments
    assert "Touvron et al. (2023)" not in {text[s:e] for s, e in spans}
    assert not any(text[s:e] in {"Dr.", "et al.", "Fig.", "e.g."} for s, e in spans)
