"""Graph benchmark: Cypher latencies and knowledge-vector-graph retrieval on a generated graph.

Data: ``--nodes`` (100k) :Item nodes {id, category, status, score} and ``--edges`` (1M) :LINK
relationships with a skewed out-degree (a few hubs, like services everyone depends on),
loaded with the engine's own bulk ``COPY`` (the load is not what this measures).

Competitors, measured in this process on the same database files:

* Cypher: kvgraph's ``LadybugGraphStore.query`` (read-only guard, timeout, plain-Python rows; in
  this process, ``sandbox=False``: bench/cypher_sandbox.py measures the sandbox process)
  against the raw ``ladybug`` connection, and against ``kuzu`` 0.11.3 when installed.
  Queries: a filtered count, a 1-hop join with GROUP BY, and ``*1..3`` paths from one seed.
* Knowledge-vector-graph retrieval over a :class:`~kvgraph.docgraph.build.DocGraph` of the same
  size (chunks and entities, MENTIONS/SIMILAR/NEXT edges): kvgraph's retriever (bounded
  3-hop expansion + personalized PageRank on the subgraph), the same walk over the whole graph,
  and networkx's personalized ``pagerank``.

Run: ``.venv/bin/python bench/graph.py [--nodes 100000 --edges 1000000] [--json bench/out/graph.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import fmt, table

STATUSES = ["open", "in progress", "completed"]
QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "filtered count": (
        "MATCH (n:Item) WHERE n.status = $s AND n.category = $c RETURN count(*)",
        {"s": "open", "c": 7},
    ),
    "1-hop group-by": (
        "MATCH (a:Item)-[:LINK]->(b:Item) WHERE a.category = $c RETURN b.status AS status, count(*) AS n",
        {"c": 7},
    ),
    "*1..3 paths from one seed": (
        "MATCH (a:Item {id: $id})-[:LINK*1..3]->(b:Item) RETURN count(DISTINCT b)",
        {"id": 1234},
    ),
}


def generate(n_nodes: int, n_edges: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Edge endpoints with a Zipf-like destination skew (hubs) and uniform sources."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n_nodes, n_edges)
    ranks = np.minimum(rng.zipf(1.3, n_edges), n_nodes) - 1
    perm = rng.permutation(n_nodes)
    dst = perm[ranks]
    keep = src != dst
    return src[keep], dst[keep]


def write_csvs(tmp: Path, n_nodes: int, src: np.ndarray, dst: np.ndarray) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    nodes_csv, edges_csv = tmp / "items.csv", tmp / "links.csv"
    cats = rng.integers(0, 100, n_nodes)
    stats = rng.integers(0, 3, n_nodes)
    scores = rng.random(n_nodes)
    with open(nodes_csv, "w") as f:
        for i in range(n_nodes):
            f.write(f'{i},{cats[i]},"{STATUSES[stats[i]]}",{scores[i]:.4f}\n')
    np.savetxt(edges_csv, np.stack([src, dst], axis=1), fmt="%d", delimiter=",")
    return nodes_csv, edges_csv


def load(module: Any, db_dir: Path, nodes_csv: Path, edges_csv: Path) -> float:
    t0 = time.perf_counter()
    db = module.Database(str(db_dir))
    conn = module.Connection(db)
    conn.execute("CREATE NODE TABLE Item(id INT64, category INT64, status STRING, score DOUBLE, PRIMARY KEY(id))")
    conn.execute("CREATE REL TABLE LINK(FROM Item TO Item)")
    conn.execute(f"COPY Item FROM '{nodes_csv}' (HEADER=false)")
    conn.execute(f"COPY LINK FROM '{edges_csv}' (HEADER=false)")
    conn.close()
    db.close()
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    fn()  # warm caches
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))], out


def bench_cypher(tmp: Path, n_nodes: int, src: np.ndarray, dst: np.ndarray, reps: int) -> list[dict[str, Any]]:
    import ladybug

    from kvgraph.graphdb.ladybug import DB_FILE, LadybugGraphStore

    nodes_csv, edges_csv = write_csvs(tmp, n_nodes, src, dst)
    lb_dir = tmp / "ladybug"
    lb_dir.mkdir()
    load_s = load(ladybug, lb_dir / DB_FILE, nodes_csv, edges_csv)
    print(f"ladybug bulk load: {load_s:.1f} s", file=sys.stderr)
    engines: dict[str, Callable[[str, dict[str, Any]], Any]] = {}
    # in-process, as the raw engine runs: the sandbox process's cost is bench/cypher_sandbox.py's subject
    store = LadybugGraphStore.open(lb_dir, read_only=True, sandbox=False)
    engines["kvgraph (LadybugGraphStore)"] = lambda q, p: store.query(q, p, timeout_s=60).rows
    raw_db = ladybug.Database(str(lb_dir / DB_FILE), read_only=True)
    raw = ladybug.Connection(raw_db)
    engines["ladybug (raw)"] = lambda q, p: raw.execute(q, p).get_all()
    rows = []
    for name, (cypher, params) in QUERIES.items():
        results = {}
        for engine, run in engines.items():
            p50, p99, out = timed(lambda run=run, c=cypher, p=params: run(c, p), reps)
            results[engine] = {"p50_ms": p50, "p99_ms": p99, "rows": len(out)}
        rows.append({"query": name, "cypher": cypher, **results})
    store.close()
    # kuzu cannot be imported next to ladybug (they register the same native types), so it runs
    # in a child process on the same CSV files, at the same time, on the same machine.
    child = subprocess.run(
        [sys.executable, __file__, "--kuzu-child", str(tmp), "--reps", str(reps)], capture_output=True, text=True
    )
    if child.returncode == 0:
        for row, res in zip(rows, json.loads(child.stdout)):
            row["kuzu 0.11.3 (raw, child process)"] = res
    else:
        print(f"kuzu skipped: {child.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return rows


def kuzu_child(tmp: Path, reps: int) -> None:
    import kuzu

    kz_dir = tmp / "kuzu"
    print(f"kuzu bulk load: {load(kuzu, kz_dir, tmp / 'items.csv', tmp / 'links.csv'):.1f} s", file=sys.stderr)
    conn = kuzu.Connection(kuzu.Database(str(kz_dir), read_only=True))
    out = []
    for cypher, params in QUERIES.values():
        p50, p99, res = timed(lambda c=cypher, p=params: conn.execute(c, p).get_all(), reps)
        out.append({"p50_ms": p50, "p99_ms": p99, "rows": len(res)})
    print(json.dumps(out))


def doc_graph(n_nodes: int, n_edges: int, seed: int = 0) -> Any:
    """A DocGraph of the requested size: 60% chunks (NEXT chains), 40% entities, the rest MENTIONS/SIMILAR."""
    from kvgraph.docgraph.build import CHUNK, EDGE_TYPES, ENTITY, DocGraph

    rng = np.random.default_rng(seed)
    n_chunks = int(n_nodes * 0.6)
    n_ent = n_nodes - n_chunks
    keys = [f"chunk-{i}" for i in range(n_chunks)] + [f"entity:e{i}" for i in range(n_ent)]
    kinds = [CHUNK] * n_chunks + [ENTITY] * n_ent
    nxt_src = np.arange(n_chunks - 1)
    n_similar = (n_edges - nxt_src.size) // 4
    n_mentions = n_edges - nxt_src.size - n_similar
    men_src = rng.integers(0, n_chunks, n_mentions)
    men_dst = n_chunks + np.minimum(rng.zipf(1.5, n_mentions), n_ent) - 1  # popular entities are hubs
    sim_src = rng.integers(0, n_chunks, n_similar)
    sim_dst = rng.integers(0, n_chunks, n_similar)
    src = np.concatenate([nxt_src, men_src, sim_src]).astype(np.int64)
    dst = np.concatenate([nxt_src + 1, men_dst, sim_dst]).astype(np.int64)
    etype = np.concatenate(
        [
            np.full(nxt_src.size, EDGE_TYPES.index("NEXT")),
            np.full(n_mentions, EDGE_TYPES.index("MENTIONS")),
            np.full(n_similar, EDGE_TYPES.index("SIMILAR")),
        ]
    ).astype(np.int8)
    weight = np.ones(src.size, dtype=np.float32)
    return DocGraph(keys, kinds, list(keys), src, dst, etype, weight)


class SeedRetriever:
    """A base retriever that returns fixed random chunks: isolates the graph stage's cost."""

    def __init__(self, n_chunks: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.n_chunks = n_chunks

    def retrieve(self, query: str, k: int) -> list[Any]:
        from kvgraph.schema import Node, NodeWithScore

        ids = self.rng.choice(self.n_chunks, size=k, replace=False)
        return [NodeWithScore(Node(id=f"chunk-{i}", text=""), 1.0 - r / k) for r, i in enumerate(ids)]


class ScipyCsr:
    """scipy.sparse behind the few operations the walk uses on kvgraph's numpy ``Csr``.

    kvgraph dropped scipy (143 MB installed, issue 16); this runs the same walk on it, to show
    what that cost (only when scipy happens to be installed).
    """

    def __init__(self, matrix: Any) -> None:
        self.m = matrix.tocsr()
        self.indptr, self.indices, self.data, self.shape = self.m.indptr, self.m.indices, self.m.data, self.m.shape

    @property
    def nnz(self) -> int:
        return int(self.m.nnz)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr))

    def row_sums(self) -> np.ndarray:
        return np.asarray(self.m.sum(axis=1)).ravel()

    def scale_rows(self, factors: np.ndarray) -> ScipyCsr:
        import scipy.sparse as sp

        return ScipyCsr(sp.diags(factors) @ self.m)

    def transpose(self) -> ScipyCsr:
        return ScipyCsr(self.m.T)

    def submatrix(self, nodes: np.ndarray) -> ScipyCsr:
        return ScipyCsr(self.m[nodes][:, nodes])

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.m @ x)


