"""Progress on stderr: shown on a terminal (rich's TTY_COMPATIBLE=1 makes the captured stderr count as one),
silent when piped or with --quiet; the first embedding command says it is preparing the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_support import run

from kbdocs import make_docs

TERMINAL = {"TTY_COMPATIBLE": "1"}


def test_first_ingest_says_it_prepares_the_model_then_shows_files_and_time_left(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    fresh_cache = {"KVGRAPH_CACHE_DIR": str(tmp_path / "cache"), **TERMINAL}
    first = run(["ingest", str(docs)], tmp_path / "kb1", env=fresh_cache)
    assert "preparing the embedding model (once)" in first.stderr
    assert "reading the weights" in first.stderr and "ready" in first.stderr
    assert "ingesting" in first.stderr and "files" in first.stderr and "eta" in first.stderr
    again = run(["ingest", str(docs)], tmp_path / "kb2", env=fresh_cache)  # prepared now: no word of it
    assert "preparing" not in again.stderr and "ingesting" in again.stderr
    assert "4 files ingested" in again.stdout


def test_quiet_and_piped_runs_print_no_progress(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    cache = {"KVGRAPH_CACHE_DIR": str(tmp_path / "cache")}
    piped = run(["ingest", str(docs), "--json"], tmp_path / "kb1", env=cache)  # model prepared here, silently
    assert piped.stderr == "" and json.loads(piped.stdout)["files_ingested"] == 4
    shutil.rmtree(tmp_path / "cache")
    quiet = run(["ingest", str(docs), "--quiet"], tmp_path / "kb2", env={**cache, **TERMINAL})
    assert quiet.stderr == "" and "4 files ingested" in quiet.stdout
    assert (tmp_path / "cache").is_dir()  # it was prepared again, without a word


def test_graph_build_and_vacuum_show_a_spinner(kb: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = kb
    copy = tmp_path / "kb"
    shutil.copytree(path, copy)
    built = run(["graph", "build"], copy, env=TERMINAL)
    assert "building the document graph" in built.stderr and "document graph:" in built.stdout
    vacuumed = run(["store", "vacuum", str(copy / "store")], copy, env=TERMINAL)
    assert "vacuuming" in vacuumed.stderr and "dead rows" in vacuumed.stdout
    assert "building" not in run(["graph", "build"], copy).stderr  # piped: nothing
