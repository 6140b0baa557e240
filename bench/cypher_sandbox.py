"""Cypher sandbox benchmark: what running untrusted reads in a worker process costs, and the audit re-run.

Per-query latency of the same read-only queries on the same database file, in this process:

* ``in-process``: ``LadybugGraphStore.open(..., read_only=True, sandbox=False)`` (guard + engine);
* ``sandboxed``: the default (guard, then the query and its rows over a pipe to the store's
  persistent worker process, which runs it on its own read-only handle).

Graphs: the DevOps graph of the shared datasets (33 nodes) and a generated one (``--nodes`` Items,
``--edges`` LINKs, bulk-loaded as in bench/graph.py). Also timed: starting a worker (the first
query of a store) and reopening its handle after the store wrote.

``--audit`` re-runs the audit of issue 12 (tests/graphdb/cypher_attacks.py) through ``kb.graph.query``
on a writable knowledge base with $HOME pointing at a temporary directory holding an
"installed" extension, and counts per attack class what was refused, what crashed the caller or
left the store unable to answer, and what ran without an error (``silent``); a fingerprint of the
graph, its catalog and every file under the knowledge base and $HOME must not change. A second
table runs the parser, memory and time attacks with the guard's size limits off: the sandbox alone.

Run: ``.venv/bin/python bench/cypher_sandbox.py [--nodes 100000 --edges 1000000 --reps 300] [--audit]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "graphdb"))  # the audit's attacks
from _tables import fmt, table

DEVOPS = Path(os.environ.get("KVGRAPH_DATASETS", "/work/shared/datasets")) / "devops_graph" / "microservices.cypher"

DEVOPS_QUERIES = {
    "point lookup": ("MATCH (m:Microservice {name: $n}) RETURN m.technology", {"n": "OrderService"}),
    "1-hop group-by": (
        "MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team) WHERE t.status = $s RETURN team.name, count(t) AS n",
        {"s": "open"},
    ),
}
SYNTHETIC_QUERIES = {
    "point lookup": ("MATCH (n:Item {id: $id}) RETURN n.status, n.score", {"id": 1234}),
    "filtered count": ("MATCH (n:Item) WHERE n.status = $s AND n.category = $c RETURN count(*)", {"s": "open", "c": 7}),
    "100 rows": ("MATCH (n:Item) WHERE n.category = $c RETURN n.id, n.status LIMIT 100", {"c": 7}),
}


def percentiles(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    fn()  # warm
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def overhead(db_dir: Path, queries: dict[str, tuple[str, dict[str, Any]]], reps: int) -> list[dict[str, Any]]:
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    here = LadybugGraphStore.open(db_dir, read_only=True, sandbox=False)
    boxed = LadybugGraphStore.open(db_dir, read_only=True)
    rows = []
    try:
        for name, (cypher, params) in queries.items():
            # interleaved rounds, so both see the same machine load
            a, b = [], []
            for _ in range(3):
                a.append(percentiles(lambda c=cypher, p=params: here.query(c, p), reps // 3))
                b.append(percentiles(lambda c=cypher, p=params: boxed.query(c, p), reps // 3))
            p50a, p99a = statistics.median(x[0] for x in a), max(x[1] for x in a)
            p50b, p99b = statistics.median(x[0] for x in b), max(x[1] for x in b)
            rows.append(
                {"query": name, "in_p50": p50a, "in_p99": p99a, "sb_p50": p50b, "sb_p99": p99b, "added": p50b - p50a}
            )
    finally:
        here.close()
        boxed.close()
    return rows


def lifecycle(db_dir: Path, reps: int = 5) -> dict[str, float]:
    """Worker start (first query of a store) and handle reopen after a write, in ms (median)."""
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    starts, reopens = [], []
    for _ in range(reps):
        s = LadybugGraphStore.open(db_dir, read_only=True)
        t0 = time.perf_counter()
        s.query("RETURN 1")
        starts.append((time.perf_counter() - t0) * 1000)
        s.close()
    w = LadybugGraphStore.open(db_dir)
    w.query("RETURN 1")
    for i in range(reps):
        w.upsert_nodes("BenchMark", [{"id": i}])
        t0 = time.perf_counter()
        w.query("RETURN 1")
        reopens.append((time.perf_counter() - t0) * 1000)
    w.query("MATCH (n:BenchMark) DETACH DELETE n", read_only=False)
    w.close()
    return {"start_ms": statistics.median(starts), "reopen_ms": statistics.median(reopens)}


def synthetic(tmp: Path, n_nodes: int, n_edges: int) -> Path:
    import ladybug

    from graph import generate, load, write_csvs
    from kvgraph.graphdb.ladybug import DB_FILE

    src, dst = generate(n_nodes, n_edges)
    nodes_csv, edges_csv = write_csvs(tmp, n_nodes, src, dst)
    db_dir = tmp / "synthetic"
    db_dir.mkdir()
    print(f"bulk load: {load(ladybug, db_dir / DB_FILE, nodes_csv, edges_csv):.1f} s", file=sys.stderr)
    return db_dir


def devops(tmp: Path) -> Path | None:
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    if not DEVOPS.is_file():
        print(f"DevOps graph skipped: {DEVOPS} not found", file=sys.stderr)
        return None
    db_dir = tmp / "devops"
    with LadybugGraphStore.open(db_dir) as s:
        s.import_cypher(DEVOPS.read_text(encoding="utf-8"))
    return db_dir


# ---------------------------------------------------------------------- the audit


def run_audit(tmp: Path) -> dict[str, Any]:
    from cypher_attacks import AUDIT, MEMORY, PARSER, PAST_THE_GUARD, TIME, build_graph, fake_home, file_hashes
    from cypher_attacks import graph_state as state

    home = tmp / "home"
    fake_home(home)
    os.environ["HOME"] = str(home)
    os.environ.pop("KVGRAPH_NEO4J_URI", None)
    from kvgraph.errors import KvgraphError
    from kvgraph.graphdb.base import QueryAbortedError, QueryTimeoutError, WriteRejectedError
    from kvgraph.graphdb.guard import CypherLimits
    from kvgraph.graphdb.ladybug import LadybugGraphStore
    from kvgraph.kb import KnowledgeBase

    def tally(
        run: Callable[[Any], Any], fingerprint: Callable[[], Any], answers: Callable[[], bool], attacks: list[Any]
    ):
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        before = fingerprint()
        for a in attacks:
            c = counts[a.kind]
            c["tried"] += 1
            t0 = time.perf_counter()
            try:
                run(a)
                c["silent"] += 1
            except WriteRejectedError:
                c["refused"] += 1
                c["guard"] += 1
            except (QueryAbortedError, QueryTimeoutError):
                c["refused"] += 1
                c["sandbox"] += 1
            except KvgraphError:
                c["refused"] += 1
                c["engine"] += 1
            except Exception:  # anything else reached the caller: count it as a crash of the interface
                c["crashed"] += 1
            c["ms"] = max(c["ms"], int((time.perf_counter() - t0) * 1000))
            try:
                ok = answers()
            except Exception:
                ok = False
            if not ok:
                c["crashed"] += 1
            if fingerprint() != before:
                c["changed"] += 1
                before = fingerprint()
        return {k: dict(v) for k, v in counts.items()}

    kb = KnowledgeBase.open(tmp / "kb")
    build_graph(kb.graph.store)

    def kb_fingerprint() -> Any:
        return file_hashes(tmp / "kb", home), state(kb.graph.store), kb.graph.query("CALL show_tables() RETURN *").rows

    def kb_answers() -> bool:
        return bool(kb.graph.query("MATCH (n) RETURN count(n)").scalar() == 17)

    default = tally(lambda a: kb.graph.query(a.cypher, a.params), kb_fingerprint, kb_answers, [*AUDIT, *PAST_THE_GUARD])
    kb.close()
    # the sandbox alone: size limits off, the statement/clause/function allow-list still on
    off = CypherLimits(max_chars=10**7, max_tokens=10**7, max_depth=10**6, max_terms=10**7, max_size=10**12)
    store = LadybugGraphStore.open(tmp / "kb" / "graph", read_only=True, cypher_limits=off)

    def store_fingerprint() -> Any:
        return file_hashes(tmp / "kb", home), state(store)

    def store_answers() -> bool:
        return bool(store.query("MATCH (n) RETURN count(n)").scalar() == 17)

    heavy = [a for a in [*AUDIT, *PAST_THE_GUARD] if a.kind in (PARSER, MEMORY, TIME)]
    alone = tally(lambda a: store.query(a.cypher, a.params), store_fingerprint, store_answers, heavy)
    starts = store.sandbox.starts if store.sandbox else 0
    store.close()
    return {"default": default, "sandbox_alone": alone, "sandbox_alone_worker_starts": starts}


def audit_table(counts: dict[str, dict[str, int]]) -> str:
    rows = []
    total: dict[str, int] = defaultdict(int)
    for kind, c in counts.items():
        for k, v in c.items():
            total[k] = total[k] + v if k != "ms" else max(total[k], v)
        rows.append([kind, *(c.get(k, 0) for k in ("tried", "refused", "crashed", "silent", "changed"))])
        rows[-1].append(f"{c.get('guard', 0)} / {c.get('engine', 0)} / {c.get('sandbox', 0)}")
        rows[-1].append(f"{c.get('ms', 0):,}")
    rows.append(["all", *(total.get(k, 0) for k in ("tried", "refused", "crashed", "silent", "changed"))])
    rows[-1] += [f"{total.get('guard', 0)} / {total.get('engine', 0)} / {total.get('sandbox', 0)}", ""]
    headers = ["attack class", "tried", "refused", "crashed", "silent", "state changed", "guard / engine / sandbox"]
    return table([*headers, "slowest ms"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--audit", action="store_true", help="also re-run the audit of issue 12")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="kvgraph-bench-sandbox-") as tmp_name:
        tmp = Path(tmp_name)
        graphs = []
        d = devops(tmp)
        if d is not None:
            graphs.append((f"DevOps ({DEVOPS.name}, 33 nodes)", d, DEVOPS_QUERIES))
        graphs.append(
            (
                f"synthetic ({args.nodes:,} nodes, ~{args.edges:,} edges)",
                synthetic(tmp, args.nodes, args.edges),
                SYNTHETIC_QUERIES,
            )
        )
        headers = ["graph", "query", "in-process p50 ms (p99)", "sandboxed p50 ms (p99)", "added p50 ms"]
        rows = []
        for label, db_dir, queries in graphs:
            res = overhead(db_dir, queries, args.reps)
            out[label] = {"queries": res, **lifecycle(db_dir)}
            for r in res:
                rows.append(
                    [
                        label,
                        r["query"],
                        f"{fmt(r['in_p50'], 2)} ({fmt(r['in_p99'], 2)})",
                        f"{fmt(r['sb_p50'], 2)} ({fmt(r['sb_p99'], 2)})",
                        f"{r['added']:+.2f}",
                    ]
                )
        print("\n## Per-query cost of the sandbox\n")
        print(table(headers, rows))
        print("\n## Worker lifecycle (median ms)\n")
        print(
            table(
                ["graph", "start (first query of a store)", "reopen after a write"],
                [[label, fmt(out[label]["start_ms"], 0), fmt(out[label]["reopen_ms"], 1)] for label, _, _ in graphs],
            )
        )
        if args.audit:
            audit = run_audit(tmp)
            out["audit"] = audit
            print("\n## Audit re-run: kb.graph.query on a writable knowledge base (guard + sandbox)\n")
            print(audit_table(audit["default"]))
            print("\n## Parser, memory and time attacks with the guard's size limits off (the sandbox alone)\n")
            print(audit_table(audit["sandbox_alone"]))
            print(f"\nworker processes started: {audit['sandbox_alone_worker_starts']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
