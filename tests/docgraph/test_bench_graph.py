"""bench/graph.py's generated-graph walks run against the current retriever (a small graph, a few seconds).

The bench drives the walk through its own scipy.sparse wrapper when scipy is installed; a change
to what the walk needs from its matrix once broke it unnoticed for a session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_graph_walks_run(tmp_path: Path) -> None:
    out = tmp_path / "graph.json"
    cmd = [sys.executable, str(REPO / "bench" / "graph.py"), "--no-cypher", "--nodes", "3000", "--edges", "20000"]
    done = subprocess.run([*cmd, "--reps", "3", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["kvg"]
    labels = [r["retriever"] for r in rows]
    assert any("(default)" in label for label in labels) and any("whole graph" in label for label in labels)
    assert all(r["p50_ms"] > 0 for r in rows)
