"""Measuring one competitor of the store benchmark: build, queries, filters, ef sweeps, paired runs."""

from __future__ import annotations

import argparse
import inspect
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from store_common import (
    DIM,
    PAIRED_REFS,
    PAIRED_ROUNDS,
    SELECTIVITIES,
    K,
    hit_rate,
    lat_stats,
    log,
    loop_timed,
    perf,
    recall_at_k,
    rss,
    trim_memory,
)
from store_competitors import Competitor, FaissHNSW, KVGraph, LlamaIndexSimple
from store_data import Dataset


def measure(comp: Competitor, ds: Dataset, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"name": comp.name, "note": comp.note}
    trim_memory()
    rss0 = rss()
    log(f"{ds.name}/{comp.name}: building {ds.n} vectors")
    b = comp.build(ds)
    res["build"] = b
    res["add_vps"] = ds.n / b["add_s"]
    res["ready_s"] = b["add_s"] + b.get("index_s", 0.0)
    res["rss_after_build"] = rss() - rss0
    log(f"{ds.name}/{comp.name}: built in {res['ready_s']:.1f}s ({b})")

    budget = args.budget
    nq = min(args.queries, len(ds.Q))
    # warm-up (page cache, lazy structures)
    for i in range(3):
        comp.query(ds.Q[-1 - i], None)

    # single queries, no filter
    lat, outs = loop_timed(lambda q: comp.query(q, None), ds.Q[:nq], budget)
    rows = [comp.rows(o) for o in outs]
    res["single"] = lat_stats(lat)
    res["single"]["recall"] = recall_at_k(rows, ds.gt)
    if ds.gold is not None:
        res["single"]["hit10"] = hit_rate(rows, ds.gold)
    if hasattr(outs[0], "plan"):
        res["single"]["plans"] = sorted({o.plan for o in outs})

    # one batch call (or a loop for stores without a batch API)
    nb = min(args.batch, len(ds.Q))
    if comp.has_batch:
        t0 = perf()
        outs = comp.batch(ds.Q[:nb], None)
        dt = perf() - t0
        n_done = nb
    else:
        lat_b, outs = loop_timed(lambda q: comp.query(q, None), ds.Q[:nb], budget)
        dt, n_done = float(lat_b.sum()), len(lat_b)
    rows = [comp.rows(o) for o in outs]
    res["batch"] = {
        "n": n_done,
        "qps": n_done / dt,
        "recall": recall_at_k(rows, ds.gt[:n_done]),
        "looped": not comp.has_batch,
    }
    if ds.gold is not None:
        res["batch"]["hit10"] = hit_rate(rows, ds.gold[:n_done])
    if hasattr(outs[0], "plan"):
        res["batch"]["plans"] = sorted({o.plan for o in outs})

    # filtered single queries
    nf = min(args.filtered_queries, len(ds.Q))
    res["filtered"] = {}
    for thr, label in SELECTIVITIES:
        lat, outs = loop_timed(lambda q, t=thr: comp.query(q, t), ds.Q[:nf], budget)
        rows = [comp.rows(o) for o in outs]
        f = lat_stats(lat)
        f["recall"] = recall_at_k(rows, ds.gt_filtered[thr])
        if hasattr(outs[0], "plan"):
            f["plans"] = sorted({o.plan for o in outs})
        res["filtered"][label] = f

    if isinstance(comp, KVGraph):
        res.update(kvgraph_extras(comp, ds, args))
    if isinstance(comp, FaissHNSW):
        res["sweep"] = ef_sweep(comp, ds, args)
    if isinstance(comp, KVGraph) and "batch_exact" not in res and res["batch"].get("plans") == ["exact"]:
        res["batch_exact"] = res["batch"]

    trim_memory()
    res["rss_delta"] = rss() - rss0
    res["disk_bytes"] = None
    if isinstance(comp, LlamaIndexSimple):
        if ds.n <= args.llama_persist_max:
            res["reopen"] = comp.persist_and_reload(tmp)
        else:
            res["reopen_note"] = f"not persisted (n > --llama-persist-max {args.llama_persist_max})"
    else:
        r = comp.reopen()
        if r is not None:
            res["reopen"] = r
    res["disk_bytes"] = comp.disk_bytes()
    if isinstance(comp, KVGraph):
        res["stats"] = comp.s.stats()
        # after reopen: the same single queries again (cold HNSW load is in first_query_s)
        lat, outs = loop_timed(lambda q: comp.query(q, None), ds.Q[:nq], budget)
        res["single_after_reopen"] = lat_stats(lat)
        res["single_after_reopen"]["recall"] = recall_at_k([comp.rows(o) for o in outs], ds.gt)
    return res


