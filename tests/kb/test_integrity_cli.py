"""``kvgraph check``, ``kvgraph repair`` and failures as one line, run as real subprocesses.

The full disk is a real file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) set in the child before
the command runs, placed at many sizes so that the refused write lands in every part of an ingest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kvgraph.kb import KnowledgeBase

ENV = {**os.environ, "KVGRAPH_EMBEDDER": "hashing", "HF_HUB_OFFLINE": "1"}
LIMITED = (
    "import resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "from kvgraph.cli.main import main\n"
    "sys.argv[0] = 'kvgraph'\n"
    "main()\n"
)


def kvgraph(*args: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kvgraph.cli"] if limit is None else [sys.executable, "-c", LIMITED, str(limit)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=180, env=ENV)


def write_docs(root: Path, n: int, words: int = 400) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = " ".join(f"word{(i * 7 + j) % 997} topic{i}" for j in range(words))
        (root / f"doc{i:02d}.txt").write_text(f"Document {i}. {body}.\n")
    return root


def test_check_and_repair_exit_status_and_output(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 3)
    kb = str(tmp_path / "kb")
    assert kvgraph("--kb", kb, "ingest", str(docs)).returncode == 0
    ok = kvgraph("--kb", kb, "check")
    assert ok.returncode == 0 and "all parts intact" in ok.stdout
    (tmp_path / "kb" / "store" / "records.sqlite").write_bytes(b"")
    bad = kvgraph("--kb", kb, "check", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert not report["ok"] and [p["part"] for p in report["parts"] if not p["ok"]] == ["store"]
    refused = kvgraph("--kb", kb, "search", "word3")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "records.sqlite" in refused.stderr
    fixed = kvgraph("--kb", kb, "repair")
    assert fixed.returncode == 0, fixed.stderr
    assert "set aside" in fixed.stdout and "ingested 3 file(s) again" in fixed.stdout
    assert kvgraph("--kb", kb, "check").returncode == 0
    out = json.loads(kvgraph("--kb", kb, "search", "topic2", "--mode", "sparse", "--json").stdout)
    hits = out["results"] if isinstance(out, dict) else out  # the JSON envelope of the CLI's output
    assert hits and "topic2" in hits[0]["text"]


def test_store_check_cross_checks_a_knowledge_bases_registry(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 2)
    kb = tmp_path / "kb"
    assert kvgraph("--kb", str(kb), "ingest", str(docs)).returncode == 0
    with KnowledgeBase.open(kb) as k:
        k.store.delete_ref_doc(next(iter(k.store.doc_counts())))  # chunks vanish behind the registry's back
    out = kvgraph("store", "check", str(kb / "store"))
    assert out.returncode == 1 and "missing" in out.stderr and "doc00.txt" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    """The audit's case: ingest on a nearly full disk. Every refused write is one line; nothing is lost."""
    base_docs = write_docs(tmp_path / "docs", 4)
    base = tmp_path / "base"
    assert kvgraph("--kb", str(base), "ingest", str(base_docs)).returncode == 0
    more = write_docs(tmp_path / "more", 12, words=800)
    biggest = max(p.stat().st_size for p in base.rglob("*") if p.is_file())
    refused = 0
    for extra in (0, 2_000, 20_000, 60_000, 150_000, 400_000):
        kb = tmp_path / f"kb{extra}"
        subprocess.run(["cp", "-a", str(base), str(kb)], check=True)
        run = kvgraph("--kb", str(kb), "ingest", str(more), limit=biggest + extra)
        assert "Traceback" not in run.stderr, run.stderr
        if run.returncode:
            errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "no space left on device" in errors[0], run.stderr
            refused += 1
        check = kvgraph("--kb", str(kb), "check")
        assert check.returncode == 0, check.stdout  # what was committed is intact and consistent
        again = kvgraph("--kb", str(kb), "ingest", str(more), "--json")  # with room again, it completes
        assert again.returncode == 0, again.stderr
        with KnowledgeBase.open(kb, read_only=True) as k:
            assert len(k.registry.all()) == 16 and k.check().ok
    assert refused >= 3


@pytest.mark.parametrize("part", ["registry", "graph"])
def test_damaged_parts_are_one_line_errors(tmp_path: Path, part: str) -> None:
    docs = write_docs(tmp_path / "docs", 2)
    kb = tmp_path / "kb"
    assert kvgraph("--kb", str(kb), "ingest", str(docs)).returncode == 0
    if part == "registry":
        (kb / "documents.sqlite").write_bytes(b"garbage" * 1000)
        for side in ("documents.sqlite-wal", "documents.sqlite-shm"):
            (kb / side).unlink(missing_ok=True)
        run = kvgraph("--kb", str(kb), "sync")
        named = "documents.sqlite"
    else:
        assert kvgraph("--kb", str(kb), "graph", "build").returncode == 0
        (kb / "doc-graph" / "graph.npz").write_bytes(b"PK\x03\x04 truncated")
        run = kvgraph("--kb", str(kb), "search", "topic1", "--mode", "graph")
        named = "doc-graph"
    assert run.returncode == 1 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0] and "repair" in errors[0]
    assert kvgraph("--kb", str(kb), "check").returncode == 1
    assert kvgraph("--kb", str(kb), "repair").returncode == 0
    assert kvgraph("--kb", str(kb), "check").returncode == 0
