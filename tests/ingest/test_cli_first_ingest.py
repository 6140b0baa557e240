"""`kvgraph ingest` as a user runs it: new formats go in, an ingest that takes nothing exits 3, and a
knowledge base that a failed first ingest created is removed again, never one that existed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import format_files as F
import pytest

KVGRAPH = [sys.executable, "-m", "kvgraph.cli"]


def kvgraph(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("KVGRAPH_KB", None)
    return subprocess.run([*KVGRAPH, *args], capture_output=True, text=True, env=env, timeout=180)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def unsupported(tmp_path: Path) -> Path:
    path = tmp_path / "notes.odt"
    path.write_bytes(b"PK\x03\x04 an OpenDocument file")
    return path


def test_a_docx_goes_in_and_is_found(tmp_path: Path) -> None:
    pytest.importorskip("docx")
    kb = tmp_path / "kb"
    run = kvgraph("--kb", str(kb), "ingest", str(F.write_docx(tmp_path / "guide.docx")), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["files_ingested"] == 1
    hits = kvgraph("--kb", str(kb), "search", "when to extract honey", "-k", "1", "--json")
    assert hits.returncode == 0 and "ninety percent" in hits.stdout


def test_nothing_ingested_into_a_new_knowledge_base_leaves_nothing_behind(tmp_path: Path, unsupported: Path) -> None:
    kb = tmp_path / "new" / "nested" / "kb"  # its parents are created by the run too
    run = kvgraph("--kb", str(kb), "ingest", str(unsupported))
    assert run.returncode == 3
    assert "skipped" in run.stderr and "unsupported file type '.odt' (OpenDocument text" in run.stderr
    assert "removed the new, empty knowledge base" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "new").exists()
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a zip")
    assert kvgraph("--kb", str(kb), "ingest", str(broken)).returncode == 3 and not (tmp_path / "new").exists()
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    run = kvgraph("--kb", str(kb), "ingest", str(empty))
    assert run.returncode == 3 and "nothing to ingest" in run.stderr and ".docx" in run.stderr
    assert not (tmp_path / "new").exists()
    missing = kvgraph("--kb", str(kb), "ingest", str(tmp_path / "no-such-folder"))  # an error: status 1
    assert missing.returncode == 1 and "no-such-folder" in missing.stderr and not (tmp_path / "new").exists()


def test_an_empty_directory_given_as_the_knowledge_base_is_emptied_again_not_removed(
    tmp_path: Path, unsupported: Path
) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    assert kvgraph("--kb", str(kb), "ingest", str(unsupported)).returncode == 3
    assert kb.is_dir() and tree(kb) == []


def test_nothing_that_existed_before_is_removed(tmp_path: Path, unsupported: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    F.write_csv(docs / "cities.csv")
    kb = tmp_path / "kb"
    assert kvgraph("--kb", str(kb), "ingest", str(docs)).returncode == 0
    before = tree(kb)
    run = kvgraph("--kb", str(kb), "ingest", str(unsupported))
    assert run.returncode == 3 and "removed" not in run.stderr
    assert tree(kb) == before
    stats = json.loads(kvgraph("--kb", str(kb), "stats", "--json").stdout)
    assert stats["files"] == 1
    # a folder that holds something else is not a knowledge base this run made: nothing in it is removed
    other = tmp_path / "project"
    other.mkdir()
    (other / "README").write_text("mine\n")
    assert kvgraph("--kb", str(other), "ingest", str(unsupported)).returncode == 3
    assert (other / "README").read_text() == "mine\n"
