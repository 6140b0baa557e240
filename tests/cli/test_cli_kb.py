"""The knowledge-base commands, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_support import KVGRAPH, results, run

import kvgraph
from kbdocs import make_docs


def test_search_json_with_filters(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    out = json.loads(run(["search", "wifi channels", "-k", "3", "--json"], path).stdout)
    assert (out["kvgraph"], out["schema"], out["command"]) == (kvgraph.__version__, 1, "search")
    hits = out["results"]
    assert hits[0]["metadata"]["file_name"] == "network.pdf" and hits[0]["metadata"]["page"] == 2
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["source"] == "network.pdf p. 2"
    hits = results(run(["search", "wifi channels", "--filter", "page<2", "--json"], path))
    assert [h["metadata"]["page"] for h in hits] == [1]
    hits = results(run(["search", "wifi", "--filter", "file_type=pdf", "--filter", "page>=2", "--json"], path))
    assert [h["metadata"]["page"] for h in hits] == [2]
    hits = results(run(["search", "tower", "--filter", '{"file_name": {"$in": ["tower.txt"]}}', "--json"], path))
    assert {h["metadata"]["file_name"] for h in hits} == {"tower.txt"}


def test_ask_prints_answer_then_numbered_sources(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    out = run(["--kb", str(path), "ask", "How many eggs can a queen bee lay in a day?"], Path("/nonexistent")).stdout
    answer, _, sources = out.partition("Sources")
    assert "two thousand eggs" in answer and "[1]" in answer
    assert "[1] bees.html" in sources
    data = json.loads(run(["ask", "Which wifi channels do not overlap?", "--json"], path).stdout)
    assert data["mode"] == "extractive"
    assert data["citations"][0]["source"] == "network.pdf p. 2" and data["citations"][0]["page"] == 2


def test_stats_documents_and_human_search(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    st = json.loads(run(["stats", "--json"], path).stdout)
    assert st["files"] == 4 and st["chunks"] >= 5 and st["embedding_model"] == "all-MiniLM-L6-v2@onnx-int8-v2"
    docs = results(run(["documents", "--json"], path))
    assert sorted(Path(d["path"]).name for d in docs) == ["bees.html", "compost.md", "network.pdf", "tower.txt"]
    out = run(["search", "compost turning"], path).stdout
    assert "compost.md > Composting" in out


def test_errors_are_one_line_with_exit_status_1(kb: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = kb
    proc = run(["search", "x", "--filter", "page>>2"], path, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "page>>2" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run(["ask", "anything"], tmp_path / "missing-kb", check=False)
    assert proc.returncode == 1 and "no knowledge base at" in proc.stderr
    proc = run(["ingest", str(tmp_path / "nope")], tmp_path / "kb2", check=False)
    assert proc.returncode == 1 and "nope" in proc.stderr


def test_sync_and_delete(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    kb = tmp_path / "kb"
    run(["ingest", str(docs)], kb)
    (docs / "tower.txt").unlink()
    report = json.loads(run(["sync", "--json"], kb).stdout)
    assert report["files_removed"] == 1 and report["files_ingested"] == 0
    compost = next(d for d in results(run(["documents", "--json"], kb)) if d["path"].endswith("compost.md"))
    out = run(["delete", str(docs / "compost.md")], kb).stdout
    assert f"deleted {compost['n_nodes']} chunks" in out
    st = json.loads(run(["stats", "--json"], kb).stdout)
    assert st["files"] == 2


def test_commands_that_do_not_embed_never_load_the_model(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    code = (
        "import sys; from kvgraph.cli import main\n"
        f"main(['--kb', {str(path)!r}, 'stats', '--json'], standalone_mode=False)\n"
        f"main(['--kb', {str(path)!r}, 'search', 'waggle', '--mode', 'sparse', '--json'], standalone_mode=False)\n"
        "heavy = [m for m in ('onnxruntime', 'torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_ask_with_an_llm_server_streams_the_answer_and_cites_what_it_used(kb: tuple[Path, Path]) -> None:
    from kvgraph.testing.openai_server import FakeOpenAIServer

    path, _ = kb

    def reply(messages: list[dict]) -> str:
        prompt = messages[-1]["content"]
        assert "queen" in prompt and "[1]" in prompt  # the question and numbered context reached the model
        return "A queen can lay up to two thousand eggs per day [1]."

    server = FakeOpenAIServer(reply=reply).start()
    try:
        env = {"KVGRAPH_LLM_BASE_URL": server.base_url, "KVGRAPH_LLM_MODEL": "test-model"}
        full_env = {**os.environ, "KVGRAPH_KB": str(path), **env}
        proc = subprocess.run(
            [*KVGRAPH, "ask", "How many eggs does a queen lay?"], capture_output=True, text=True, env=full_env
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("A queen can lay up to two thousand eggs per day [1].")
        assert "[1] bees.html" in proc.stdout
        chats = server.requests_to("/v1/chat/completions")
        assert len(chats) == 1 and chats[0].body["stream"] is True
        data = json.loads(
            subprocess.run(
                [*KVGRAPH, "ask", "How many eggs does a queen lay?", "--json"],
                capture_output=True,
                text=True,
                env=full_env,
                check=True,
            ).stdout
        )
        assert data["mode"] == "llm" and [c["source"] for c in data["citations"]] == ["bees.html"]
    finally:
        server.stop()


def test_answerer_llm_without_a_server_is_a_clear_error(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    proc = run(["ask", "anything"], path, check=False, env={"KVGRAPH_ANSWERER": "llm"})
    assert proc.returncode == 1 and "KVGRAPH_LLM_BASE_URL" in proc.stderr


def test_init_with_references_then_search_shows_the_way_in(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    sample = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs" / "rosetta-stone.txt"
    (docs / "rosetta-stone.txt").write_text(sample.read_text())
    kb = tmp_path / "kb"
    run(["init", "--references", "chunk"], kb)
    assert 'references = "chunk"' in (kb / "kvgraph.toml").read_text()
    run(["ingest", str(docs)], kb, env={"KVGRAPH_PARENT_SIZE": "300", "KVGRAPH_CHILD_SIZES": "64,128"})
    # a layout given through the environment is saved: the next run without it does not split back
    assert "parent_size = 300" in (kb / "kvgraph.toml").read_text()
    hits = results(run(["search", "Who deciphered the hieroglyphs?", "-k", "2", "--json"], kb))
    assert [h["metadata"]["role"] for h in hits] == ["parent", "parent"]
    assert len(hits[0]["path"]) == 2 and hits[0]["path"][-1] == hits[0]["id"]
    human = run(["search", "Who deciphered the hieroglyphs?", "-k", "1"], kb).stdout
    assert "via child:" in human
    stats = json.loads(run(["stats", "--json"], kb).stdout)
    assert stats["references"] == "chunk" and stats["nodes_by_role"]["child"] > stats["nodes_by_role"]["parent"]
