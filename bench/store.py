#!/usr/bin/env python
"""Vector-store benchmark: kvgraph's EmbeddedVectorStore against the usual alternatives.

Every competitor is built from the same vectors, metadata and queries, in one process,
one after the other (each is freed before the next is built):

  from-scratch   the classic tutorial design: dict of nodes, embeddings in a Python list,
                 cosine per node in a Python loop (np.dot per node), sort; metadata filter
                 evaluated node by node (exact match, plus "$lt" for the selectivity tests)
  llamaindex     llama_index.core SimpleVectorStore (TextNode + VectorStoreQuery)
  faiss-flat     faiss IndexFlatIP on normalised vectors (exact; also the ground truth)
  faiss-hnsw     faiss IndexHNSWFlat(d, 16), efConstruction=200 (raw HNSW library)
  lancedb        LanceDB embedded table, brute force (+ optional IVF_HNSW_SQ index)
  kvgraph        kvgraph.store.EmbeddedVectorStore
  postgres       kvgraph.store.postgres.PostgresVectorStore on PostgreSQL 16 + pgvector (bench/store_postgres.py)

Data sets: clustered synthetic 384-d vectors (100k by default; 1M with --sizes) with an
int metadata field ``bucket`` uniform in [0, 1000) (``bucket < 500/100/10/1`` -> 50%/10%/
1%/0.1% of rows allowed) and a string field ``cat``; and SQuAD v1.1 dev paragraphs
embedded with all-MiniLM-L6-v2 (questions as queries, gold paragraph hit-rate@10).

    .venv/bin/python bench/store.py                  # 100k synthetic + SQuAD (a few minutes)
    .venv/bin/python bench/store.py --quick          # smoke test (< ~1 minute)
    .venv/bin/python bench/store.py --sizes 100000,1000000 --json bench/out/full.json

See bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import os

# ---------------------------------------------------------------- arguments (before numpy)

ALL_COMPETITORS = ["faiss-flat", "faiss-hnsw", "kvgraph", "lancedb", "llamaindex", "from-scratch", "postgres"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help="comma-separated synthetic sizes (default 100000; --quick: 10000)")
    ap.add_argument("--quick", action="store_true", help="small sizes and few queries, for smoke testing")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic data sets")
    ap.add_argument("--no-squad", action="store_true", help="skip the SQuAD data set")
    ap.add_argument("--datasets", default=None, help="datasets dir (default: $KVGRAPH_DATASETS or ../shared/datasets)")
    ap.add_argument("--squad-questions", type=int, default=2000, help="SQuAD questions used as queries")
    ap.add_argument(
        "--competitors",
        default=",".join(ALL_COMPETITORS),
        help="comma-separated subset of: " + ", ".join(ALL_COMPETITORS),
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="query threads for every store: OpenMP (faiss), OpenBLAS (numpy), Lance, torch (default 1)",
    )
    ap.add_argument(
        "--build-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="faiss OpenMP threads while HNSW indexes are built (faiss-hnsw, kvgraph; default: all cores)",
    )
    ap.add_argument("--queries", type=int, default=None, help="single queries per measurement (default 300)")
    ap.add_argument("--batch", type=int, default=None, help="queries in one batch call (default 1000)")
    ap.add_argument("--filtered-queries", type=int, default=None, help="single queries per filter (default 100)")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per measurement loop before it stops early (default 8; slow stores run fewer)",
    )
    ap.add_argument("--ef", default="16,32,64,128,256", help="efSearch sweep for the ANN comparison")
    ap.add_argument("--ann-threshold", type=int, default=50_000, help="kvgraph ann_threshold (--quick: n/2)")
    ap.add_argument(
        "--lance-index",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also build a LanceDB IVF_HNSW_SQ index and measure it",
    )
    ap.add_argument(
        "--llama-max",
        type=int,
        default=1_000_000,
        help="largest n for LlamaIndex SimpleVectorStore (RSS ~15 KB/vector; skipped if 20 KB/vector > free memory)",
    )
    ap.add_argument("--scratch-max", type=int, default=200_000, help="largest size for the from-scratch store")
    ap.add_argument(
        "--llama-persist-max",
        type=int,
        default=0,
        help="largest size at which LlamaIndex is persisted to JSON and reloaded (slow: ~40 s at 10k)",
    )
    ap.add_argument("--json", default=None, metavar="OUT", help="write raw results to this JSON file")
    ap.add_argument(
        "--png", default=None, metavar="OUT", help="bar chart (needs matplotlib; default bench/out/store.png)"
    )
    ap.add_argument("--report-from", default=None, metavar="JSON", help="only print the tables of a saved --json run")
    ap.add_argument(
        "--exact-numpy",
        action="store_true",
        help="only compare kvgraph's exact search with faiss and without it (numpy: no kvgraph[ann]) at --sizes",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="scratch directory for on-disk stores (default: a temp dir)")
    args = ap.parse_args(argv)
    q = args.quick
    args.sizes = [int(s) for s in (args.sizes or ("10000" if q else "100000")).split(",") if s]
    args.queries = args.queries or (30 if q else 300)
    args.batch = args.batch or (200 if q else 1000)
    args.filtered_queries = args.filtered_queries or (15 if q else 100)
    args.budget = args.budget or (1.5 if q else 8.0)
    args.ef = [int(e) for e in args.ef.split(",")] if not q else [16, 64, 256]
    args.competitors = [c.strip() for c in args.competitors.split(",") if c.strip()]
    for c in args.competitors:
        if c not in ALL_COMPETITORS:
            ap.error(f"unknown competitor {c!r}")
    if q:
        args.lance_index = False
        args.squad_questions = min(args.squad_questions, 500)
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "LANCE_CPU_THREADS"):
        os.environ[var] = str(ARGS.threads)
    # OpenMP's thread count is per thread: omp_set_num_threads() in the main thread (done in main() for
    # queries) does not reach other threads, which start from OMP_NUM_THREADS. kvgraph builds its HNSW
    # index in a background thread, so the environment carries the build setting.
    os.environ["OMP_NUM_THREADS"] = str(ARGS.build_threads)
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# ---------------------------------------------------------------- imports

import contextlib  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import faiss  # noqa: E402

from store_common import BENCH_DIR, PAIRED_REFS, THREADS, K, log, perf, psutil, trim_memory  # noqa: E402
from store_competitors import FaissFlat, FaissHNSW, FromScratch, KVGraph, LanceDB, LlamaIndexSimple  # noqa: E402
from store_data import Dataset, DsInfo, compute_ground_truth, squad_dataset, synthetic_dataset  # noqa: E402
from store_measure import exact_without_faiss, measure  # noqa: E402
from store_report import maybe_png, report, src_digest, to_jsonable, versions  # noqa: E402

# ---------------------------------------------------------------- main


def make_competitors(ds: Dataset, args: argparse.Namespace, tmp: Path) -> list[tuple[str, Any]]:
    ann_thr = args.ann_threshold
    if args.quick and ds.gold is None:  # let the small quick synthetic set exercise the ANN path
        ann_thr = min(args.ann_threshold, max(ds.n // 2, 1000))
    mem_avail = psutil.virtual_memory().available if psutil else float("inf")
    out: list[tuple[str, Any]] = []
    for c in args.competitors:
        if c == "faiss-flat":
            out.append((c, lambda: FaissFlat(tmp)))
        elif c == "faiss-hnsw":
            out.append((c, lambda: FaissHNSW(tmp)))
        elif c == "kvgraph":
            out.append((c, lambda t=ann_thr: KVGraph(tmp, t)))
        elif c == "lancedb":
            out.append((c, lambda: LanceDB(tmp)))
            if args.lance_index and ds.n >= 50_000:
                out.append(("lancedb-ivfhnsw", lambda: LanceDB(tmp, index=True)))
        elif c == "llamaindex":
            need = 20_000 * ds.n  # ~15 KB/vector resident (measured at 100k) + a float64 copy per query
            if ds.n > args.llama_max:
                out.append((c, f"skipped: n > --llama-max {args.llama_max}"))
            elif need > mem_avail:
                out.append((c, f"skipped: needs ~{need / 2**30:.0f} GiB, {mem_avail / 2**30:.0f} GiB available"))
            else:
                out.append((c, LlamaIndexSimple))
        elif c == "postgres":  # bench/store_postgres.py: kvgraph's Postgres + pgvector store (needs pgserver)
            import importlib.util

            missing = [m for m in ("pgserver", "psycopg", "pgvector") if importlib.util.find_spec(m) is None]
            if missing:
                hint = "pip install 'kvgraph[postgres]' pgserver"
                out.append((c, f"skipped: {', '.join(missing)} not installed ({hint})"))
            else:
                from store_postgres import PgVector

                out.append((c, lambda: PgVector(tmp)))
        elif c == "from-scratch":
            if ds.n > args.scratch_max:
                out.append((c, f"skipped: n > --scratch-max {args.scratch_max} (Python lists of 1M arrays)"))
            else:
                out.append((c, FromScratch))
    return out


def print_dataset(info: DsInfo, results: dict[str, dict[str, Any]], skipped: list[str], args) -> list:
    text, targets = report(info, results, args)
    print("\n" + text, flush=True)
    if skipped:
        print("\nSkipped: " + "; ".join(skipped), flush=True)
    notes = [f"- {r['name']}: {r['note']}" for r in results.values() if r.get("note")]
    print("\nNotes:\n" + "\n".join(notes), flush=True)
    return targets


def report_from(path: str) -> None:
    """Print the tables again from a --json file (also one a run left half-written)."""
    raw = json.loads(Path(path).read_text())
    args = argparse.Namespace(**raw["args"])
    print("\n".join(raw["header"]))
    for d in raw["datasets"].values():
        print_dataset(DsInfo(**d["info"]), d["results"], d.get("skipped", []), args)
    if "total_s" in raw:
        print(f"\ntotal bench time {raw['total_s']:.0f}s")
    else:
        print("\n(run did not finish)")


def exact_numpy_report(args: argparse.Namespace, tmp_root: Path) -> None:
    """--exact-numpy: exact search with faiss's kernels vs the numpy fallback, one table."""
    from _tables import fmt, table

    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        ds = synthetic_dataset(n, max(args.batch, args.queries), args.seed)
        rows += exact_without_faiss(ds, args, tmp_root)
        del ds
        trim_memory()
    print(
        "\n"
        + table(
            ["n x 384", "queries per call", "allowed", "faiss p50 ms", "numpy p50 ms", "numpy/faiss", "same results"],
            [
                [
                    f"{r['n']:,}",
                    r["queries_per_call"],
                    r["allowed"],
                    fmt(r["faiss_ms"], 3),
                    fmt(r["numpy_ms"], 3),
                    f"{r['ratio']:.2f}x",
                    "yes" if r["same_results"] else "NO",
                ]
                for r in rows
            ],
        ),
        flush=True,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(to_jsonable({"args": vars(args), "exact_numpy": rows}), indent=1))


