"""Gold passages by identity in HippoRAG's file shapes (MuSiQue, 2WikiMultiHopQA, HotpotQA).

The fixtures in ``fixtures/`` are hand-written in the formats' shapes (HippoRAG's ``NAME.json`` +
``NAME_corpus.json``) with invented content; titles repeat on purpose, as they do in MuSiQue
(several paragraphs per title) and 2Wiki (two films with one name).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvgraph.eval.datasets import read_hipporag
from kvgraph.eval.runner import read_dataset, run_retrieval
from support import require_dataset

FIXTURES = Path(__file__).parent / "fixtures"


def read(name: str):
    return read_hipporag(FIXTURES / f"{name}.json", FIXTURES / f"{name}_corpus.json")


def test_musique_gold_is_the_supporting_paragraph_not_every_paragraph_of_its_title() -> None:
    ds = read("musique_tiny")
    gold = ds.gold()
    assert [p.id for p in ds.passages if p.title == "Glass Harbor"] == [
        "Glass Harbor",
        "Glass Harbor#2",
        "Glass Harbor#3",
    ]
    assert gold["3hop1__1_2_3"] == ["Glass Harbor", "Aurelia Voss", "Marrow"]  # the opera and the city, not the town
    assert gold["2hop__4_5"] == ["Glass Harbor#3", "Tomas Brenn"]  # the lighthouse paragraph only
    # the paragraph's text has other whitespace than the corpus (a double space, a newline): same passage
    assert gold["2hop__6_7"] == ["Marrow#2"]
    # a paragraph whose wording drifted ("north" for "northern", no full stop) is the same-title passage it overlaps
    assert gold["2hop__8_9"] == ["Glass Harbor#2"]
    assert ds.meta["repeated_titles"] == 2 and ds.meta["gold_matched_by_word_overlap"] == 1
    assert ds.meta["gold_not_in_corpus"] == 0 and ds.meta["gold_by_ambiguous_title"] == 0
    assert ds.queries[0].answers == ["Estrel", "Province of Estrel"]
    passage = {p.id: p for p in ds.passages}["Glass Harbor#3"]
    assert passage.full_text.startswith("Glass Harbor The Glass Harbor lighthouse")


def test_2wiki_gold_follows_the_context_text_and_the_cited_sentence() -> None:
    ds = read("2wiki_tiny")
    gold = ds.gold()
    assert gold["w1"] == ["Blind Orchard", "Pell Arno"]  # the 1962 film: its context text is that passage
    assert gold["w2"] == ["Blind Orchard#2", "Mara Linde"]  # the 2004 documentary
    # both films are in w3's context under one title; sentence 1 is cited, and only the 1962 text has two
    assert gold["w3"] == ["Blind Orchard", "Kestrel Road"]
    assert ds.meta["types"] == {"compositional": 2, "comparison": 1}


def test_hotpotqa_gold_is_unchanged_by_identity_matching() -> None:
    ds = read("hotpotqa_tiny")
    assert ds.gold() == {"h1": ["Quill River", "Estrel"], "h2": ["Quill River", "Vendrian Sea"]}
    assert ds.meta["gold_per_query"] == {2: 2}


def test_without_context_a_repeated_title_counts_every_passage_and_says_so(tmp_path: Path) -> None:
    questions = [{"_id": "x", "question": "q", "answer": "a", "supporting_facts": [["Marrow", 0]]}]
    (tmp_path / "x.json").write_text(json.dumps(questions))
    (tmp_path / "x_corpus.json").write_text((FIXTURES / "musique_tiny_corpus.json").read_text())
    ds = read_hipporag(tmp_path / "x.json", tmp_path / "x_corpus.json")
    assert ds.gold() == {"x": ["Marrow", "Marrow#2"]} and ds.meta["gold_by_ambiguous_title"] == 1


def test_paragraphs_without_a_flag_are_supporting_and_unknown_gold_stays_an_id(tmp_path: Path) -> None:
    questions = [
        {
            "id": "s1",
            "question": "q",
            "answer": ["a"],
            "paragraphs": [
                {
                    "title": "Tomas Brenn",
                    "text": "Tomas Brenn was an engineer who studied at the Polytechnic of Estrel.",
                },
                {"title": "Nowhere", "text": "This paragraph is in no corpus.", "is_supporting": True},
                {"title": "Marrow", "text": "Marrow is a 1954 novel by Ines Kader about a family of glassblowers.",
                 "is_supporting": False},
            ],
        }
    ]  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(questions))
    (tmp_path / "s_corpus.json").write_text((FIXTURES / "musique_tiny_corpus.json").read_text())
    ds = read_hipporag(tmp_path / "s.json", tmp_path / "s_corpus.json")
    assert ds.gold() == {"s1": ["Tomas Brenn", "Nowhere"]} and ds.meta["gold_not_in_corpus"] == 1


def test_recall_counts_only_the_exact_gold_passages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVGRAPH_EMBEDDER", "hashing")
    ds = read_dataset(FIXTURES / "musique_tiny.json", "hipporag")
    run = run_retrieval(ds, ["dense"], ks=(1, 8), work_dir=tmp_path / "work")
    rows = {row.qid: row for row in run.reports["dense"].rows}
    # with all 8 passages returned, every gold passage is found: recall 1, precision = gold / 8
    assert all(row.scores["recall@8"] == 1.0 for row in rows.values())
    assert rows["2hop__4_5"].scores["precision@8"] == pytest.approx(2 / 8)  # not 4/8: two other Glass Harbors
    assert rows["2hop__6_7"].relevant == ["Marrow#2"]


def test_the_shared_hotpotqa_subset_keeps_its_two_gold_titles() -> None:
    folder = require_dataset("hotpotqa_hipporag")
    ds = read_dataset(folder, "hipporag")
    raw = json.loads((folder / "hotpotqa_train.json").read_text())
    assert [q.relevant for q in ds.queries] == [list(dict.fromkeys(f[0] for f in r["supporting_facts"])) for r in raw]
    assert ds.meta["gold_per_query"] == {2: 100} and ds.meta["gold_matched_by_word_overlap"] == 0
