"""Offline pair sources: inverse cloze, headings, labelled sets, and the exclusion of evaluated sentences."""

from __future__ import annotations

from kvgraph.finetune.offline import Excluded, heading_pairs, inverse_cloze_pairs, labelled_pairs, link_pairs
from kvgraph.finetune.pairs import normalize_query
from kvgraph.schema import Node

TEXT = (
    "Llama 2 was pretrained on two trillion tokens of publicly available online data. "
    "The context length was doubled from two thousand to four thousand tokens compared with the first version. "
    "Grouped-query attention improves the inference scalability of the largest models considerably. "
    "Supervised fine-tuning used twenty seven thousand high quality annotations collected by the vendors. "
    "Reinforcement learning with human feedback then aligned the chat models with human preferences."
)


def node(i: int, text: str = TEXT, **meta: object) -> Node:
    return Node(f"n{i}", text, dict(meta), ref_doc_id=f"doc{i % 2}")


def test_inverse_cloze_cuts_the_query_sentence_out_of_its_positive() -> None:
    pairs = inverse_cloze_pairs([node(0), node(1)], per_chunk=2, seed=0)
    assert len(pairs) == 4
    for p in pairs:
        assert p.source == "ict" and p.positive_id in ("n0", "n1") and p.doc_id in ("doc0", "doc1")
        assert p.query in TEXT
        assert p.query not in p.positive  # the sentence itself is gone from the context
        assert len(p.positive.split()) >= 20
    assert inverse_cloze_pairs([node(0)], seed=0) == inverse_cloze_pairs([node(0)], seed=0)
    assert {p.query for p in inverse_cloze_pairs([node(0)], per_chunk=5, seed=0)} == {
        p.query for p in inverse_cloze_pairs([node(0)], per_chunk=5, seed=7)
    }  # all five sentences either way; the seed only changes which come first


def test_excluded_sentences_never_become_queries() -> None:
    evaluated = "grouped-query  attention improves the inference scalability of the largest models considerably"
    skip = Excluded([evaluated])
    pairs = inverse_cloze_pairs([node(0)], per_chunk=10, exclude=skip)
    assert pairs and all(normalize_query(evaluated) not in normalize_query(p.query) for p in pairs)
    assert len(pairs) == 4
    # a sentence cut differently by another splitter still counts (one inside the other)
    assert Excluded(["The context length was doubled from two thousand to four thousand tokens"]).hit(
        "The context length was doubled from two thousand to four thousand tokens compared with the first version."
    )
    assert not Excluded(["tokens"]).hit("Llama 2 was pretrained on two trillion tokens")  # too short to match inside


def test_short_chunks_give_no_inverse_cloze_pair() -> None:
    assert inverse_cloze_pairs([node(0, "One short sentence here with some words. Another one follows it.")]) == []


def test_heading_pairs_from_metadata_and_markdown_lines() -> None:
    md = node(0, "## Safety Fine-Tuning\n\n" + TEXT, heading_path="Llama 2 > Safety Fine-Tuning")
    paged = node(1, "# 2.1 Pretraining Data\n" + TEXT + "\n\n### Training Details\n" + TEXT)
    titled = node(2, "Eiffel Tower " + TEXT, title="Eiffel Tower")
    pairs = heading_pairs([md, paged, titled])
    got = {(p.query, p.positive_id) for p in pairs}
    assert got == {
        ("Safety Fine-Tuning", "n0"),
        ("Pretraining Data", "n1"),  # the section number is dropped
        ("Training Details", "n1"),
        ("Eiffel Tower", "n2"),
    }
    for p in pairs:
        assert p.source == "heading"
        assert not p.positive.startswith(("#", "Eiffel Tower", "2.1"))  # the heading is cut from its body
        assert p.positive.startswith("Llama 2 was pretrained")


def test_one_word_headings_and_excluded_ones_are_skipped() -> None:
    pairs = heading_pairs([node(0, "# Introduction\n" + TEXT), node(1, "# Reward Modeling\n" + TEXT)])
    assert [p.query for p in pairs] == ["Reward Modeling"]
    assert heading_pairs([node(1, "# Reward Modeling\n" + TEXT)], exclude=Excluded(["reward modeling"])) == []


def test_labelled_pairs_one_per_relevant_passage() -> None:
    passages = {"p1": node(1, "first passage"), "p2": node(2, "second passage")}
    pairs = labelled_pairs([("q one", ["p1", "p2"]), ("q two", ["missing"]), ("  ", ["p1"])], passages)
    assert [(p.query, p.positive, p.positive_id, p.source) for p in pairs] == [
        ("q one", "first passage", "p1", "labelled"),
        ("q one", "second passage", "p2", "labelled"),
    ]


def test_link_pairs_join_a_sentence_naming_a_title_to_that_chunk() -> None:
    text = "Eiffel Tower The tower was completed in 1889 and is about 330 metres tall."
    tower = Node("t", text, {"title": "Eiffel Tower"}, ref_doc_id="tower")
    paris = Node(
        "p",
        "Paris is the capital of France. Visitors climb the Eiffel Tower every day to see the city from above. "
        "The Seine flows through the middle of the city from east to west.",
        {"title": "Paris"},
        ref_doc_id="paris",
    )
    self_ref = Node("t2", "Many postcards show the Eiffel Tower at night with all of its lights on.", {"title": "x"},
                    ref_doc_id="tower")  # fmt: skip
    pairs = link_pairs([tower, paris, self_ref])
    assert [(p.query, p.positive_id, p.source, p.doc_id) for p in pairs] == [
        ("Visitors climb the Eiffel Tower every day to see the city from above.", "t", "link", "tower")
    ]  # the tower's own document does not link to itself; "Paris" is too short a title to match
    assert link_pairs([tower, paris], exclude=Excluded(["Visitors climb the Eiffel Tower every day"])) == []
    many = [paris] + [
        Node(
            f"m{i}",
            f"Story {i} says the Eiffel Tower was painted again in year {1900 + i} by a large team.",
            {},
            ref_doc_id=f"m{i}",
        )
        for i in range(6)
    ]
    assert len(link_pairs([tower, *many], per_target=3)) == 3
