"""Graph benchmark: Cypher latencies and knowledge-vector-graph retrieval on a generated graph.

Data: ``--nodes`` (100k) :Item nodes {id, category, status, score} and ``--edges`` (1M) :LINK
relationships with a skewed out-degree (a few hubs, like services everyone depends on),
loaded with the engine's own bulk ``COPY`` (the load is not what this measures).

Competitors, measured in this process on the same database files:

* Cypher: kvgraph's ``LadybugGraphStore.query`` (read-only guard, timeout, plain-Python rows)
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
    store = LadybugGraphStore.open(lb_dir, read_only=True)
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


def bench_kvg(n_nodes: int, n_edges: int, reps: int) -> list[dict[str, Any]]:
    import networkx as nx

    from kvgraph.retrieve.graph import KnowledgeGraphRetriever

    t0 = time.perf_counter()
    graph = doc_graph(n_nodes, n_edges)
    build_s = time.perf_counter() - t0
    n_chunks = graph.count("chunk")
    rows = []
    for label, hops in (("kvgraph KVG retriever, 3 hops", 3), ("kvgraph KVG retriever, whole graph", None)):
        t0 = time.perf_counter()
        retriever = KnowledgeGraphRetriever(SeedRetriever(n_chunks), graph, hops=hops)
        setup_s = time.perf_counter() - t0
        p50, p99, _ = timed(lambda r=retriever: r.retrieve("query", 10), reps)
        rows.append({"retriever": label, "p50_ms": p50, "p99_ms": p99, "setup_s": setup_s})
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--kuzu-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kuzu_child:
        kuzu_child(args.kuzu_child, args.reps)
        return
    src, dst = generate(args.nodes, args.edges)
    with tempfile.TemporaryDirectory(prefix="kvgraph-bench-graph-") as tmp:
        cypher = bench_cypher(Path(tmp), args.nodes, src, dst, args.reps)
    kvg = bench_kvg(args.nodes, args.edges, args.reps)

    engines = [k for k in cypher[0] if k not in ("query", "cypher")]
    base = "ladybug (raw)"
    print(f"\n## Cypher on {args.nodes:,} nodes / {src.size:,} edges: p50 ms (p99), ratio to raw ladybug\n")
    rows = []
    for r in cypher:
        cells = [r["query"]]
        for e in engines:
            ratio = r[e]["p50_ms"] / r[base]["p50_ms"]
            cells.append(f"{fmt(r[e]['p50_ms'], 2)} ({fmt(r[e]['p99_ms'], 2)}) {fmt(ratio, 2)}x")
        rows.append(cells)
    print(table(["query", *engines], rows))
    print(f"\n## Knowledge-vector-graph retrieval on {args.nodes:,} nodes / {args.edges:,} edges (k=10, 5 seeds)\n")
    ref = kvg[0]["p50_ms"]
    print(
        table(
            ["retriever", "p50 ms", "p99 ms", "setup s", "p50 vs 3-hop"],
            [
                [r["retriever"], *(fmt(r[c], 2) for c in ("p50_ms", "p99_ms", "setup_s")), fmt(r["p50_ms"] / ref, 1)]
                for r in kvg
            ],
        )
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "cypher": cypher, "kvg": kvg}))


if __name__ == "__main__":
    main()