def scipy_rows(graph: Any, n_chunks: int, reps: int) -> list[dict[str, Any]]:
    """The default and whole-graph walks again with scipy.sparse matrices, and the matrix steps alone."""
    try:
        import scipy.sparse as sp
    except ImportError:
        print("scipy not installed: no scipy rows", file=sys.stderr)
        return []
    from kvgraph.docgraph.csr import Csr
    from kvgraph.docgraph.ppr import transition_matrix
    from kvgraph.retrieve.graph import KnowledgeGraphRetriever

    rows = []
    a = graph.adjacency()
    src, dst = a.row_ids(), a.indices
    steps: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "build the adjacency from edges",
            lambda: Csr.from_edges(src, dst, a.data, a.shape),
            lambda: sp.csr_matrix((a.data, (src, dst)), shape=a.shape),
        ),
        ("transition matrix (whole graph)", lambda: transition_matrix(a), lambda: transition_matrix(ScipyCsr(sp_a))),
    ]
    sp_a = sp.csr_matrix((a.data, (src, dst)), shape=a.shape)
    x = np.random.default_rng(0).random(a.shape[0])
    steps.append(("one matrix-vector product (whole graph)", lambda: a @ x, lambda: sp_a @ x))
    size = min(20_000, a.shape[0] // 5)  # (small graphs: the bench's own smoke test)
    sub = np.random.default_rng(1).choice(a.shape[0], size=size, replace=False)
    steps.append((f"submatrix of {size:,} nodes", lambda: a.submatrix(sub), lambda: sp_a[sub][:, sub]))
    for label, ours, theirs in steps:
        p50, _, _ = timed(ours, max(3, reps // 10))
        sp50, _, _ = timed(theirs, max(3, reps // 10))
        rows.append({"retriever": f"step: {label}", "p50_ms": p50, "scipy_p50_ms": sp50, "setup_s": 0.0, "p99_ms": p50})
    for label, hops, bounds in (
        ("scipy.sparse: KVG retriever, 3 hops, default bounds", 3, {}),
        ("scipy.sparse: KVG retriever, whole graph", None, {"max_edges": None}),
    ):
        retriever = KnowledgeGraphRetriever(SeedRetriever(n_chunks), graph, hops=hops, **bounds)
        retriever.adjacency = ScipyCsr(sp_a)  # type: ignore[assignment]
        if hops is None:
            retriever._full = transition_matrix(retriever.adjacency)  # type: ignore[arg-type]
        p50, p99, _ = timed(lambda r=retriever: r.retrieve("query", 10), reps)
        rows.append({"retriever": label, "p50_ms": p50, "p99_ms": p99, "setup_s": 0.0})
    return rows


def step_cells(r: dict[str, Any]) -> list[str]:
    ours, theirs = r["p50_ms"], r["scipy_p50_ms"]
    return [r["retriever"].removeprefix("step: "), fmt(ours, 2), fmt(theirs, 2), fmt(ours / theirs, 2)]


NETWORKX_MAX_NODES = 200_000


def bench_kvg(n_nodes: int, n_edges: int, reps: int) -> list[dict[str, Any]]:
    import networkx as nx

    from kvgraph.retrieve.graph import KnowledgeGraphRetriever

    t0 = time.perf_counter()
    graph = doc_graph(n_nodes, n_edges)
    build_s = time.perf_counter() - t0
    n_chunks = graph.count("chunk")
    rows = []
    bounded = "kvgraph KVG retriever, 3 hops, <= 5,000 nodes / 50,000 edges read (default)"
    for label, hops, bounds in (
        (bounded, 3, {}),
        ("kvgraph KVG retriever, 3 hops, no work bound", 3, {"max_nodes": None, "max_edges": None}),
        ("kvgraph KVG retriever, whole graph", None, {"max_edges": None}),
    ):
        t0 = time.perf_counter()
        retriever = KnowledgeGraphRetriever(SeedRetriever(n_chunks), graph, hops=hops, **bounds)
        setup_s = time.perf_counter() - t0
        p50, p99, _ = timed(lambda r=retriever: r.retrieve("query", 10), reps)
        rows.append({"retriever": label, "p50_ms": p50, "p99_ms": p99, "setup_s": setup_s})
    rows += scipy_rows(graph, n_chunks, reps)
    if n_nodes > NETWORKX_MAX_NODES:
        print(f"networkx skipped above {NETWORKX_MAX_NODES:,} nodes (seconds per walk)", file=sys.stderr)
        print(f"DocGraph generation: {build_s:.1f} s", file=sys.stderr)
        return rows
    # networkx: the same personalized walk, whole graph (what a NetworkX-based pipeline would run)
    t0 = time.perf_counter()
    g = nx.Graph()
    g.add_nodes_from(range(graph.n_nodes))
    g.add_edges_from(zip(graph.src.tolist(), graph.dst.tolist()))
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(2)

    def nx_walk() -> Any:
        seeds = {int(i): 1.0 for i in rng.choice(n_chunks, size=5, replace=False)}
        pr = nx.pagerank(g, alpha=0.5, personalization=seeds, tol=1e-6)
        return sorted(pr, key=pr.__getitem__, reverse=True)[:10]

    p50, p99, _ = timed(nx_walk, max(3, reps // 10))
    rows.append({"retriever": "networkx personalized pagerank", "p50_ms": p50, "p99_ms": p99, "setup_s": setup_s})
    print(f"DocGraph generation: {build_s:.1f} s", file=sys.stderr)
    return rows


def scale_documents(n: int) -> tuple[list[Any], list[str]]:
    """About ``n`` one-chunk documents and questions: HotpotQA's 994 passages, then SQuAD dev sentences.

    The HotpotQA passages keep the multi-hop material the graph is for; SQuAD's paragraphs are cut
    into single sentences (titled with their article) to reach 10k chunks from the shared datasets.
    """
    import re

    from kvgraph.eval.datasets import read_hotpotqa_subset, read_squad_dev
    from kvgraph.schema import Document

    hotpot, squad = read_hotpotqa_subset(), read_squad_dev()
    docs = [Document(id=f"h:{p.id}", text=p.full_text, metadata={"title": p.title}) for p in hotpot.passages][:n]
    for p in squad.passages:
        for j, sentence in enumerate(re.split(r"(?<=[.!?])\s+", p.text)):
            if len(docs) >= n:
                break
            if len(sentence) > 20:
                docs.append(Document(id=f"s:{p.id}:{j}", text=sentence, metadata={"title": p.title}))
    questions = [q.text for q in hotpot.queries] + [q.text for q in squad.queries[:100]]
    if len(docs) < n:  # the shared datasets hold about 11k such chunks: generated ones make up the rest
        docs += synthetic_documents(n - len(docs))
    return docs, questions


_SYLLABLES = [
    "ka",
    "lo",
    "mer",
    "vin",
    "tas",
    "el",
    "dor",
    "rin",
    "sa",
    "tu",
    "bel",
    "gar",
    "no",
    "vi",
    "ran",
    "tho",
    "ma",
    "ke",
    "lis",
    "por",
    "wen",
    "di",
    "ost",
    "ar",
    "hul",
    "fen",
    "ga",
    "mi",
    "rod",
    "sel",
    "un",
    "ve",
    "bra",
    "cor",
    "da",
    "esk",
    "fal",
    "gri",
    "hal",
    "ith",
    "jor",
    "kel",
    "lun",
    "mar",
    "nes",
]
_ORG_KINDS = [
    "Press",
    "Institute",
    "Company",
    "Museum",
    "Observatory",
    "Railway",
    "Bank",
    "Guild",
    "Library",
    "Foundry",
]
_TEMPLATES = (
    "{p} founded the {o} in {l} in {y}.",
    "The {o} moved its archive from {l} to {l2} in {y}.",
    "{p} studied at the {o} under {p2}.",
    "{p} was born in {l} in {y} and later worked for the {o}.",
    "In {y}, the {o} published a survey of {l} written by {p}.",
    "{l} lies on the {r} river, north of {l2}.",
    "{p} married {p2} in {l}; both taught at the {o}.",
    "The {o} of {l} was bought by the {o2} in {y}.",
)


def synthetic_documents(n: int, seed: int = 0) -> list[Any]:
    """``n`` generated one-chunk documents of 2-3 sentences about made-up people, places and organisations.

    Only to reach 100k chunks for the scale figures (costs, not quality): real sentences embedded by
    the real model, with proper-noun entities that the document graph extracts and links.
    """
    from kvgraph.schema import Document

    rng = np.random.default_rng(seed)

    def names(count: int, parts: int) -> list[str]:
        out: set[str] = set()
        while len(out) < count:
            picks = rng.integers(0, len(_SYLLABLES), (count, parts))
            out.update("".join(_SYLLABLES[j] for j in row).capitalize() for row in picks.tolist())
        return sorted(out)[:count]

    firsts, lasts = names(400, 2), names(6_000, 3)
    places, rivers = names(5_000, 3), names(500, 2)
    orgs = [f"{a} {_ORG_KINDS[i % len(_ORG_KINDS)]}" for i, a in enumerate(names(6_000, 3))]

    def pick(values: list[str]) -> str:
        return values[int(rng.integers(len(values)))]

    docs = []
    for i in range(n):
        fill = {
            "p": f"{pick(firsts)} {pick(lasts)}",
            "p2": f"{pick(firsts)} {pick(lasts)}",
            "o": pick(orgs),
            "o2": pick(orgs),
            "l": pick(places),
            "l2": pick(places),
            "r": pick(rivers),
            "y": str(int(rng.integers(1700, 2000))),
        }
        picks = rng.choice(len(_TEMPLATES), size=int(rng.integers(2, 4)), replace=False)
        text = " ".join(_TEMPLATES[t].format(**fill) for t in picks)
        docs.append(Document(id=f"g:{i}", text=text, metadata={"title": fill["o"]}))
    return docs


def scale_kb(path: Path, n: int) -> Path:
    """A knowledge base of about ``n`` chunks at ``path`` (reused when it exists; embeddings are cached)."""
    from kvgraph.kb import KnowledgeBase

    docs, _ = scale_documents(n)
    with KnowledgeBase.open(path, expand_neighbors=False) as kb:
        if kb.store.count() < len(docs) if (path / "store").exists() else True:
            kb.add_documents(docs)
    return path


def interleaved_queries(runs: dict[str, Callable[[str], Any]], questions: list[str]) -> dict[str, dict[str, float]]:
    """:func:`timed_queries` of several modes, taking turns on each question: load on the shared VM
    drifts over a run, and a mode timed in its own block got its own share of it (graph / dense
    moved by 0.3x between runs measured so)."""
    for run in runs.values():
        run(questions[0])  # warm
    times: dict[str, list[float]] = {name: [] for name in runs}
    for q in questions[1:]:
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(q)
            times[name].append((time.perf_counter() - t0) * 1000)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"p50_ms": statistics.median(ts), "p90_ms": ts[int(0.9 * (len(ts) - 1))]}
    return out


def timed_queries(run: Callable[[str], Any], questions: list[str]) -> dict[str, float]:
    run(questions[0])  # warm
    times = []
    for q in questions[1:]:
        t0 = time.perf_counter()
        run(q)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))]}


EXACT_COMPARE_MAX = 40_000  # rows above which the exact all-pairs comparison of the kNN steps is skipped


def bench_kb_scale(sizes: list[int], work_dir: Path, n_questions: int) -> list[dict[str, Any]]:
    """Graph mode in knowledge bases of ``sizes`` chunks: build (kNN exact vs HNSW), cold and warm queries."""
    from kvgraph.docgraph import cache
    from kvgraph.docgraph.knn import knn_pairs, knn_recall
    from kvgraph.kb import KnowledgeBase

    rows = []
    for n in sizes:
        path = scale_kb(work_dir / f"kb-{n}", n)
        _, questions = scale_documents(n)
        questions = questions[: n_questions + 1]
        row: dict[str, Any] = {"target_chunks": n}
        with KnowledgeBase.open(path, expand_neighbors=False) as kb:
            t0 = time.perf_counter()
            report = kb.graph.build()
            row["build_s"] = time.perf_counter() - t0
            graph = kb.graph.doc_graph()
            row["chunks"], row["entities"] = report["chunks"], report["entities"]
            row["build_timings_s"] = graph.meta["timings"]
            row["knn"] = graph.meta["knn"]
            # The two nearest-neighbour steps, exact (before) and HNSW, on the same vectors.
            nodes = [x for x in kb.store.get(graph.keys[: graph.count("chunk")]) if x is not None]
            chunk_vectors = np.stack([x.embedding_array() for x in nodes])
            for name, vectors, k, threshold in (
                ("similar", chunk_vectors, 5, 0.5),
                ("synonym", graph.name_matrix(), 5, 0.9),
            ):
                assert vectors is not None
                for method in ("exact", "hnsw"):
                    if method == "exact" and len(vectors) > EXACT_COMPARE_MAX:
                        row[f"knn_{name}_exact_s"] = None  # minutes of all-pairs products: sampled recall only
                        continue
                    t0 = time.perf_counter()
                    pairs = knn_pairs(vectors, k, threshold, method)
                    row[f"knn_{name}_{method}_s"] = time.perf_counter() - t0
                    row[f"knn_{name}_{method}_pairs"] = pairs
                approx_pairs = row.pop(f"knn_{name}_hnsw_pairs")
                if f"knn_{name}_exact_pairs" in row:
                    exact = set(zip(*(a.tolist() for a in row.pop(f"knn_{name}_exact_pairs")[:2])))
                    approx = set(zip(*(a.tolist() for a in approx_pairs[:2])))
                    row[f"knn_{name}_recall"] = len(exact & approx) / max(1, len(exact))
                else:
                    row[f"knn_{name}_recall"] = None
                row[f"knn_{name}_sampled_recall"] = knn_recall(vectors, approx_pairs, k, threshold)
            graph_dir = kb.graph.doc_graph_path
            row["disk_total_mb"], row["disk_graph_mb"] = disk_mb(path), disk_mb(graph_dir)
            row["disk_parts_mb"] = {p.name: disk_mb(p) for p in sorted(path.iterdir())}
            row.update(ingest_one_file(kb, path, reps=3))
        row.update(cli_ingest(path, graph_dir, reps=3))  # the writer lock is free again
        # Queries on a read-only handle, as `kvgraph serve` and `search` run them: no embedding cache, so
        # every mode embeds its question (graph mode also the names it does not find by spelling).
        # rerank="none": the modes' own rankings are compared (graph mode never reranks; the default
        # reranker would add the same ~40 ms to dense and hybrid).
        with KnowledgeBase.open(path, read_only=True, expand_neighbors=False, rerank="none") as kb:
            # First BM25 query of a fresh handle: the saved postings are read (nothing embedded).
            t0 = time.perf_counter()
            kb.search(questions[0], 5, mode="sparse")
            row["first_bm25_query_s"] = time.perf_counter() - t0
            kb.search(questions[0], 5, mode="dense")  # load the embedding model
            # First graph query of a process: load the saved graph, derive the adjacency, walk.
            cache.forget()
            t0 = time.perf_counter()
            kb.search(questions[0], 5, mode="graph")
            row["first_graph_query_s"] = time.perf_counter() - t0
            graph = kb.graph.doc_graph()
            modes = ("dense", "hybrid", "graph")
            row.update(interleaved_queries({m: lambda q, m=m: kb.search(q, 5, mode=m) for m in modes}, questions))

            # Before: the retriever set up again for every query, the walk bounded by hops alone, every
            # chunk it reaches read from the store (what graph mode did before issue 17).
            def before(q: str, graph: Any = graph) -> Any:
                graph._derived.clear()  # what the retriever derives, computed again as it was per query
                r = kb.graph.retriever(max_edges=None)
                return r.rank(q, r.base.retrieve(q, r.fetch))[:5]

            row["graph (before)"] = timed_queries(before, questions)
        rows.append(row)
    return rows


def disk_mb(path: Path) -> float:
    """Bytes of the files under ``path`` (or of the file), in MB."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def ingest_one_file(kb: Any, path: Path, reps: int) -> dict[str, Any]:
    """Adding one 3-sentence document: with the document graph (updated), without one, and the update alone."""
    from kvgraph.schema import Document

    run = f"{time.time_ns():x}"  # new text every run: adding what is stored already changes nothing

    def small(i: int) -> Any:
        text = (
            f"Marta Ilven{i} founded the Ilven Press ({run}) in Kelmora in 19{i:02d}. "
            "The press printed the first atlas of the Salt Isles. "
            f"Its archive went to the University of Marrowick in 19{i + 40:02d}."
        )
        return Document(id=f"bench-small-{run}-{i}", text=text, metadata={"title": f"Ilven Press {i}"})

    graph_dir = kb.graph.doc_graph_path
    aside = graph_dir.with_name(graph_dir.name + ".aside")
    with_graph, without, update = [], [], []
    for i in range(reps):
        t0 = time.perf_counter()
        kb.add_documents([small(2 * i)])  # the graph is updated in place
        with_graph.append(time.perf_counter() - t0)
        update.append(kb.graph.doc_graph().meta["update_timings"]["total_s"])
        graph_dir.rename(aside)  # no document graph: nothing to update
        try:
            t0 = time.perf_counter()
            kb.add_documents([small(2 * i + 1)])
            without.append(time.perf_counter() - t0)
        finally:
            aside.rename(graph_dir)
        kb.graph.refresh()  # take in the document added while the graph was away (not timed)
    return {
        "ingest_with_graph_s": statistics.median(with_graph),
        "ingest_without_graph_s": statistics.median(without),
        "graph_update_s": statistics.median(update),
    }


def cli_ingest(path: Path, graph_dir: Path, reps: int) -> dict[str, float]:
    """``kvgraph ingest FILE`` of one 3-sentence file, as a user runs it: a new process each time."""
    kvgraph = Path(sys.executable).with_name("kvgraph")
    aside = graph_dir.with_name(graph_dir.name + ".aside")
    # As installed: Python may cache compiled modules (some sandboxes set PYTHONDONTWRITEBYTECODE,
    # and every run then compiles ~200 modules again: ~0.3 s on both sides of the ratio).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    import kvgraph as package

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(package.__file__).parent)], check=True)
    out: dict[str, list[float]] = {"cli_ingest_with_graph_s": [], "cli_ingest_without_graph_s": []}
    with tempfile.TemporaryDirectory(prefix="kvgraph-bench-ingest-") as tmp:
        for i in range(reps):
            for key in out:
                f = Path(tmp) / f"{key}-{i}.txt"
                f.write_text(
                    f"Runa Oskel{i} mapped the Kelmora coast in 18{i + 10:02d} for the {key[4:8]} survey "
                    f"({time.time_ns():x}). "
                    "Her charts named every reef of the Salt Isles. They were printed in Marrowick.\n"
                )
                away = key == "cli_ingest_without_graph_s"
                if away:
                    graph_dir.rename(aside)
                try:
                    t0 = time.perf_counter()
                    subprocess.run([str(kvgraph), "--kb", str(path), "-q", "ingest", str(f)], check=True, env=env)
                    out[key].append(time.perf_counter() - t0)
                finally:
                    if away:
                        aside.rename(graph_dir)
    from kvgraph.kb import KnowledgeBase

    with KnowledgeBase.open(path, expand_neighbors=False) as kb:
        kb.graph.refresh()  # take in the files ingested while the graph was away
    return {key: statistics.median(times) for key, times in out.items()}


def print_kb_scale(rows: list[dict[str, Any]]) -> None:
    print("\n## Graph mode by knowledge-base size (warm p50 ms, k=5; ratios in one run)\n")
    print(
        table(
            [
                "chunks",
                "entities",
                "dense",
                "hybrid",
                "graph",
                "graph before",
                "graph / dense",
                "before / now",
                "1st graph query s",
                "1st BM25 query s",
            ],
            [
                [
                    f"{r['chunks']:,}",
                    f"{r['entities']:,}",
                    *(fmt(r[m]["p50_ms"], 1) for m in ("dense", "hybrid", "graph", "graph (before)")),
                    fmt(r["graph"]["p50_ms"] / r["dense"]["p50_ms"], 1),
                    fmt(r["graph (before)"]["p50_ms"] / r["graph"]["p50_ms"], 1),
                    fmt(r["first_graph_query_s"], 2),
                    fmt(r["first_bm25_query_s"], 2),
                ]
                for r in rows
            ],
        )
    )
    print("\n## Disk (MB): the knowledge base without its document graph, the graph, the ratio\n")
    print(
        table(
            ["chunks", "without graph", "graph", "with / without", "parts"],
            [
                [
                    f"{r['chunks']:,}",
                    fmt(r["disk_total_mb"] - r["disk_graph_mb"], 1),
                    fmt(r["disk_graph_mb"], 1),
                    fmt(r["disk_total_mb"] / (r["disk_total_mb"] - r["disk_graph_mb"]), 2),
                    ", ".join(f"{k} {v:.1f}" for k, v in r["disk_parts_mb"].items()),
                ]
                for r in rows
            ],
        )
    )
    print("\n## Ingesting one 3-sentence document (seconds, median of 3)\n")
    print(
        table(
            [
                "chunks",
                "in process: without a graph",
                "with (updated)",
                "ratio",
                "update compute",
                "CLI ingest: without a graph",
                "with (updated)",
                "ratio",
                "full build (before: every ingest)",
            ],
            [
                [
                    f"{r['chunks']:,}",
                    fmt(r["ingest_without_graph_s"], 2),
                    fmt(r["ingest_with_graph_s"], 2),
                    fmt(r["ingest_with_graph_s"] / r["ingest_without_graph_s"], 1),
                    fmt(r["graph_update_s"], 2),
                    fmt(r["cli_ingest_without_graph_s"], 2),
                    fmt(r["cli_ingest_with_graph_s"], 2),
                    fmt(r["cli_ingest_with_graph_s"] / r["cli_ingest_without_graph_s"], 1),
                    fmt(r["build_s"], 1),
                ]
                for r in rows
            ],
        )
    )
    print("\n## Graph build: nearest-neighbour steps, exact vs HNSW (seconds) and recall of the HNSW edges\n")
    print(
        table(
            [
                "chunks",
                "build s",
                "SIMILAR exact",
                "SIMILAR hnsw",
                "recall",
                "entity names",
                "SYNONYM exact",
                "SYNONYM hnsw",
                "recall",
            ],
            [
                [
                    f"{r['chunks']:,}",
                    fmt(r["build_s"], 1),
                    fmt(r["knn_similar_exact_s"], 2) if r["knn_similar_exact_s"] is not None else "skipped",
                    fmt(r["knn_similar_hnsw_s"], 2),
                    fmt(r["knn_similar_recall"], 4)
                    if r["knn_similar_recall"] is not None
                    else f"{fmt(r['knn_similar_sampled_recall'], 4)} (sampled)",
                    f"{r['knn']['synonym']['rows']:,}",
                    fmt(r["knn_synonym_exact_s"], 2) if r["knn_synonym_exact_s"] is not None else "skipped",
                    fmt(r["knn_synonym_hnsw_s"], 2),
                    fmt(r["knn_synonym_recall"], 4)
                    if r["knn_synonym_recall"] is not None
                    else f"{fmt(r['knn_synonym_sampled_recall'], 4)} (sampled)",
                ]
                for r in rows
            ],
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--kuzu-child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--kb", default=None, help="graph mode in knowledge bases of these chunk counts, e.g. 1000,10000")
    ap.add_argument("--kb-dir", type=Path, default=Path(tempfile.gettempdir()) / "kvgraph-bench-graph-kb")
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument(
        "--no-cypher", action="store_true", help="only the knowledge-vector-graph walk on the generated graph"
    )
    args = ap.parse_args()
    if args.kuzu_child:
        kuzu_child(args.kuzu_child, args.reps)
        return
    if args.kb:
        kb_rows = bench_kb_scale([int(x) for x in args.kb.split(",")], args.kb_dir, args.questions)
        print_kb_scale(kb_rows)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            out = {"args": {k: str(v) for k, v in vars(args).items()}, "kb_scale": kb_rows}
            args.json.write_text(json.dumps(out, indent=1, default=str))
        return
    src, dst = generate(args.nodes, args.edges)
    cypher: list[dict[str, Any]] = []
    if not args.no_cypher:
        with tempfile.TemporaryDirectory(prefix="kvgraph-bench-graph-") as tmp:
            cypher = bench_cypher(Path(tmp), args.nodes, src, dst, args.reps)
    kvg = bench_kvg(args.nodes, args.edges, args.reps)

    engines = [k for k in cypher[0] if k not in ("query", "cypher")] if cypher else []
    base = "ladybug (raw)"
    if cypher:
        print(f"\n## Cypher on {args.nodes:,} nodes / {src.size:,} edges: p50 ms (p99), ratio to raw ladybug\n")
    rows = []
    for r in cypher:
        cells = [r["query"]]
        for e in engines:
            ratio = r[e]["p50_ms"] / r[base]["p50_ms"]
            cells.append(f"{fmt(r[e]['p50_ms'], 2)} ({fmt(r[e]['p99_ms'], 2)}) {fmt(ratio, 2)}x")
        rows.append(cells)
    if cypher:
        print(table(["query", *engines], rows))
    print(f"\n## Knowledge-vector-graph retrieval on {args.nodes:,} nodes / {args.edges:,} edges (k=10, 5 seeds)\n")
    ref = kvg[0]["p50_ms"]
    steps = [r for r in kvg if "scipy_p50_ms" in r]
    print(
        table(
            ["retriever", "p50 ms", "p99 ms", "setup s", "p50 vs 3-hop"],
            [
                [r["retriever"], *(fmt(r[c], 2) for c in ("p50_ms", "p99_ms", "setup_s")), fmt(r["p50_ms"] / ref, 1)]
                for r in kvg
                if r not in steps
            ],
        )
    )
    if steps:
        print("\n## The sparse-matrix steps: kvgraph's numpy Csr against scipy.sparse (p50 ms)\n")
        print(
            table(
                ["step", "numpy Csr", "scipy.sparse", "Csr / scipy"],
                [step_cells(r) for r in steps],
            )
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args), "cypher": cypher, "kvg": kvg}, default=str))


if __name__ == "__main__":
    main()