def main() -> None:
    args = ARGS
    if args.report_from:
        report_from(args.report_from)
        return
    THREADS["query"], THREADS["build"] = args.threads, args.build_threads
    faiss.omp_set_num_threads(args.threads)
    if args.exact_numpy:
        tmp_root = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="kvgraph-bench-"))
        try:
            exact_numpy_report(args, tmp_root)
        finally:
            if not args.tmp:
                shutil.rmtree(tmp_root, ignore_errors=True)
        return
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(args.threads)
    t_all = perf()
    tmp_root = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="kvgraph-bench-"))
    tmp_root.mkdir(parents=True, exist_ok=True)
    header = [
        f"kvgraph store benchmark, {_dt.date.today().isoformat()}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{(psutil.virtual_memory().total / 2**30) if psutil else 0:.0f} GiB RAM; query threads={args.threads} "
        f"(faiss OpenMP, OpenBLAS, Lance, torch), HNSW build threads={args.build_threads} (faiss-hnsw, kvgraph "
        "indexer; not LanceDB); "
        "load average at start: " + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + f"; kvgraph store source {src_digest()}",
        f"k={K}; single queries: up to {args.queries} (stops after {args.budget:.0f}s per measurement, "
        f"n shown when fewer); batch: {args.batch} queries in one call; filtered: up to {args.filtered_queries} "
        "queries per selectivity",
    ]
    print("\n".join(header), flush=True)
    datasets: list[Any] = []
    if not args.no_synthetic:
        for n in args.sizes:
            datasets.append(("synthetic", n))
    if not args.no_squad:
        datasets.append(("squad", None))
    raw: dict[str, Any] = {"header": header, "args": {k: v for k, v in vars(args).items()}, "datasets": {}}
    all_results: dict[str, dict[str, dict[str, Any]]] = {}
    all_targets: dict[str, list] = {}
    json_path = Path(args.json) if args.json else None

    for kind, n in datasets:
        t0 = perf()
        if kind == "synthetic":
            ds = synthetic_dataset(n, max(args.batch, args.queries), args.seed)
        else:
            try:
                ds = squad_dataset(args.datasets, args.squad_questions, args.seed)
            except FileNotFoundError as e:
                print(f"\n### squad-dev: skipped ({e})")
                continue
        log(f"{ds.name}: data ready in {perf() - t0:.1f}s")
        compute_ground_truth(ds)
        info = DsInfo.of(ds)
        results: dict[str, dict[str, Any]] = {}
        skipped: list[str] = []
        PAIRED_REFS.clear()
        keep_refs = "kvgraph" in args.competitors
        for name, factory in make_competitors(ds, args, tmp_root):
            if isinstance(factory, str):
                skipped.append(f"{name}: {factory}")
                continue
            comp = None
            try:
                comp = factory()
                results[name] = measure(comp, ds, args, tmp_root)
            except Exception as e:  # report and go on with the other stores
                traceback.print_exc()
                results[name] = {"name": name, "error": f"{type(e).__name__}: {e}"}
            finally:
                if comp is not None and keep_refs and name in ("faiss-flat", "faiss-hnsw") and name in results:
                    PAIRED_REFS[name] = comp  # measured again, interleaved with kvgraph (kvgraph_extras)
                elif comp is not None:
                    with contextlib.suppress(Exception):
                        comp.close()
                if name == "kvgraph":
                    for ref in PAIRED_REFS.values():
                        with contextlib.suppress(Exception):
                            ref.close()
                    PAIRED_REFS.clear()
                del comp
                trim_memory()
            raw["datasets"][ds.name] = {"info": vars(info), "results": results, "skipped": skipped}
            if json_path:
                json_path.parent.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(to_jsonable(raw), indent=1))
        targets = print_dataset(info, results, skipped, args)
        all_results[ds.name] = results
        all_targets[ds.name] = targets
        raw["datasets"][ds.name]["targets"] = targets
        del ds
        trim_memory()

    print(
        f"\ntotal bench time {perf() - t_all:.0f}s; load average at end: "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    if json_path:
        raw["total_s"] = perf() - t_all
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(to_jsonable(raw), indent=1))
        log(f"wrote {json_path}")
    png = maybe_png(all_results, Path(args.png) if args.png else BENCH_DIR / "out" / "store.png")
    if png:
        log(f"wrote {png}")
    if not args.tmp:
        shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    main()
