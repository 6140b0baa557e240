"""The habits every command shares (docs/cli.md, Conventions), run as real processes: global options after
the command, ``-`` for standard input, the JSON envelope, ``--nl``/``--csv``, unwrapped piped output, exit
statuses, shell completion; and the settings and layout rules of docs/configuration.md."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

from cli_support import KVGRAPH, results, run

import kvgraph
from kbdocs import make_docs
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document


def test_global_options_work_after_the_command(kb: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = kb
    elsewhere = tmp_path / "not-this-kb"
    before = json.loads(run(["--kb", str(path), "stats", "--json"], elsewhere).stdout)
    after = json.loads(run(["stats", "--kb", str(path), "--json"], elsewhere).stdout)
    assert before["files"] == after["files"] == 4 and after["command"] == "stats"
    as_global = json.loads(run(["--json", "stats", "--kb", str(path)], elsewhere).stdout)
    assert as_global["files"] == 4
    for args in (["graph", "--kb", str(path), "schema"], ["graph", "schema", "--kb", str(path)]):
        no_graph = run(args, elsewhere, check=False)  # this knowledge base has no graph: the error names it
        assert no_graph.returncode == 1 and f"{path / 'graph'}: no graph here yet" in no_graph.stderr
    quiet = run(["search", "wifi", "-q", "--kb", str(path), "-k", "1"], elsewhere)
    assert "network.pdf" in quiet.stdout and quiet.stderr == ""
    refused = run(["--json", "delete", "x"], path, check=False)
    assert refused.returncode == 2 and "has no JSON output" in refused.stderr
    assert not elsewhere.exists()  # nothing was created where --kb did not point


def test_dash_reads_the_question_or_query_from_stdin(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    out = run(["ask", "-"], path, stdin="How many eggs can a queen bee lay in a day?\n").stdout
    assert "two thousand eggs" in out and "[1] bees.html" in out
    hits = results(run(["search", "-", "-k", "1", "--json"], path, stdin="wifi channels that do not overlap"))
    assert hits[0]["source"] == "network.pdf p. 2"
    empty = run(["ask", "-"], path, check=False, stdin="  \n")
    assert empty.returncode == 2 and "standard input was empty" in empty.stderr


def test_rows_as_ndjson_and_csv(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    rows = results(run(["search", "compost", "-k", "3", "--json"], path))
    lines = run(["search", "compost", "-k", "3", "--nl"], path).stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in rows]
    table = list(csv.DictReader(io.StringIO(run(["search", "compost", "-k", "3", "--csv"], path).stdout)))
    assert [t["id"] for t in table] == [r["id"] for r in rows]
    assert list(table[0]) == ["rank", "score", "id", "source", "text", "metadata"]
    assert json.loads(table[0]["metadata"])["file_name"] == rows[0]["metadata"]["file_name"]
    docs = list(csv.DictReader(io.StringIO(run(["documents", "--csv"], path).stdout)))
    assert sorted(Path(d["path"]).name for d in docs) == ["bees.html", "compost.md", "network.pdf", "tower.txt"]
    both = run(["search", "compost", "--csv", "--nl"], path, check=False)
    assert both.returncode == 2 and "choose one of" in both.stderr


def test_piped_output_is_not_wrapped_at_80_columns(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    out = run(["search", "which wifi channels do not overlap", "-k", "1"], path, drop=("COLUMNS",)).stdout
    row = next(line for line in out.splitlines() if "network.pdf" in line)
    assert "do not overlap each other." in row and len(row) > 100  # one line per hit, as long as its text


def test_ingest_reads_paths_from_stdin_and_exit_3_when_files_are_skipped(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    kb = tmp_path / "kb"
    listed = "\n".join(str(p) for p in sorted(docs.rglob("*.md")) + sorted(docs.rglob("*.txt"))) + "\n"
    report = json.loads(run(["ingest", "-", "--json"], kb, stdin=listed).stdout)
    assert report["files_ingested"] == 2
    nul = f"{docs / 'sub' / 'bees.html'}\0{docs / 'network.pdf'}\0"
    report = json.loads(run(["ingest", "-", "--null", "--json"], kb, stdin=nul).stdout)
    assert report["files_ingested"] == 2
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    skipped = run(["ingest", str(docs)], kb, check=False)
    assert skipped.returncode == 3 and "skipped" in skipped.stderr and "broken.pdf" in skipped.stderr
    (tmp_path / "empty").mkdir()
    nothing = run(["ingest", str(tmp_path / "empty")], kb, check=False)
    assert nothing.returncode == 3 and "nothing to ingest" in nothing.stderr
    usage = run(["ingest", str(docs), "--no-such-option"], kb, check=False)
    assert usage.returncode == 2


def test_settings_of_the_wrong_type_are_one_line_errors(kb: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = kb
    own = tmp_path / "kb"
    own.mkdir()
    (own / "kvgraph.toml").write_text('top_k = "5"\n')
    (own / "store").mkdir()  # so that a read-only command gets as far as the settings
    proc = run(["search", "x", "--mode", "sparse"], own, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "kvgraph.toml: top_k must be an integer" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(["search", "x", "--mode", "sparse"], path, check=False, env={"KVGRAPH_TOP_K": "five"})
    assert proc.returncode == 1 and "KVGRAPH_TOP_K: top_k must be an integer, got 'five'" in proc.stderr


def test_a_layout_from_the_environment_is_saved_not_silently_reverted(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    kb = tmp_path / "kb"
    run(["ingest", str(docs)], kb)
    assert 'references = "none"' in (kb / "kvgraph.toml").read_text()
    switched = run(["sync", "--json"], kb, env={"KVGRAPH_REFERENCES": "chunk"})
    assert "warning:" in switched.stderr and 'references = "chunk"' in switched.stderr
    assert 'references = "chunk"' in (kb / "kvgraph.toml").read_text()
    again = json.loads(run(["sync", "--json"], kb).stdout)  # no variable now: nothing is split back
    assert again["files_ingested"] == 0 and again["embedded"] == 0
    stats = json.loads(run(["stats", "--json"], kb).stdout)
    assert stats["references"] == "chunk" and stats["nodes_by_role"]["child"] > 0


def test_stats_counts_documents_added_through_the_python_api(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    kb = tmp_path / "kb"
    run(["ingest", str(docs / "tower.txt")], kb)
    with KnowledgeBase.open(kb) as k:
        k.add_documents(
            [Document(id="api-1", text="Lighthouses guide ships at night."), Document(id="api-2", text="Owls hunt.")]
        )
    st = json.loads(run(["stats", "--json"], kb).stdout)
    assert (st["files"], st["documents_from_files"], st["documents_added"], st["documents"]) == (1, 1, 2, 3)
    human = run(["stats"], kb).stdout
    assert "3 (1 from files, 2 added through the API)" in human


def test_every_json_output_has_the_envelope(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    for args, command in ((["stats"], "stats"), (["documents"], "documents"), (["ask", "wifi?"], "ask")):
        out = json.loads(run([*args, "--json"], path).stdout)
        assert (out["kvgraph"], out["schema"], out["command"]) == (kvgraph.__version__, 1, command)
    assert "files" in json.loads(run(["stats", "--json"], path).stdout)  # a report's fields beside the envelope


def test_shell_completion(kb: tuple[Path, Path]) -> None:
    env = {**os.environ, "_KVGRAPH_COMPLETE": "bash_complete", "COMP_WORDS": "kvgraph gra", "COMP_CWORD": "1"}
    proc = subprocess.run(KVGRAPH, capture_output=True, text=True, env=env, timeout=60)
    assert "plain,graph" in proc.stdout.splitlines(), (proc.stdout, proc.stderr)
    env.update(COMP_WORDS="kvgraph search x --mo", COMP_CWORD="3")
    proc = subprocess.run(KVGRAPH, capture_output=True, text=True, env=env, timeout=60)
    assert "plain,--mode" in proc.stdout.splitlines(), (proc.stdout, proc.stderr)
    env.update(_KVGRAPH_COMPLETE="bash_source")
    script = subprocess.run(KVGRAPH, capture_output=True, text=True, env=env, timeout=60).stdout
    assert "_kvgraph_completion" in script and "complete " in script


def test_a_closed_stdout_ends_quietly_with_status_141(kb: tuple[Path, Path]) -> None:
    path, _ = kb
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (| head) is gone before anything is written
    proc = subprocess.Popen(
        [*KVGRAPH, "--kb", str(path), "documents", "--nl"], stdout=write_end, stderr=subprocess.PIPE, text=True
    )
    os.close(write_end)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and "Traceback" not in err and "BrokenPipe" not in err
