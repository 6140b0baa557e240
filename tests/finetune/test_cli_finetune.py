"""`kvgraph finetune ...` and `kvgraph reembed` end to end: offline, and with a loopback LLM server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kvgraph.cli import main
from kvgraph.finetune.pairs import load_pairs
from kvgraph.finetune.split import leaks
from kvgraph.testing.openai_server import FakeOpenAIServer

SECTIONS = {
    "Composting Basics": "A healthy compost pile mixes nitrogen rich greens with carbon rich browns in layers",
    "Turning The Pile": "Turning the pile every two weeks adds the oxygen that composting microbes need to work",
    "Honeybee Communication": "Worker bees perform a waggle dance to tell nest mates the direction of flowers",
    "Router Security": "Change the default administrator password before connecting the router to the internet",
    "Wireless Channels": "On the crowded band only channels one six and eleven do not overlap each other",
    "Tower History": "The iron tower was completed for the world fair and is about three hundred metres tall",
}


def write_corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for n, (heading, fact) in enumerate(SECTIONS.items()):
        body = " ".join(f"{fact}, as note {i} of the {heading.lower()} guide explains in detail." for i in range(4))
        (docs / f"guide{n}.md").write_text(f"# Garden and Home Guide {n}\n\n## {heading}\n\n{body}\n")
    return docs


def run(args: list[str], ok: bool = True) -> Any:
    result = CliRunner().invoke(main, args)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    path = tmp_path / "kb"
    run(["--kb", str(path), "ingest", str(write_corpus(tmp_path))])
    return path


def test_offline_pairs_split_and_reembed(kb: Path, tmp_path: Path) -> None:
    pairs_path = tmp_path / "pairs.jsonl"
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("Router Security\n")
    args = ["--kb", str(kb), "finetune", "dataset", "--out", str(pairs_path), "--source", "ict,heading"]
    out = run([*args, "--exclude", str(exclude), "--json"])
    report = json.loads(out.stdout)
    assert report["by_source"]["ict"] > 0 and report["by_source"]["heading"] == 5  # one excluded
    pairs = load_pairs(pairs_path)
    assert all(p.query != "Router Security" for p in pairs)
    assert {p.query for p in pairs if p.source == "heading"} == set(SECTIONS) - {"Router Security"}

    split_dir = tmp_path / "split"
    out = run(["finetune", "split", "--pairs", str(pairs_path), "--out-dir", str(split_dir), "--test-ratio", "0.34"])
    assert re.search(r"shared: 0 questions, 0 documents", out.output)
    train, test = load_pairs(split_dir / "train.jsonl"), load_pairs(split_dir / "test.jsonl")
    assert train and test and len(train) + len(test) == len(pairs)
    assert leaks(train, test) == {"questions": set(), "documents": set()}
    assert json.loads((split_dir / "split.json").read_text())["leaks"] == {"questions": 0, "documents": 0}

    out = run(["--kb", str(kb), "reembed", "--embedder", "onnx-fp32"])
    assert "onnx-int8-v2 -> all-MiniLM-L6-v2@onnx-fp32-v2" in out.output
    stats = json.loads(run(["--kb", str(kb), "stats", "--json"]).stdout)
    assert stats["embedding_model"] == "all-MiniLM-L6-v2@onnx-fp32-v2" and stats["embedder"] == "onnx-fp32"
    assert "waggle" in run(["--kb", str(kb), "search", "how do bees show where flowers are"]).output
    out = run(["--kb", str(kb), "reembed", "--embedder", "onnx-fp32"])
    assert "nothing to do" in out.output


def test_labelled_and_bad_inputs(kb: Path, tmp_path: Path) -> None:
    squad = tmp_path / "squad.json"
    squad.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "title": "Bees",
                        "paragraphs": [
                            {
                                "context": "Worker bees dance to show nest mates where flowers are.",
                                "qas": [{"id": "q1", "question": "Why do bees dance?", "answers": []}],
                            }
                        ],
                    }
                ]
            }
        )
    )
    out = tmp_path / "labelled.jsonl"
    result = run(
        ["--kb", str(kb), "finetune", "dataset", "--out", str(out), "--labelled", str(squad), "--format", "squad"]
    )
    assert "labelled 1" in result.output
    bad = run(["finetune", "dataset", "--out", str(out), "--source", "ict,gpt"], ok=False)
    assert bad.exit_code == 2 and "choose from ict, heading, link, llm" in bad.output
    bad = run(["finetune", "dataset", "--out", str(out), "--labelled", str(squad)], ok=False)
    assert "--labelled needs --format" in bad.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "x"}\n')
    bad = run(["finetune", "split", "--pairs", str(broken), "--out-dir", str(tmp_path / "s")], ok=False)
    assert bad.exit_code == 1 and "broken.jsonl:1: unknown field(s) ['question']" in bad.output


def scripted(messages: list[dict[str, Any]]) -> str:
    """Replies as an LLM would: questions, cited answers, judge scores."""
    system = messages[0]["content"]
    user = messages[-1]["content"]
    if system.startswith("You write questions"):
        topic = re.search(r"## ([A-Za-z ]+)", user)
        return f"What does the guide say about {topic.group(1).lower() if topic else 'this topic'}?"
    if system.startswith("You answer questions"):
        if "(no passages were found)" in user:
            return "I don't know from the given sources."
        return "The guide explains it in detail [1]."
    if "grade answers" in system:
        return "Close to the reference.\n<score>4</score>"
    return "Fine.\n<score>1</score>"


def test_the_llm_pipeline_over_loopback(
    kb: Path, tmp_path: Path, start_openai_server: Callable[..., FakeOpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # with no LLM configured, the LLM steps say what they need
    for name in ("KVGRAPH_LLM_BASE_URL", "OPENAI_BASE_URL", "KVGRAPH_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    pairs_path = tmp_path / "qa.jsonl"
    pairs_path.write_text('{"query": "q?", "answer": "a."}\n')
    bad = run(["--kb", str(kb), "finetune", "eval", "--test", str(pairs_path), "--model", "ft:x"], ok=False)
    assert bad.exit_code == 1 and "KVGRAPH_LLM_BASE_URL" in bad.output and "finetune eval" in bad.output
    bad = run(["--kb", str(kb), "finetune", "dataset", "--source", "llm", "--out", str(pairs_path)], ok=False)
    assert bad.exit_code == 1 and "KVGRAPH_LLM_BASE_URL" in bad.output

    server = start_openai_server(reply=scripted, job_running_polls=1)
    monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
    args = ["--kb", str(kb), "finetune", "dataset", "--source", "llm", "--out", str(pairs_path), "--per-node", "1"]
    report = json.loads(run([*args, "--json"]).stdout)
    assert report["by_source"] == {"llm": 6} and report["llm"]["answers_empty"] == 0
    assert report["llm"]["answer_requests"] == 6 and report["llm"]["answer_tokens"] > 0
    pairs = load_pairs(pairs_path)
    assert all(p.answer == "The guide explains it in detail [1]." and p.positive and p.doc_id for p in pairs)
    asked = len(server.requests_to("/v1/chat/completions"))
    again = json.loads(run([*args, "--json"]).stdout)  # everything from the caches
    assert again["llm"]["answers_cached"] == 6 and len(server.requests_to("/v1/chat/completions")) == asked

    split_dir = tmp_path / "split"
    run(["finetune", "split", "--pairs", str(pairs_path), "--out-dir", str(split_dir), "--test-ratio", "0.34"])
    examples = tmp_path / "examples.jsonl"
    out = run(["--kb", str(kb), "finetune", "augment", "--pairs", str(split_dir / "train.jsonl"), "--out",
               str(examples), "-k", "2", "--no-context-ratio", "1", "--mode", "hybrid", "--json"])  # fmt: skip
    assert json.loads(out.stdout)["examples"] == {"retrieved": 4, "no-context": 4}
    first = json.loads(examples.read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert "[2]" in first["messages"][1]["content"]

    openai_file = tmp_path / "openai.jsonl"
    out = run(["finetune", "export", "--examples", str(examples), "--out", str(openai_file), "--max-tokens", "200"])
    assert "dropped" in out.output and "at least 10 examples" in out.output
    dpo = tmp_path / "dpo.jsonl"
    out = run(["--kb", str(kb), "finetune", "export", "--examples", str(examples), "--out", str(dpo), "--format",
               "dpo", "--rejected", "base", "--json"])  # fmt: skip
    report = json.loads(out.stdout)  # the base model agrees with the chosen answer except without context
    assert report["written"] == 4 and report["dropped_by_reason"] == {"rejected answer equals the chosen one": 4}
    rows = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert {r["rejected"][0]["content"] for r in rows} == {"I don't know from the given sources."}

    record = tmp_path / "job.json"
    out = run(["finetune", "train", "--backend", "openai", "--train", str(openai_file), "--model", "test-model",
               "--suffix", "kb", "--record", str(record), "--poll", "0"])  # fmt: skip
    model = json.loads(record.read_text())["fine_tuned_model"]
    assert model.startswith("ft:test-model:kvgraph:kb:") and f"fine-tuned model: {model}" in out.output

    evaluation = tmp_path / "eval"
    out = run(["--kb", str(kb), "finetune", "eval", "--test", str(split_dir / "test.jsonl"), "--model", model,
               "--out", str(evaluation), "--json"])  # fmt: skip
    envelope = {"kvgraph", "schema", "command"}  # the CLI's JSON envelope, beside the report's keys
    means = {k: v for k, v in json.loads(out.stdout).items() if k not in envelope}
    assert set(means) == {"base (test-model)", f"fine-tuned ({model})"}
    for m in means.values():
        assert m["correctness"] == 4.0 and 0 < m["semantic_similarity"] <= 1.0
    saved = json.loads((evaluation / "finetune_eval.json").read_text())
    assert len(saved["rows"][f"fine-tuned ({model})"]) == len(load_pairs(split_dir / "test.jsonl"))
    used = {r.body["model"] for r in server.requests_to("/v1/chat/completions")}
    assert model in used  # the fine-tuned model answered through the same pipeline


@pytest.mark.slow  # loads torch: fine-tunes for two steps, then switches the knowledge base to the result
def test_embedder_command_then_reembed(kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVGRAPH_CACHE_DIR", str(tmp_path / "cache"))  # the new model's ONNX files stay in the test
    pairs_path = tmp_path / "pairs.jsonl"
    run(["--kb", str(kb), "finetune", "dataset", "--out", str(pairs_path), "--source", "ict,heading"])
    model = tmp_path / "minilm-guides"
    out = run(["--kb", str(kb), "finetune", "embedder", "--pairs", str(pairs_path), "--out", str(model),
               "--max-steps", "2", "--batch-size", "4", "--hard-negatives"])  # fmt: skip
    assert "hard negatives:" in out.output and f"reembed --embedder {model}" in out.output
    card = json.loads((model / "kvgraph_finetune.json").read_text())
    assert card["steps"] == 2 and card["data"]["train"]["with_negative"] > 0
    out = run(["--kb", str(kb), "reembed", "--embedder", str(model), "--json"])
    report = json.loads(out.stdout)
    assert report["new_model"].startswith(f"minilm-guides-{card['weights_sha256'][:8]}@onnx-int8")
    assert report["embedder"] == f"onnx-int8:{model.resolve()}"
    assert "waggle" in run(["--kb", str(kb), "search", "bees dance"]).output
