"""The command line, run as a real subprocess against real stores."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from kvgraph.store import EmbeddedVectorStore


def kvgraph(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvgraph.cli", *args], capture_output=True, text=True, timeout=120)


def make_store(path, n=30, delete=5):
    with EmbeddedVectorStore.open(path, dim=8) as s:
        vecs = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
        s.add_arrays([f"n{i}" for i in range(n)], vecs, texts=[f"text {i}" for i in range(n)])
        s.delete([f"n{i}" for i in range(delete)])


def test_help_lists_commands():
    out = kvgraph("--help")
    assert out.returncode == 0
    assert "store" in out.stdout and "demo" in out.stdout


def test_stats_json_reports_the_store(tmp_path):
    make_store(tmp_path / "kb")
    out = kvgraph("store", "stats", str(tmp_path / "kb"), "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["count"] == 25 and st["dead_rows"] == 5 and st["dim"] == 8 and st["metric"] == "cosine"


def test_stats_human_output(tmp_path):
    make_store(tmp_path / "kb")
    out = kvgraph("store", "stats", str(tmp_path / "kb"))
    assert out.returncode == 0 and "count" in out.stdout and "25" in out.stdout


def test_stats_works_while_a_writer_holds_the_lock(tmp_path):
    make_store(tmp_path / "kb")
    with EmbeddedVectorStore.open(tmp_path / "kb") as s:
        s.add_arrays(["extra"], np.ones((1, 8), np.float32))
        out = kvgraph("store", "stats", str(tmp_path / "kb"), "--json")
        assert json.loads(out.stdout)["count"] == 26


def test_vacuum_then_check(tmp_path):
    make_store(tmp_path / "kb")
    out = kvgraph("store", "vacuum", str(tmp_path / "kb"))
    assert out.returncode == 0 and "removed 5 dead rows" in out.stdout
    out = kvgraph("store", "check", str(tmp_path / "kb"), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["vector_rows"] == 25


def test_check_names_a_damaged_file(tmp_path):
    make_store(tmp_path / "kb")
    vec = next((tmp_path / "kb").glob("vectors-*.f32"))
    data = bytearray(vec.read_bytes())
    data[100] ^= 0xFF
    vec.write_bytes(bytes(data))
    out = kvgraph("store", "check", str(tmp_path / "kb"))
    assert out.returncode == 1
    assert "error:" in out.stderr and vec.name in out.stderr and "Traceback" not in out.stderr


def test_missing_store_is_a_clear_error(tmp_path):
    out = kvgraph("store", "stats", str(tmp_path / "nothing"))
    assert out.returncode == 1 and "no kvgraph store" in out.stderr