def ef_sweep(comp: Competitor, ds: Dataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Recall and QPS (single queries and one batch) per efSearch."""
    out = []
    nq = min(args.queries, len(ds.Q))
    nb = min(args.batch, len(ds.Q))
    for ef in args.ef:
        if isinstance(comp, KVGraph):

            def one(q, ef=ef):
                return comp.query(q, None, ef_search=ef)

            def many(Q, ef=ef):
                if "ef_search" in inspect.signature(comp.s.query_batch).parameters:
                    return comp.s.query_batch(Q, similarity_top_k=K, ef_search=ef)
                old = comp.s.ef_search  # query_batch has no ef_search argument: use the store default
                comp.s.ef_search = ef
                try:
                    return comp.batch(Q, None)
                finally:
                    comp.s.ef_search = old
        else:

            def one(q, ef=ef):
                return comp.query(q, None, ef=ef)

            def many(Q, ef=ef):
                return comp.batch(Q, None, ef=ef)

        for q in ds.Q[-3:]:
            one(q)
        lat, outs = loop_timed(one, ds.Q[:nq], args.budget)
        r = lat_stats(lat)
        r["ef"] = ef
        r["recall"] = recall_at_k([comp.rows(o) for o in outs], ds.gt)
        if hasattr(outs[0], "plan"):
            r["plans"] = sorted({o.plan for o in outs})
        t0 = perf()
        bo = many(ds.Q[:nb])
        dt = perf() - t0
        r["batch_qps"] = nb / dt
        r["batch_recall"] = recall_at_k([comp.rows(o) for o in bo], ds.gt[:nb])
        out.append(r)
    return out


def paired_blocks(
    sides: dict[str, Any], queries: np.ndarray, rounds: int, budget_s: float
) -> tuple[dict[str, list[float]], dict[str, list[list[int]]]]:
    """p50 latency per round for each side, measured in alternating blocks (the order rotates every
    round), so that machine load drifting during the run hits every side alike. A block stops after
    budget_s (at least 5 queries) and every side then runs the same queries."""
    names = list(sides)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    outs: dict[str, list[list[int]]] = {}
    n_q = len(queries)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, rows = sides[name]
            lat, res = [], []
            t_block = perf()
            for i in range(n_q):
                t0 = perf()
                out = fn(queries[i])
                lat.append(perf() - t0)
                res.append(out)
                if perf() - t_block > budget_s and i >= 4:
                    n_q = i + 1  # later blocks run the same, smaller set
                    break
            p50s[name].append(float(np.median(lat[:n_q])))
            outs[name] = [rows(o) for o in res[:n_q]]
    return p50s, outs


def paired_comparisons(comp: KVGraph, ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """kvgraph against faiss-flat / faiss-hnsw in the same process, interleaved block by block."""
    out: dict[str, Any] = {}
    nq = min(args.queries, len(ds.Q))
    budget = args.budget / 4
    flat = PAIRED_REFS.get("faiss-flat")
    if flat is not None:
        sides = {
            "faiss-flat": (lambda q: flat.query(q, None), flat.rows),
            "kvgraph": (lambda q: comp.query(q, None, exact=True), comp.rows),
        }
        p50s, outs = paired_blocks(sides, ds.Q[:nq], PAIRED_ROUNDS, budget)
        ratios = [a / b for a, b in zip(p50s["kvgraph"], p50s["faiss-flat"])]
        out["exact"] = {
            "ratio": float(np.median(ratios)),
            "ratios": ratios,
            "kvgraph_p50_ms": 1e3 * float(np.median(p50s["kvgraph"])),
            "faiss_p50_ms": 1e3 * float(np.median(p50s["faiss-flat"])),
            "n": len(outs["kvgraph"]),
        }
    hn = PAIRED_REFS.get("faiss-hnsw")
    if hn is not None and comp.s.stats().get("ann_active"):
        per_ef: list[dict[str, Any]] = []
        for ef in args.ef:
            sides = {
                "faiss-hnsw": (lambda q, ef=ef: hn.query(q, None, ef=ef), hn.rows),
                "kvgraph": (lambda q, ef=ef: comp.query(q, None, ef_search=ef), comp.rows),
            }
            p50s, outs = paired_blocks(sides, ds.Q[:nq], PAIRED_ROUNDS, budget)
            per_ef.append(
                {
                    "ef": ef,
                    "p50s": p50s,
                    "recall": {k: recall_at_k(v, ds.gt[: len(v)]) for k, v in outs.items()},
                }
            )
            if all(r >= 0.95 for r in per_ef[-1]["recall"].values()):
                break  # both reached the target recall: deeper efs are slower for both
        pick = {}
        for side in ("faiss-hnsw", "kvgraph"):
            ok = [e for e in per_ef if e["recall"][side] >= 0.95]
            pick[side] = ok[0] if ok else None
        if pick["faiss-hnsw"] and pick["kvgraph"]:
            a, b = pick["kvgraph"], pick["faiss-hnsw"]
            ratios = [x / y for x, y in zip(a["p50s"]["kvgraph"], b["p50s"]["faiss-hnsw"])]
            out["ann"] = {
                "ratio": float(np.median(ratios)),
                "ratios": ratios,
                "kvgraph_ef": a["ef"],
                "faiss_ef": b["ef"],
                "kvgraph_recall": a["recall"]["kvgraph"],
                "faiss_recall": b["recall"]["faiss-hnsw"],
                "kvgraph_p50_ms": 1e3 * float(np.median(a["p50s"]["kvgraph"])),
                "faiss_p50_ms": 1e3 * float(np.median(b["p50s"]["faiss-hnsw"])),
            }
        out["ann_per_ef"] = per_ef
    return out


def kvgraph_extras(comp: KVGraph, ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    extra: dict[str, Any] = {}
    if PAIRED_REFS:
        extra["paired"] = paired_comparisons(comp, ds, args)
    # How to force the ANN path: VectorStoreQuery(strategy="ann") when the store has it; older
    # versions only had a planner cost constant, which the bench zeroes for those runs.
    force_kw: dict[str, Any] = {}
    force_ann = None
    if "strategy" in {f.name for f in dataclasses.fields(comp.VSQ)}:

        def force_ann(fn):
            force_kw["strategy"] = "ann"
            try:
                return fn()
            finally:
                force_kw.clear()
    else:
        import importlib

        for modname in ("kvgraph.store.planner", "kvgraph.store.embedded"):
            try:
                mod = importlib.import_module(modname)
            except ImportError:
                continue
            if hasattr(mod, "ANN_COST_PER_EF"):

                def force_ann(fn, mod=mod):
                    saved = mod.ANN_COST_PER_EF
                    mod.ANN_COST_PER_EF = 0.0
                    try:
                        return fn()
                    finally:
                        mod.ANN_COST_PER_EF = saved

                break
    has_strategy = "strategy" in {f.name for f in dataclasses.fields(comp.VSQ)}
    extra["force_ann_via"] = (
        "strategy='ann'" if has_strategy else "patched ANN_COST_PER_EF" if force_ann else "unavailable"
    )
    nq = min(args.queries, len(ds.Q))
    nf = min(args.filtered_queries, len(ds.Q))
    budget = args.budget
    # forced exact (the "within 1.2x of faiss IndexFlatIP" target)
    lat, outs = loop_timed(lambda q: comp.query(q, None, exact=True), ds.Q[:nq], budget)
    extra["single_exact"] = lat_stats(lat)
    extra["single_exact"]["recall"] = recall_at_k([comp.rows(o) for o in outs], ds.gt)
    extra["single_exact"]["plans"] = sorted({o.plan for o in outs})
    # exact batch, when query_batch can be told to
    params = inspect.signature(comp.s.query_batch).parameters
    kw_exact = {"strategy": "exact"} if "strategy" in params else {"exact": True} if "exact" in params else None
    if kw_exact is not None:
        nb = min(args.batch, len(ds.Q))
        t0 = perf()
        bo = comp.s.query_batch(ds.Q[:nb], similarity_top_k=K, **kw_exact)
        dt = perf() - t0
        extra["batch_exact"] = {
            "n": nb,
            "qps": nb / dt,
            "recall": recall_at_k([comp.rows(o) for o in bo], ds.gt[:nb]),
            "plans": sorted({o.plan for o in bo}),
        }
    ann = bool(comp.s.stats().get("ann_active"))
    extra["ann_active"] = ann
    if ann:
        extra["sweep"] = ef_sweep(comp, ds, args)
    # filtered: the planner's pick and each strategy forced, interleaved query by query (in a random
    # order each round) so that load on a shared machine hits every strategy alike.
    strategies: dict[str, dict[str, Any]] = {}
    for thr, label in SELECTIVITIES:
        variants: list[tuple[str, dict[str, Any], bool]] = [
            ("auto", {}, False),
            ("exact-subset", {"exact": True}, False),
        ]
        if ann and force_ann is not None:
            variants += [("ann-filtered(auto ef)", {}, True), ("ann-filtered(ef=256)", {"ef_search": 256}, True)]

        def call(q, kw, forced, t=thr):
            if forced:
                return force_ann(lambda: comp.query(q, t, **kw, **force_kw))
            return comp.query(q, t, **kw)

        for q in ds.Q[-2:]:  # warm-up
            for _, kw, forced in variants:
                call(q, kw, forced)

        order_rng = np.random.default_rng(thr)

        def one_round(q, variants=variants, order_rng=order_rng):
            # a fresh random order every round: no strategy always runs first or after the same one
            # (a deep ANN search evicts the CPU caches and slows whatever query comes next)
            v = len(variants)
            out: list[Any] = [None] * v
            for vi in order_rng.permutation(v):
                _, kw, forced = variants[vi]
                t0 = perf()
                r = call(q, kw, forced)
                out[vi] = (perf() - t0, r)
            return out

        _, rounds = loop_timed(one_round, ds.Q[:nf], budget * len(variants))
        s = {}
        for vi, (name, _, _) in enumerate(variants):
            lat = np.asarray([rd[vi][0] for rd in rounds])
            outs = [rd[vi][1] for rd in rounds]
            f = lat_stats(lat)
            f["recall"] = recall_at_k([comp.rows(o) for o in outs], ds.gt_filtered[thr])
            f["plans"] = sorted({o.plan for o in outs})
            s[name] = f
        # batch with the filter (planner's choice)
        nb = min(args.batch, len(ds.Q))
        t0 = perf()
        bo = comp.batch(ds.Q[:nb], thr)
        dt = perf() - t0
        s["batch(auto)"] = {
            "qps": nb / dt,
            "recall": recall_at_k([comp.rows(o) for o in bo], ds.gt_filtered[thr][:nb]),
            "plans": sorted({o.plan for o in bo}),
        }
        strategies[label] = s
    extra["filtered_strategies"] = strategies
    # the Node-object path (add) on a small separate store
    from kvgraph.schema import Node
    from kvgraph.store import EmbeddedVectorStore

    m = min(ds.n, 10_000)
    metas = ds.metadatas(0, m)
    p = comp.tmp / "kvgraph_nodes"
    shutil.rmtree(p, ignore_errors=True)
    t0 = perf()
    nodes = [Node(id=str(i), text="", metadata=metas[i], embedding=ds.X[i]) for i in range(m)]
    t1 = perf()
    st = EmbeddedVectorStore.open(p, dim=DIM, metric="cosine", ann_threshold=10**9)
    t2 = perf()
    st.add(nodes)
    t3 = perf()
    st.close()
    shutil.rmtree(p, ignore_errors=True)
    extra["add_nodes"] = {"n": m, "make_nodes_s": t1 - t0, "add_s": t3 - t2, "add_vps": m / (t3 - t2)}
    return extra


def exact_without_faiss(ds: Dataset, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """kvgraph's exact search with faiss's kernels against its numpy fallback (no faiss installed).

    One store, queried with ``exact=True`` by one query and by batches of 32 (``query_batch``),
    unfiltered and at 10% selectivity (the gathered-subset path); the numpy side hides faiss
    for the call (``sys.modules["faiss"] = None``, what an install without ``kvgraph[ann]``
    looks like to kvgraph). Sides alternate in blocks (paired_blocks); the results must agree.
    """
    import sys

    from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

    path = tmp / "kvgraph-exact"
    shutil.rmtree(path, ignore_errors=True)
    s = EmbeddedVectorStore.open(path, dim=DIM, metric="cosine", ann_threshold=10**9)
    s.add_arrays(ds.ids(), ds.X, ds.metadatas())
    faiss_mod = sys.modules["faiss"]

    def hidden(fn):
        def call(x):
            sys.modules["faiss"] = None
            try:
                return fn(x)
            finally:
                sys.modules["faiss"] = faiss_mod

        return call

    out: list[dict[str, Any]] = []
    nq = min(args.queries, len(ds.Q))
    for batch, thr in ((1, None), (32, None), (1, 100), (32, 100)):
        flt = None if thr is None else {"bucket": {"$lt": thr}}
        if batch == 1:
            queries = ds.Q[:nq]

            def fn(q, flt=flt):
                return [s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=K, filters=flt, exact=True))]
        else:
            queries = ds.Q[: (len(ds.Q) // batch) * batch].reshape(-1, batch, DIM)[: max(nq // batch, 5)]

            def fn(qs, flt=flt):
                return s.query_batch(qs, similarity_top_k=K, filters=flt, exact=True)

        def rows(res):
            return [r.ids for r in res]

        for q in queries[:2]:  # warm-up: page cache, lazy structures
            fn(q)
            hidden(fn)(q)
        p50s, outs = paired_blocks(
            {"faiss": (fn, rows), "numpy": (hidden(fn), rows)}, queries, PAIRED_ROUNDS, args.budget / 4
        )
        faiss_ms = 1e3 * float(np.median(p50s["faiss"]))
        numpy_ms = 1e3 * float(np.median(p50s["numpy"]))
        out.append(
            {
                "n": ds.n,
                "queries_per_call": batch,
                "allowed": "all" if thr is None else f"{thr / 10:g}%",
                "faiss_ms": faiss_ms,
                "numpy_ms": numpy_ms,
                "ratio": float(np.median([b / a for a, b in zip(p50s["faiss"], p50s["numpy"])])),
                "same_results": outs["faiss"] == outs["numpy"],
                "calls": len(outs["faiss"]),
            }
        )
        what = f"{batch} q/call, allowed {out[-1]['allowed']}"
        log(f"{ds.name}: exact, {what}: faiss {faiss_ms:.2f} ms, numpy {numpy_ms:.2f} ms")
    s.close()
    shutil.rmtree(path, ignore_errors=True)
    return out
