"""Dataset readers on small hand-written files, their error messages, and the real shared datasets."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import (
    read_beir,
    read_hipporag,
    read_hotpotqa_subset,
    read_llamaindex_qa,
    read_llamaindex_rag,
    read_squad,
    read_squad_dev,
    text_id,
)
from support import datasets_root

SHARED = datasets_root()


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- BEIR ----------------------------------------------------------------------------------------


def make_beir(root: Path) -> Path:
    root.mkdir()
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Cats", "text": "Cats purr."},
            {"_id": "d2", "title": "", "text": "Dogs bark."},
            {"_id": "d3", "text": "Birds sing."},  # title is optional
        ],
    )
    write_jsonl(
        root / "queries.jsonl",
        [
            {"_id": "q1", "text": "what purrs"},
            {"_id": "q2", "text": "what barks or sings"},
            {"_id": "q3", "text": "no judgements"},
        ],
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td2\t2\nq2\td3\t1\n", encoding="utf-8"
    )
    return root


def test_beir(tmp_path: Path) -> None:
    ds = read_beir(make_beir(tmp_path / "tiny"))
    assert ds.name == "tiny"
    assert [(p.id, p.title, p.text) for p in ds.passages] == [
        ("d1", "Cats", "Cats purr."),
        ("d2", "", "Dogs bark."),
        ("d3", "", "Birds sing."),
    ]
    # score 0 is not gold; q3 has no qrels and is dropped
    assert [(q.id, q.text, q.relevant) for q in ds.queries] == [
        ("q1", "what purrs", ["d1"]),
        ("q2", "what barks or sings", ["d2", "d3"]),
    ]
    assert ds.meta["judgements"] == 4 and ds.gold() == {"q1": ["d1"], "q2": ["d2", "d3"]}


def test_beir_missing_qrels_names_file_and_splits(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "tiny")
    with pytest.raises(InvalidInputError, match=r"qrels.dev\.tsv.*split 'dev' not found \(available: test\)"):
        read_beir(root, split="dev")


def test_beir_bad_lines(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "tiny")
    with (root / "corpus.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(InvalidInputError, match=r"corpus\.jsonl: line 4 is not valid JSON"):
        read_beir(root)
    write_jsonl(root / "corpus.jsonl", [{"_id": "d1"}])
    with pytest.raises(InvalidInputError, match=r"corpus\.jsonl: line 1 has no 'text' field"):
        read_beir(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(InvalidInputError, match=r"corpus\.jsonl: BEIR corpus not found"):
        read_beir(root)
    with pytest.raises(InvalidInputError, match="BEIR folder not found"):
        read_beir(tmp_path / "nowhere")


# --- LlamaIndex ----------------------------------------------------------------------------------


def test_llamaindex_rag(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "rag_dataset.json",
        {
            "examples": [
                {
                    "query": "What is A?",
                    "query_by": {"model_name": "gpt-4", "type": "ai"},
                    "reference_contexts": ["Context A.", "Context B."],
                    "reference_answer": "A is a letter.",
                    "reference_answer_by": {"model_name": "gpt-4", "type": "ai"},
                },
                {"query": "What is B?", "reference_contexts": ["Context B."], "reference_answer": "B."},
                {"query": "No context?", "reference_contexts": None, "reference_answer": ""},
            ]
        },
    )
    ds = read_llamaindex_rag(path)
    a, b = text_id("Context A."), text_id("Context B.")
    assert a == hashlib.sha1(b"Context A.").hexdigest()[:16]  # first 16 hex digits of the SHA-1
    assert [p.id for p in ds.passages] == [a, b]  # the shared context is one passage
    assert [(q.id, q.text, q.relevant, q.answers) for q in ds.queries] == [
        ("0", "What is A?", [a, b], ["A is a letter."]),
        ("1", "What is B?", [b], ["B."]),
        ("2", "No context?", [], []),
    ]
    assert ds.meta["queries_without_gold"] == 1


def test_llamaindex_rag_errors(tmp_path: Path) -> None:
    path = write_json(tmp_path / "rag.json", {"examples": [{"query": "q", "reference_contexts": ["c"]}]})
    with pytest.raises(InvalidInputError, match=r"rag\.json: examples\[0\] has no 'reference_answer' field"):
        read_llamaindex_rag(path)
    write_json(path, {"examples": [{"query": 3, "reference_contexts": [], "reference_answer": ""}]})
    with pytest.raises(InvalidInputError, match=r"rag\.json: examples\[0\]\.query should be a string, not a number"):
        read_llamaindex_rag(path)
    write_json(path, {"exemples": []})
    with pytest.raises(InvalidInputError, match=r"rag\.json: the top level has no 'examples' field"):
        read_llamaindex_rag(path)
    path.write_text('{"examples": [', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"rag\.json: not valid JSON"):
        read_llamaindex_rag(path)
    with pytest.raises(InvalidInputError, match=r"missing\.json: LabelledRagDataset JSON not found"):
        read_llamaindex_rag(tmp_path / "missing.json")


def test_llamaindex_qa(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "qa.json",
        {
            "queries": {"q1": "first?", "q2": "second?", "q3": "unjudged?"},
            "corpus": {"n1": "node one", "n2": "node two"},
            "relevant_docs": {"q1": ["n1"], "q2": ["n2", "n1", "n2"], "q9": ["n1"]},
            "mode": "text",
        },
    )
    ds = read_llamaindex_qa(path)
    assert [(p.id, p.text) for p in ds.passages] == [("n1", "node one"), ("n2", "node two")]
    assert [(q.id, q.text, q.relevant) for q in ds.queries] == [
        ("q1", "first?", ["n1"]),
        ("q2", "second?", ["n2", "n1"]),
    ]
    assert ds.meta["queries_without_gold"] == 1 and ds.meta["gold_for_unknown_queries"] == 1


def test_llamaindex_qa_errors(tmp_path: Path) -> None:
    path = write_json(tmp_path / "qa.json", {"queries": {}, "corpus": {}})
    with pytest.raises(InvalidInputError, match=r"qa\.json: the top level has no 'relevant_docs' field"):
        read_llamaindex_qa(path)
    write_json(path, {"queries": {}, "corpus": {}, "relevant_docs": {"q1": "n1"}})
    with pytest.raises(InvalidInputError, match=r"qa\.json: relevant_docs\['q1'\] should be an array, not a string"):
        read_llamaindex_qa(path)
    write_json(path, [1, 2])
    with pytest.raises(InvalidInputError, match=r"qa\.json: the top level should be an object, not an array"):
        read_llamaindex_qa(path)


# --- HippoRAG ------------------------------------------------------------------------------------


def make_hipporag(tmp_path: Path) -> tuple[Path, Path]:
    corpus = {
        "Alpha": ["Alpha is a band.", " It formed in 1990."],
        "Beta": ["Beta is a city."],
        "Gamma": ["Gamma is a distractor."],
    }
    questions = [
        {
            "_id": "h1",
            "question": "Where was Alpha's singer born?",
            "answer": "Beta",
            "type": "bridge",
            "level": "easy",
            # two facts from Alpha: the title counts once
            "supporting_facts": [["Alpha", 0], ["Alpha", 1], ["Beta", 0]],
            "context": [["Alpha", corpus["Alpha"]], ["Beta", corpus["Beta"]], ["Gamma", corpus["Gamma"]]],
        },
        {
            "_id": "h2",
            "question": "Which is older?",
            "answer": "Gamma",
            "type": "comparison",
            "level": "hard",
            "supporting_facts": [["Gamma", 0], ["Beta", 0]],
            "context": [],
        },
    ]
    return write_json(tmp_path / "q.json", questions), write_json(tmp_path / "c.json", corpus)


def test_hipporag(tmp_path: Path) -> None:
    ds = read_hipporag(*make_hipporag(tmp_path))
    assert [(p.id, p.title, p.text) for p in ds.passages] == [
        ("Alpha", "Alpha", "Alpha is a band. It formed in 1990."),
        ("Beta", "Beta", "Beta is a city."),
        ("Gamma", "Gamma", "Gamma is a distractor."),
    ]
    assert ds.passages[0].full_text == "Alpha Alpha is a band. It formed in 1990."
    assert [(q.id, q.relevant, q.answers) for q in ds.queries] == [
        ("h1", ["Alpha", "Beta"], ["Beta"]),
        ("h2", ["Gamma", "Beta"], ["Gamma"]),
    ]
    assert ds.meta["gold_per_query"] == {2: 2}
    assert ds.meta["types"] == {"bridge": 1, "comparison": 1} and ds.meta["gold_not_in_corpus"] == 0


def test_hipporag_list_corpus_and_paragraphs(tmp_path: Path) -> None:
    corpus = write_json(
        tmp_path / "c.json",
        [{"title": "A", "text": "a1"}, {"title": "A", "text": "a2"}, {"title": "B", "text": "b"}],
    )
    questions = write_json(
        tmp_path / "q.json",
        [
            {
                "id": "m1",
                "question": "?",
                "answer": "x",
                "answer_aliases": ["X"],
                "paragraphs": [{"title": "A", "is_supporting": True}, {"title": "B", "is_supporting": False}],
            }
        ],
    )
    ds = read_hipporag(questions, corpus)
    assert [p.id for p in ds.passages] == ["A", "A#2", "B"]
    assert [(q.id, q.relevant, q.answers) for q in ds.queries] == [("m1", ["A", "A#2"], ["x", "X"])]


def test_hipporag_errors(tmp_path: Path) -> None:
    qpath, cpath = make_hipporag(tmp_path)
    write_json(qpath, [{"_id": "h1", "question": "?", "answer": "a"}])
    with pytest.raises(InvalidInputError, match=r"q\.json: \[0\] has neither 'supporting_facts' nor 'paragraphs'"):
        read_hipporag(qpath, cpath)
    write_json(qpath, [{"_id": "h1", "answer": "a", "supporting_facts": []}])
    with pytest.raises(InvalidInputError, match=r"q\.json: \[0\] has no 'question' field"):
        read_hipporag(qpath, cpath)
    write_json(qpath, [{"_id": "h1", "question": "?", "answer": "a", "supporting_facts": ["Alpha"]}])
    with pytest.raises(InvalidInputError, match=r"supporting_facts\[0\] should be a \[title, sentence_index\]"):
        read_hipporag(qpath, cpath)
    cpath.write_text("{", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"c\.json: not valid JSON"):
        read_hipporag(qpath, cpath)


# --- SQuAD ---------------------------------------------------------------------------------------


def squad_obj(with_answer_start: bool) -> dict[str, Any]:
    def ans(text: str, start: int) -> dict[str, Any]:
        return {"text": text, "answer_start": start} if with_answer_start else {"text": text}

    return {
        "version": "1.1",
        "data": [
            {
                "title": "Art_One",
                "paragraphs": [
                    {
                        "context": "Denver won Super Bowl 50.",
                        "qas": [
                            {"id": "s1", "question": " Who won? ", "answers": [ans("Denver", 0), ans("Denver", 0)]}
                        ],
                    },
                    {"context": "It was in Santa Clara.", "qas": [{"id": "s2", "question": "Where?", "answers": []}]},
                ],
            },
            {
                "title": "Art_Two",
                "paragraphs": [
                    {
                        "context": "Warsaw is a city.",
                        "qas": [{"id": "s3", "question": "What?", "answers": [ans("a city", 10)]}],
                    }
                ],
            },
        ],
    }


@pytest.mark.parametrize("with_answer_start", [True, False])  # official layout and the explorer rebuild
def test_squad(tmp_path: Path, with_answer_start: bool) -> None:
    ds = read_squad(write_json(tmp_path / "squad.json", squad_obj(with_answer_start)))
    assert [(p.id, p.title) for p in ds.passages] == [("0:0", "Art_One"), ("0:1", "Art_One"), ("1:0", "Art_Two")]
    assert [(q.id, q.text, q.relevant, q.answers) for q in ds.queries] == [
        ("s1", "Who won?", ["0:0"], ["Denver", "Denver"]),
        ("s2", "Where?", ["0:1"], []),
        ("s3", "What?", ["1:0"], ["a city"]),
    ]
    assert ds.meta["articles"] == 2 and ds.meta["paragraphs"] == 3 and ds.meta["questions"] == 3
    small = read_squad(tmp_path / "squad.json", max_articles=1)
    assert len(small.passages) == 2 and [q.id for q in small.queries] == ["s1", "s2"]


def test_squad_errors(tmp_path: Path) -> None:
    obj = squad_obj(False)
    del obj["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["text"]
    path = write_json(tmp_path / "squad.json", obj)
    with pytest.raises(
        InvalidInputError, match=r"squad\.json: data\[1\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\] has no 'text'"
    ):
        read_squad(path)
    obj = squad_obj(False)
    obj["data"][1]["paragraphs"][0]["qas"][0]["id"] = "s1"
    write_json(path, obj)
    with pytest.raises(InvalidInputError, match=r"squad\.json: 1 query id\(s\) occur more than once, e.g. 's1'"):
        read_squad(path)
    with pytest.raises(InvalidInputError, match="max_articles"):
        read_squad(path, max_articles=-1)


# --- the real shared datasets --------------------------------------------------------------------


def test_real_hotpotqa_subset() -> None:
    if not (SHARED / "hotpotqa_hipporag").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set KVGRAPH_DATASETS)")
    ds = read_hotpotqa_subset(SHARED)
    assert len(ds.queries) == 100
    assert len(ds.passages) == 994
    assert len({p.id for p in ds.passages}) == 994
    # every question has exactly its 2 supporting passages, all in the corpus (README: 200 distinct titles)
    assert Counter(len(q.relevant) for q in ds.queries) == {2: 100}
    assert len({pid for q in ds.queries for pid in q.relevant}) == 200
    assert ds.meta["gold_not_in_corpus"] == 0
    assert ds.meta["types"] == {"bridge": 78, "comparison": 22}
    assert ds.meta["levels"] == {"easy": 16, "medium": 69, "hard": 15}
    assert all(q.answers for q in ds.queries)


def test_real_squad_dev() -> None:
    if not (SHARED / "squad").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set KVGRAPH_DATASETS)")
    ds = read_squad_dev(SHARED)
    assert ds.meta["articles"] == 48
    assert len(ds.passages) == 2067
    assert len(ds.queries) == 10570
    assert ds.meta["answers"] == 34726
    assert all(q.answers for q in ds.queries)
    assert ds.passages[0].title == "Super_Bowl_50" and ds.passages[0].id == "0:0"
    by_id = {p.id: p for p in ds.passages}
    # the README says every answer string occurs verbatim in its paragraph
    assert all(a in by_id[q.relevant[0]].text for q in ds.queries for a in q.answers)
