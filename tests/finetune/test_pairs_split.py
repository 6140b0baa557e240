"""Training pairs on disk and train/test splits that cannot leak a question or a document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvgraph.errors import InvalidInputError
from kvgraph.finetune.pairs import TrainingPair, load_pairs, normalize_query, pair_stats, save_pairs
from kvgraph.finetune.split import leaks, split_pairs


def test_pairs_round_trip_and_bad_lines_name_the_line(tmp_path: Path) -> None:
    pairs = [
        TrainingPair("What is RA-DIT?", "RA-DIT fine-tunes both halves.", source="ict", doc_id="d1"),
        TrainingPair("Who wrote it?", answer="Meta [1].", source="llm", doc_id="d2", positive_id="n2"),
    ]
    path = save_pairs(pairs, tmp_path / "pairs.jsonl")
    assert load_pairs(path) == pairs
    assert "answer" not in json.loads(path.read_text().splitlines()[0])  # empty fields are not written

    path.write_text('{"query": "ok", "positive": "p"}\n{"query": "x", "postive": "typo"}\n')
    with pytest.raises(InvalidInputError, match=r"pairs.jsonl:2: unknown field\(s\) \['postive'\]"):
        load_pairs(path)
    path.write_text('{"query": "  "}\n')
    with pytest.raises(InvalidInputError, match=r":1: field 'query' is missing or empty"):
        load_pairs(path)
    path.write_text("{not json\n")
    with pytest.raises(InvalidInputError, match=r":1: not valid JSON"):
        load_pairs(path)


def test_normalized_questions_ignore_case_accents_punctuation_and_spacing() -> None:
    assert normalize_query("  What is  the Café's ROLE?! ") == normalize_query("what is the cafe s role")
    assert normalize_query("What is A?") != normalize_query("What is B?")


def corpus(n_docs: int = 20, per_doc: int = 5) -> list[TrainingPair]:
    return [
        TrainingPair(f"Question {d}-{i} about document {d}?", f"passage {d}-{i}", source="ict", doc_id=f"doc{d}")
        for d in range(n_docs)
        for i in range(per_doc)
    ]


def test_split_by_document_keeps_each_document_on_one_side() -> None:
    pairs = corpus()
    split = split_pairs(pairs, test_ratio=0.3, by="document", seed=1)
    assert len(split.train) + len(split.test) == len(pairs)
    assert len(split.test) == 30
    assert leaks(split.train, split.test) == {"questions": set(), "documents": set()}
    stats = split.stats()
    assert stats["train"]["documents"] == 14 and stats["test"]["documents"] == 6
    assert stats["leaks"] == {"questions": 0, "documents": 0}


def test_split_is_seeded() -> None:
    pairs = corpus()
    a, b = split_pairs(pairs, seed=3), split_pairs(pairs, seed=3)
    assert a.test == b.test
    assert split_pairs(pairs, seed=4).test != a.test


def test_a_repeated_question_in_another_document_never_crosses_sides() -> None:
    """The same question (up to case and punctuation) from two documents pulls both documents to one side."""
    pairs = corpus(10, 2)
    pairs.append(TrainingPair("QUESTION 3-0 about document 3", "passage x", doc_id="doc7"))
    for seed in range(10):
        for by in ("document", "shuffle"):
            split = split_pairs(pairs, test_ratio=0.4, by=by, seed=seed)
            assert not leaks(split.train, split.test)["questions"], (by, seed)


def test_shuffle_split_may_share_documents_but_not_questions() -> None:
    split = split_pairs(corpus(4, 10), test_ratio=0.3, by="shuffle", seed=0)
    shared = leaks(split.train, split.test)
    assert not shared["questions"]
    assert shared["documents"]  # 4 documents, 40 pairs shuffled: documents land on both sides


def test_bad_split_arguments_are_named() -> None:
    with pytest.raises(InvalidInputError, match="split mode"):
        split_pairs(corpus(), by="page")
    with pytest.raises(InvalidInputError, match="test ratio"):
        split_pairs(corpus(), test_ratio=1.0)


def test_one_big_document_cannot_be_split_by_document() -> None:
    pairs = [TrainingPair(f"q{i}?", "p", doc_id="only") for i in range(5)]
    split = split_pairs(pairs, test_ratio=0.3, by="document")
    assert split.test == [] and len(split.train) == 5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["What is X?", "what is x", "How big?", "Why?", "Who made Y?"]), st.integers(0, 6)),
        min_size=2,
        max_size=40,
    ),
    st.sampled_from(["document", "shuffle"]),
    st.integers(0, 1000),
)
def test_no_split_ever_leaks(items: list[tuple[str, int]], by: str, seed: int) -> None:
    pairs = [TrainingPair(f"{q} {n % 3}" if n % 2 else q, "p", doc_id=f"d{n}") for q, n in items]
    split = split_pairs(pairs, test_ratio=0.3, by=by, seed=seed)
    shared = leaks(split.train, split.test)
    assert not shared["questions"]
    if by == "document":
        assert not shared["documents"]
    assert sorted(map(repr, split.train + split.test)) == sorted(map(repr, pairs))


def test_pair_stats_count_sources_and_fields() -> None:
    pairs = [TrainingPair("a b c?", "p q", source="ict", doc_id="d"), TrainingPair("x?", answer="y", source="llm")]
    stats = pair_stats(pairs)
    assert stats["by_source"] == {"ict": 1, "llm": 1}
    assert stats["with_positive"] == 1 and stats["with_answer"] == 1 and stats["documents"] == 1
    assert stats["mean_query_words"] == 2.0
