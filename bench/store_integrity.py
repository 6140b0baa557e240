#!/usr/bin/env python
"""What the store's integrity checks cost: record checksums on write and read, scans, the cross-check.

In one process, on the same data:

* ``add``: add_arrays of n nodes (text + metadata) — every row gets a crc32 of its fields;
* ``nodes``: materialising the nodes of query results, on a store whose rows carry checksums
  (each row verified when it becomes a Node) against the same store with the checksums removed
  (rows from before checksums are not verified): the ratio is the price of verifying on read;
* ``scan``: ``store.scan()`` (every vector segment, every record, caches) in rows per second;
* ``verify``: ``store.verify()`` (``kvgraph store check``);
* ``cross-check``: the registry/store comparison every knowledge-base open runs, when the totals
  agree (the usual case) and when they differ (per-document counts).

    .venv/bin/python bench/store_integrity.py [--n 100000] [--queries 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import kvgraph  # noqa: F401
except ImportError:  # not installed in the venv: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from _tables import fmt, table  # noqa: E402
from kvgraph.ingest.registry import FileRecord, Registry, cross_check  # noqa: E402
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery  # noqa: E402

DIM = 384
perf = time.perf_counter


def build(path: Path, n: int, rng: np.random.Generator) -> float:
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choice(words, 120)) for _ in range(n)]  # ~700 characters, a typical chunk
    metas = [{"file_path": f"/docs/f{i // 20}.txt", "page": i % 20, "title": f"Doc {i // 20}"} for i in range(n)]
    docs = [f"/docs/f{i // 20}.txt" for i in range(n)]
    t0 = perf()
    with EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=10**9) as s:
        for lo in range(0, n, 10_000):
            hi = min(n, lo + 10_000)
            s.add_arrays([f"n{i}" for i in range(lo, hi)], vecs[lo:hi], metas[lo:hi], texts[lo:hi], docs[lo:hi])
    return perf() - t0


def materialise(path: Path, queries: np.ndarray, rounds: int = 5) -> float:
    """Median over rounds of the seconds to build the nodes of every query's top 10."""
    times = []
    with EmbeddedVectorStore.open(path, read_only=True) as s:
        results = [s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, exact=True)) for q in queries]
        for _ in range(rounds):
            fresh = s.query_batch(queries, similarity_top_k=10, exact=True)  # read-only: rows are read here
            t0 = perf()
            for r in fresh:
                r.nodes  # noqa: B018
            times.append(perf() - t0)
        del results
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="kvgraph-integrity-"))
    out: dict[str, float] = {"n": args.n}
    try:
        with_crc, without = tmp / "with", tmp / "without"
        out["add_s"] = build(with_crc, args.n, rng)
        shutil.copytree(with_crc, without)
        db = sqlite3.connect(without / "records.sqlite")
        db.execute("UPDATE nodes SET crc = NULL")  # as written before checksums: not verified on read
        db.commit()
        db.close()
        queries = rng.normal(size=(args.queries, DIM)).astype(np.float32)
        # interleaved, three times each, so that load on a shared machine hits both alike
        a, b = [], []
        for _ in range(3):
            a.append(materialise(with_crc, queries))
            b.append(materialise(without, queries))
        out["nodes_checked_s"], out["nodes_unchecked_s"] = min(a), min(b)
        with EmbeddedVectorStore.open(with_crc, read_only=True) as s:
            t0 = perf()
            damage = s.scan()
            out["scan_s"] = perf() - t0
            assert damage.ok
            t0 = perf()
            s.verify()
            out["verify_s"] = perf() - t0
            counts = s.doc_counts()
            reg = Registry(tmp / "documents.sqlite")
            for doc, c in counts.items():
                reg.put(FileRecord(doc, "x", 1, 1, [doc], c, 0, "now"))
            t0 = perf()
            agree = cross_check(s, reg)
            out["cross_check_equal_s"] = perf() - t0
            reg.put(FileRecord("/docs/extra.txt", "x", 1, 1, ["/docs/extra.txt"], 5, 0, "now"))
            t0 = perf()
            differ = cross_check(s, reg)
            out["cross_check_differ_s"] = perf() - t0
            assert agree.ok and not agree.detailed and differ.missing_files == {"/docs/extra.txt": 5}
            reg.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n, q = args.n, args.queries
    rows = [
        ["add_arrays (crc32 per row)", f"{fmt(n / out['add_s'])} nodes/s", f"{out['add_s']:.2f} s for {n:,}"],
        [
            "build the nodes of 10 hits, rows verified",
            f"{1e6 * out['nodes_checked_s'] / q:.1f} µs/query",
            f"{out['nodes_checked_s'] / out['nodes_unchecked_s']:.2f}x the same rows unverified "
            f"({1e6 * out['nodes_unchecked_s'] / q:.1f} µs)",
        ],
        ["scan() (vectors, records, caches)", f"{fmt(n / out['scan_s'])} rows/s", f"{out['scan_s']:.2f} s"],
        ["verify() (kvgraph store check)", f"{fmt(n / out['verify_s'])} rows/s", f"{out['verify_s']:.2f} s"],
        [
            "cross-check on open, totals agree",
            f"{1e3 * out['cross_check_equal_s']:.2f} ms",
            f"{len(counts):,} documents",
        ],
        ["cross-check, totals differ", f"{1e3 * out['cross_check_differ_s']:.1f} ms", "per-document counts"],
    ]
    print(f"store integrity costs, n={n:,}, d={DIM}, {os.cpu_count()} cores\n")
    print(table(["what", "speed", "detail"], rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
