"""Replacing a saved document graph is atomic for readers, tested with real processes.

A writer process saves two different graphs, A and B, into one directory, one after the other,
as fast as it can. The test SIGKILLs it at random instants and then loads the directory: the
graph must be exactly A or exactly B, never A's arrays with B's nodes. A second test runs a
reader process beside the writer and checks every graph it loads the same way.

``KVGRAPH_CRASH_ROUNDS`` (default 40) sets the number of kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kvgraph.docgraph.build import DocGraph, build_doc_graph, stored_precision
from kvgraph.schema import Node

ROUNDS = int(os.environ.get("KVGRAPH_CRASH_ROUNDS", "40"))

GRAPHS = """
import numpy as np
from kvgraph.docgraph.build import build_doc_graph, stored_precision
from kvgraph.schema import Node

def graph(tag, n):
    nodes = [
        Node(id=f"{tag}{i}", text=f"{tag.upper()} Station {i % 37} meets River {i % 11} near Harbor {i % 5}.",
             ref_doc_id=f"{tag}-doc{i % 9}", relationships={"next": f"{tag}{i + 1}"} if i + 1 < n else {})
        for i in range(n)
    ]
    g = build_doc_graph(nodes)
    # Name vectors too (saved in a file of their own), different for each graph.
    entities = np.flatnonzero(g.kind_array == 2)
    v = np.random.default_rng(n).standard_normal((len(entities), 384)).astype(np.float32)
    g.entity_vectors = stored_precision(v / np.linalg.norm(v, axis=1, keepdims=True))
    g.entity_vector_rows = entities
    return g
"""

WRITER = (
    GRAPHS
    + """
import sys
a, b = graph("a", 1500), graph("b", 1100)
print("ready", flush=True)
i = 0
while True:
    (a if i % 2 else b).save(sys.argv[1])
    i += 1
    print("saved", i, flush=True)
"""
)

READER = (
    GRAPHS
    + """
import json, sys, time
import numpy as np
from kvgraph.docgraph.build import DocGraph
want = {"a": graph("a", 1500), "b": graph("b", 1100)}
seen, bad = {"a": 0, "b": 0}, []
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    g = DocGraph.load(sys.argv[1])  # an error here fails the test: a reader must always find a graph
    w = want[g.keys[0][0]]
    same = g.keys == w.keys and g.names == w.names and all(
        np.array_equal(getattr(g, f), getattr(w, f)) for f in ("src", "dst", "etype", "weight")
    ) and np.array_equal(g.name_matrix(), w.entity_vectors)
    seen[g.keys[0][0]] += 1
    if not same:
        bad.append(g.keys[0])
print(json.dumps({"seen": seen, "n_bad": len(bad)}))
"""
)


def graph(tag: str, n: int) -> DocGraph:
    scope: dict[str, object] = {"build_doc_graph": build_doc_graph, "stored_precision": stored_precision, "Node": Node}
    exec(GRAPHS, scope)  # the same graphs the child processes build
    made = scope["graph"](tag, n)  # type: ignore[operator]
    assert isinstance(made, DocGraph)
    return made


def same(x: DocGraph, y: DocGraph) -> bool:
    return (
        x.keys == y.keys
        and x.names == y.names
        and x.doc_of == y.doc_of
        and all(np.array_equal(getattr(x, f), getattr(y, f)) for f in ("src", "dst", "etype", "weight"))
        and np.array_equal(x.name_matrix(), y.name_matrix())
    )


@pytest.mark.slow
def test_a_killed_save_leaves_the_old_graph_or_the_new_one(tmp_path: Path) -> None:
    a, b = graph("a", 1500), graph("b", 1100)
    d = tmp_path / "doc-graph"
    a.save(d)
    rng = random.Random(7)
    landed = {"A": 0, "B": 0}
    mid_save = 0
    for _ in range(ROUNDS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        mid_save += any(".tmp-" in p.name for p in d.iterdir())
        got = DocGraph.load(d)
        if same(got, a):
            landed["A"] += 1
        else:
            assert same(got, b), "the loaded graph is neither the old nor the new one"
            landed["B"] += 1
    assert landed["A"] and landed["B"], landed
    print(f"kills: {ROUNDS}, graph A {landed['A']}, graph B {landed['B']}, mid-save (temporary files left) {mid_save}")


def test_a_reader_beside_a_writer_never_sees_a_mix(tmp_path: Path) -> None:
    d = tmp_path / "doc-graph"
    graph("a", 1500).save(d)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().startswith("ready")
        reader = subprocess.run(
            [sys.executable, "-c", READER, str(d), "6"], capture_output=True, text=True, timeout=120
        )
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
        if writer.stdout is not None:
            writer.stdout.close()
    assert reader.returncode == 0, reader.stderr
    out = json.loads(reader.stdout)
    assert out["n_bad"] == 0, out
    assert out["seen"].get("a") and out["seen"].get("b"), out  # it did read across many saves
