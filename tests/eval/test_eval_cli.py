"""`kvgraph eval` on small real files, with the real embedding model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kvgraph.cli import main
from kvgraph.eval.datasets import EvalDataset, Passage, Query
from kvgraph.eval.runner import run_retrieval

PASSAGES = {
    "p1": "The Danube flows through ten countries and empties into the Black Sea.",
    "p2": "Basalt forms when lava rich in iron and magnesium cools quickly at the surface.",
    "p3": "The honeybee waggle dance tells nest mates the direction and distance of flowers.",
    "p4": "Champollion announced his decipherment of Egyptian hieroglyphs in 1822.",
}
QUERIES = {
    "q1": ("Which sea does the Danube drain into?", ["p1"]),
    "q2": ("How do bees tell each other where food is?", ["p3"]),
    "q3": ("When were hieroglyphs deciphered?", ["p4"]),
}


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for pid, text in PASSAGES.items():
            f.write(json.dumps({"_id": pid, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid, (text, _) in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, (_, rel) in QUERIES.items():
            f.write(f"{qid}\t{rel[0]}\t1\n")
    return folder


def test_eval_retrieval_cli_writes_table_json_csv(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "beir")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["eval", "retrieval", "--dataset", str(beir), "--format", "beir", "--retrievers", "bm25,dense,hybrid",
         "-k", "1,3", "--work-dir", str(tmp_path / "kb"), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 queries over 4 passages" in result.output
    data = json.loads((out / "retrieval.json").read_text())["reports"]
    assert set(data) == {"bm25", "dense", "hybrid"}
    assert data["dense"]["means"]["hit_rate@1"] == 1.0  # each query has one clear answer
    assert len(data["dense"]["rows"]) == 3 and data["dense"]["rows"][0]["ranked"][0] == "p1"
    header = (out / "retrieval.csv").read_text().splitlines()[0]
    assert header.startswith("retriever,hit_rate@1,hit_rate@3,mrr@1")


def test_unknown_retriever_and_bad_k_are_clear_errors(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "beir")
    r = CliRunner().invoke(main, ["eval", "retrieval", "--dataset", str(beir), "--format", "beir", "-k", "0"])
    assert r.exit_code != 0 and "k values must be positive" in r.output
    ds = EvalDataset("x", [Passage("p", "text")], [Query("q", "text", ["p"])])
    from kvgraph.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="unknown retriever"):
        run_retrieval(ds, ["colbert"], work_dir=tmp_path / "kb2")


def test_passages_longer_than_a_chunk_map_back_to_one_passage(tmp_path: Path) -> None:
    long_text = " ".join(f"Sentence {i} is about the history of ceramics in region {i}." for i in range(80))
    ds = EvalDataset(
        "long",
        [Passage("long", long_text + " The kiln at Jingdezhen fired porcelain."), Passage("short", PASSAGES["p2"])],
        [Query("q", "Where was porcelain fired in a kiln?", ["long"])],
    )
    run = run_retrieval(ds, ["dense"], ks=(1, 2), work_dir=tmp_path / "kb")
    row = run.reports["dense"].rows[0]
    assert row.ranked[:2] == ["long", "short"]  # several chunks of 'long', counted once
    assert run.reports["dense"].means["hit_rate@1"] == 1.0


def test_eval_answers_scores_extractive_answers(tmp_path: Path) -> None:
    squad = {
        "data": [
            {
                "title": "Rivers",
                "paragraphs": [
                    {"context": PASSAGES["p1"], "qas": [{"id": "a", "question": QUERIES["q1"][0],
                                                       "answers": [{"text": "the Black Sea"}]}]},
                    {"context": PASSAGES["p4"], "qas": [{"id": "b", "question": QUERIES["q3"][0],
                                                       "answers": [{"text": "1822"}]}]},
                ],
            }
        ]
    }  # fmt: skip
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    out = tmp_path / "answers.json"
    r = CliRunner().invoke(
        main,
        ["eval", "answers", "--dataset", str(path), "--format", "squad", "--work-dir", str(tmp_path / "kb"),
         "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["qid"] for row in rows] == ["a", "b"]
    assert "Black Sea" in rows[0]["answer"] and rows[0]["scores"]["token_f1"] > 0.2
    assert rows[0]["scores"]["semantic_similarity"] > 0.3


def test_eval_generate_writes_qa_json_with_an_llm_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kvgraph.kb import KnowledgeBase
    from kvgraph.schema import Document
    from kvgraph.testing.openai_server import FakeOpenAIServer

    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add_documents([Document(id=pid, text=text) for pid, text in PASSAGES.items()])
    server = FakeOpenAIServer(reply=lambda m: "1. What is described here?\n2. Why does it matter?").start()
    try:
        monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
        out = tmp_path / "qa.json"
        r = CliRunner().invoke(main, ["--kb", str(tmp_path / "kb"), "eval", "generate", "--out", str(out)])
        assert r.exit_code == 0, r.output
        data = json.loads(out.read_text())
        assert len(data["queries"]) == 8 and len(data["corpus"]) == 4
        assert all(len(v) == 1 and v[0] in data["corpus"] for v in data["relevant_docs"].values())
        n_requests = len(server.requests_to("/v1/chat/completions"))
        r = CliRunner().invoke(main, ["--kb", str(tmp_path / "kb"), "eval", "generate", "--out", str(out)])
        assert r.exit_code == 0 and len(server.requests_to("/v1/chat/completions")) == n_requests  # resumed
    finally:
        server.stop()
