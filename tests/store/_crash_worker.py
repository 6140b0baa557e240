"""Child-process side of the store's durability, locking and reader tests.

Run with the interpreter under test (``sys.executable``) as a script::

    _crash_worker.py crash PATH PROFILE START MAX_OPS
        Open PATH as the writer, print "ready ...", then apply ops START, START+1, ...
        (see ``op_spec``). Before each store call it prints "begin <i> <kind>", after the
        call returns "committed <i> <kind> <seconds> idx=<0|1>" (idx=1: the background
        HNSW indexer was still running). The parent SIGKILLs it at a random moment.
    _crash_worker.py verify PATH PROFILE LAST
        Rebuild the model of ops 0..LAST from scratch, open PATH read-only and check it
        equals the state after op LAST or LAST+1; prints "verified <which>".
    _crash_worker.py reader PATH
        A long-lived read-only opener driven by JSON commands on stdin (one per line),
        answering one JSON line each on stdout.
    _crash_worker.py reader-stress PATH STOPFILE
        Query PATH read-only in a loop until STOPFILE exists; print a JSON summary.
    _crash_worker.py hold PATH
        Open PATH as the writer, print "ready <pid>", then obey one stdin line:
        "close" (close and exit 0) or "exit" (exit 0 without closing).
    _crash_worker.py try-open PATH [ro]
        Try to open PATH (as writer, or read-only); print a JSON outcome.

The op sequence and the pure-Python model of the store live here too, so the parent
test and the verifying child replay exactly what the crashing writer did. Every op is
idempotent on the logical state (set these ids to content derived from the op index,
delete these ids, delete this document, vacuum, checkpoint), so re-running an op whose
commit may or may not have landed is always safe.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20240611
WORDS = (
    "river",
    "stone",
    "lamp",
    "orbit",
    "garden",
    "copper",
    "violet",
    "signal",
    "harbor",
    "meadow",
    "quartz",
    "ember",
    "falcon",
    "timber",
    "glacier",
    "canyon",
)

# Per profile: vector dimension, store open() arguments, and op-mix parameters.
PROFILES: dict[str, dict[str, Any]] = {
    "mixed": {"dim": 16, "open": {}, "n_add": 40, "n_upsert": 15, "n_delete": 25},
    "vacuum": {"dim": 192, "open": {}, "n_add": 2000, "n_upsert": 500, "n_delete": 1200, "first": 5000},
    "ann": {
        "dim": 32,
        "open": {"ann_threshold": 2000, "ef_construction": 40},
        "n_add": 1500,
        "n_upsert": 200,
        "n_delete": 300,
        "first": 3000,
    },
}


# ----------------------------------------------------------------------------- the op sequence


def op_spec(profile: str, i: int) -> dict[str, Any]:
    """The i-th op of a profile: a pure function of (profile, i)."""
    p = PROFILES[profile]
    r = random.Random(f"{profile}:{i}")
    if profile == "mixed":
        if i == 0:
            kind = "add"
        elif i % 4 == 3:
            kind = "delete_ref_doc"  # keeps the store from growing without bound
        else:
            x = r.random()
            kind = (
                "add"
                if x < 0.34
                else "upsert"
                if x < 0.54
                else "delete"
                if x < 0.71
                else "delete_ref_doc"
                if x < 0.86
                else "checkpoint"
                if x < 0.95
                else "vacuum"
            )
        window = 60
    else:
        # fixed cycles so that vacuum (or checkpoint, for the ANN profile) comes often
        cycle = (
            ["add", "upsert", "delete", "delete_ref_doc", "vacuum"]
            if profile == "vacuum"
            else ["add", "upsert", "delete", "delete_ref_doc", "checkpoint"]
        )
        kind = cycle[i % len(cycle)]
        if profile == "ann" and i % 15 == 14:
            kind = "vacuum"
        window = 16
    # ops are grouped into documents: 4 consecutive ops (mixed) or one cycle of 5 ops
    per_doc = 4 if profile == "mixed" else 5
    spec: dict[str, Any] = {"i": i, "kind": kind, "doc": f"d{i // per_doc}"}
    n_add = p["n_add"]
    if kind == "add":
        n = p.get("first", n_add) if i == 0 else n_add
        spec["ids"] = [f"b{i}-{j}" for j in range(n)]
    elif kind in ("upsert", "delete"):
        n = p["n_upsert"] if kind == "upsert" else p["n_delete"]
        lo = max(0, i - window)
        ids: set[str] = set()
        if i > 0:
            while len(ids) < n:
                k = r.randrange(lo, i)
                ids.add(f"b{k}-{r.randrange(p.get('first', n_add) if k == 0 else n_add)}")
        spec["ids"] = sorted(ids)
    elif kind == "delete_ref_doc":
        back = (10 if i % 4 == 3 else r.randint(2, 12)) if profile == "mixed" else 3
        spec["doc"] = f"d{i // per_doc - back}"  # "d-1" and below: no such document, a no-op
    return spec


def node_content(spec: dict[str, Any], dim: int) -> list[tuple[str, str, dict[str, Any], str, np.ndarray]]:
    """(id, text, metadata, ref_doc_id, embedding) of every node an add/upsert op writes."""
    i, kind = spec["i"], spec["kind"]
    r = random.Random(f"content:{i}")
    embs = np.random.default_rng([SEED, i]).normal(size=(len(spec["ids"]), dim)).astype(np.float32)
    out = []
    for pos, node_id in enumerate(spec["ids"]):
        words = " ".join(r.choice(WORDS) for _ in range(3))
        text = f"{kind} op{i} item{pos} tok{i}q{pos} {words}"
        md = {
            "op": i,
            "pos": pos,
            "grp": (i * 7 + pos) % 3,
            "kind": kind,
            "tags": [f"t{pos % 4}", f"o{i % 5}"],
            "w": round(r.random(), 6),
            "flag": pos % 2 == 0,
            "nil": None,
            "s": "é✓ ünï",
        }
        out.append((node_id, text, md, spec["doc"], embs[pos]))
    return out


def unique_token(text: str) -> str:
    return text.split()[3]  # "tok{i}q{pos}"


class Model:
    """The expected logical state: id -> (text, metadata, ref_doc_id, embedding)."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.dim = PROFILES[profile]["dim"]
        self.nodes: dict[str, tuple[str, dict[str, Any], str, np.ndarray]] = {}
        self.universe: set[str] = set()  # every id ever written

    def copy(self) -> Model:
        m = Model(self.profile)
        m.nodes = dict(self.nodes)
        m.universe = set(self.universe)
        return m

    def apply(self, spec: dict[str, Any]) -> None:
        kind = spec["kind"]
        if kind in ("add", "upsert"):
            for node_id, text, md, ref, emb in node_content(spec, self.dim):
                self.nodes[node_id] = (text, md, ref, emb)
                self.universe.add(node_id)
        elif kind == "delete":
            for node_id in spec["ids"]:
                self.nodes.pop(node_id, None)
        elif kind == "delete_ref_doc":
            for node_id in [k for k, v in self.nodes.items() if v[2] == spec["doc"]]:
                del self.nodes[node_id]

    def upto(self, last: int) -> Model:
        for i in range(last + 1):
            self.apply(op_spec(self.profile, i))
        return self


def apply_to_store(store: Any, spec: dict[str, Any], dim: int) -> None:
    kind = spec["kind"]
    if kind in ("add", "upsert"):
        rows = node_content(spec, dim)
        store.add_arrays(
            [r[0] for r in rows],
            np.stack([r[4] for r in rows]),
            metadatas=[r[2] for r in rows],
            texts=[r[1] for r in rows],
            ref_doc_ids=[r[3] for r in rows],
        )
    elif kind == "delete":
        store.delete(spec["ids"])
    elif kind == "delete_ref_doc":
        store.delete_ref_doc(spec["doc"])
    elif kind == "vacuum":
        store.vacuum()
    elif kind == "checkpoint":
        store.checkpoint()
    else:  # pragma: no cover
        raise AssertionError(kind)


# ----------------------------------------------------------------------------- verification


def _mismatch(got: dict[str, Any], model: Model) -> str | None:
    """Why the nodes returned by get() (id -> Node, all present) differ from the model, or None."""
    ids = sorted(got)
    for k in ids:
        node, (text, md, ref, _) = got[k], model.nodes[k]
        if node.text != text:
            return f"node {k!r}: text {node.text!r} != {text!r}"
        if node.metadata != md:
            return f"node {k!r}: metadata {node.metadata!r} != {md!r}"
        if node.ref_doc_id != ref:
            return f"node {k!r}: ref_doc_id {node.ref_doc_id!r} != {ref!r}"
    if ids:
        have = np.stack([np.asarray(got[k].embedding, dtype=np.float32) for k in ids])
        want = np.stack([model.nodes[k][3] for k in ids])
        if have.shape != want.shape:
            return f"embeddings have shape {have.shape[1:]}, want {want.shape[1:]}"
        err = np.abs(have - want).max(axis=1)
        if (err > 1e-5).any():
            bad = int(np.argmax(err))
            return f"node {ids[bad]!r}: embedding differs by {err[bad]}"
    return None


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_store(store: Any, candidates: list[Model], rng: random.Random, ann: bool = False) -> int:
    """Assert the open store equals one of the candidate models exactly; return its index.

    Checks count, get() of every id (text, metadata, ref_doc_id, embedding), absence of
    deleted ids, exact dense top-1 for stored embeddings, sparse search for a node's unique
    token, and filtered searches against the model. With ``ann`` also approximate search.
    """
    from kvgraph.store import VectorStoreQuery

    count = store.count()
    union = sorted(set().union(*(c.nodes.keys() for c in candidates)))
    got = dict(zip(union, store.get(union)))
    present = {k for k, v in got.items() if v is not None}
    problems = []
    matched = None
    for idx, c in enumerate(candidates):
        why = None
        if count != len(c.nodes):
            why = f"count {count} != {len(c.nodes)}"
        elif present != set(c.nodes):
            extra, missing = sorted(present - set(c.nodes)), sorted(set(c.nodes) - present)
            why = f"ids differ: extra {extra[:5]} ({len(extra)}), missing {missing[:5]} ({len(missing)})"
        else:
            why = _mismatch({k: got[k] for k in present}, c)
        if why is None:
            matched = idx
            break
        problems.append(f"candidate {idx}: {why}")
    assert matched is not None, "store matches no allowed state: " + "; ".join(problems)
    model = candidates[matched]

    gone = sorted(model.universe - set(model.nodes))
    sample = rng.sample(gone, min(300, len(gone)))
    assert store.get(sample) == [None] * len(sample), "a deleted id is still returned by get()"

    ids = sorted(model.nodes)
    if not ids:
        return matched
    live = set(ids)
    for k in rng.sample(ids, min(5, len(ids))):
        emb = model.nodes[k][3]
        res = store.query(VectorStoreQuery(query_embedding=emb, similarity_top_k=3, exact=True))
        assert res.ids[0] == k, f"exact query for {k}'s embedding returned {res.ids}"
        assert set(res.ids) <= live
        assert abs(res.similarities[0] - 1.0) < 1e-4
    for k in rng.sample(ids, min(3, len(ids))):
        tok = unique_token(model.nodes[k][0])
        res = store.query(VectorStoreQuery(query_str=tok, mode="sparse", similarity_top_k=5))
        # the default analyzer also indexes an identifier's parts (tok, 146, q3), so other chunks
        # may follow; the one holding the whole token must come first and every hit must be live
        assert res.ids[:1] == [k], f"sparse query {tok!r} returned {res.ids}, want {k!r} first"
        assert set(res.ids) <= live, f"sparse query {tok!r} returned a deleted id: {res.ids}"
    probe = model.nodes[rng.choice(ids)][3]
    g = rng.randrange(3)
    ops = sorted({v[1]["op"] for v in model.nodes.values()})
    op_cut = ops[len(ops) // 2]
    tag = f"t{rng.randrange(4)}"
    for flt, pred in (
        ({"grp": g}, lambda md: md["grp"] == g),
        ({"op": {"$gte": op_cut}, "kind": "upsert"}, lambda md: md["op"] >= op_cut and md["kind"] == "upsert"),
        ({"tags": {"$contains": tag}, "flag": True}, lambda md: tag in md["tags"] and md["flag"] is True),
    ):
        want = {k for k in ids if pred(model.nodes[k][1])}
        res = store.query(
            VectorStoreQuery(query_embedding=probe, similarity_top_k=len(ids) + 10, filters=flt, exact=True)
        )
        assert len(res.ids) == len(want) and set(res.ids) == want, (
            f"filter {flt}: got {len(res.ids)} ids, model says {len(want)}; "
            f"extra {sorted(set(res.ids) - want)[:5]}, missing {sorted(want - set(res.ids))[:5]}"
        )
        if want:
            top = max(want, key=lambda k: _cos(model.nodes[k][3], probe))
            assert res.ids[0] == top
    if ann:
        hits = 0
        probes = rng.sample(ids, min(10, len(ids)))
        for k in probes:
            emb = model.nodes[k][3]
            # strategy="ann": through whatever index was persisted, however stale (exact for the rest)
            res = store.query(VectorStoreQuery(query_embedding=emb, similarity_top_k=5, strategy="ann"))
            assert set(res.ids) <= live, f"approximate query returned a deleted id: {set(res.ids) - live}"
            for rid, sim in zip(res.ids, res.similarities):
                assert abs(sim - _cos(model.nodes[rid][3], emb)) < 1e-3, "similarity does not match the node"
            hits += bool(res.ids) and res.ids[0] == k
        assert hits >= len(probes) - 2, f"approximate search found only {hits}/{len(probes)} stored vectors"
        want = {k for k in ids if model.nodes[k][1]["grp"] == g}
        res = store.query(
            VectorStoreQuery(query_embedding=probe, similarity_top_k=10, filters={"grp": g}, strategy="ann")
        )
        assert set(res.ids) <= want and (res.ids or not want)
    return matched


# ----------------------------------------------------------------------------- child modes


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _open(path: str, profile: str, **kw: Any) -> Any:
    from kvgraph.store import EmbeddedVectorStore

    p = PROFILES[profile]
    return EmbeddedVectorStore.open(path, dim=p["dim"], **{**p["open"], **kw})


def mode_crash(path: str, profile: str, start: int, max_ops: int) -> None:
    store = _open(path, profile)
    dim = PROFILES[profile]["dim"]
    _out(f"ready {os.getpid()} idx={int(not store.wait_for_index(0))}")
    for i in range(start, start + max_ops):
        spec = op_spec(profile, i)
        _out(f"begin {i} {spec['kind']}")
        t = time.perf_counter()
        apply_to_store(store, spec, dim)
        dt = time.perf_counter() - t
        _out(f"committed {i} {spec['kind']} {dt:.4f} idx={int(not store.wait_for_index(0))}")
    store.wait_for_index(300)  # a clean shutdown: let the index catch up so close() persists all of it
    store.close()
    _out("closed")


def mode_verify(path: str, profile: str, last: int) -> None:
    base = Model(profile).upto(last)
    nxt = base.copy()
    nxt.apply(op_spec(profile, last + 1))
    store = _open(path, profile, read_only=True)
    try:
        which = check_store(store, [base, nxt], random.Random(last), ann=profile == "ann")
    finally:
        store.close()
    _out(f"verified {last + which}")


def _node_json(n: Any) -> Any:
    if n is None:
        return None
    return {
        "id": n.id,
        "text": n.text,
        "metadata": n.metadata,
        "ref_doc_id": n.ref_doc_id,
        "embedding": [float(x) for x in n.embedding],
    }


def mode_reader(path: str) -> None:
    from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

    store = EmbeddedVectorStore.open(path, read_only=True)
    _out(json.dumps({"ready": os.getpid()}))
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            op = cmd["op"]
            if op == "exit":
                store.close()
                _out(json.dumps({"ok": True}))
                return
            if op == "count":
                reply: Any = {"count": store.count()}
            elif op == "get":
                reply = {"nodes": [_node_json(n) for n in store.get(cmd["ids"])]}
            elif op == "query":
                res = store.query(
                    VectorStoreQuery(
                        query_embedding=cmd.get("embedding"),
                        query_str=cmd.get("query_str"),
                        mode=cmd.get("mode", "dense"),
                        similarity_top_k=cmd["k"],
                        filters=cmd.get("filters"),
                        exact=cmd.get("exact", False),
                    )
                )
                reply = {"ids": res.ids, "similarities": res.similarities}
            elif op == "add":
                store.add_arrays(["r"], np.ones((1, store.dim), np.float32))
                reply = {"ok": True}
            else:
                raise ValueError(op)
        except Exception as e:  # reported to the parent, which decides
            reply = {"error": type(e).__name__, "message": str(e)}
        _out(json.dumps(reply))


STRESS_N = 3000  # stable nodes s0.. (embeddings from default_rng(7)); their content never changes


def stress_vectors() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(STRESS_N, 16)).astype(np.float32)


def mode_reader_stress(path: str, stopfile: str) -> None:
    """Read PATH read-only in a loop while a writer changes it, until STOPFILE exists.

    The writer re-adds (same content) and vacuums, so the stable nodes' slots move but
    their content never changes: every get() and exact query must keep giving the same
    answers. Each error or wrong answer is printed at once as "problem ..."; a JSON
    summary ends the output.
    """
    from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

    stable = stress_vectors()
    ids = [f"s{j}" for j in range(STRESS_N)]
    store = EmbeddedVectorStore.open(path, read_only=True)
    _out(json.dumps({"ready": os.getpid()}))
    r = random.Random(1)
    loops, problems = 0, []

    def problem(msg: str) -> None:
        problems.append(msg)
        _out(f"problem {msg}")

    while not Path(stopfile).exists() and len(problems) < 10:
        loops += 1
        try:
            got = store.get(ids)
            missing = [k for k, n in zip(ids, got) if n is None]
            if missing:
                problem(f"get: stable nodes missing: {missing[:5]}")
            else:
                err = np.abs(np.stack([n.embedding for n in got]) - stable).max(axis=1)
                if (err > 1e-5).any():
                    problem(
                        f"get: {int((err > 1e-5).sum())} stable nodes have another node's embedding, "
                        f"e.g. {ids[int(np.argmax(err))]}"
                    )
            j = r.randrange(STRESS_N)
            res = store.query(VectorStoreQuery(query_embedding=stable[j], similarity_top_k=1, exact=True))
            if res.ids != [ids[j]]:
                problem(f"query: exact query for s{j}'s embedding returned {res.ids}")
        except Exception as e:
            problem(f"{type(e).__name__}: {e}")
    store.close()
    _out(json.dumps({"loops": loops, "problems": problems}))


def mode_hold(path: str) -> None:
    from kvgraph.store import EmbeddedVectorStore

    store = EmbeddedVectorStore.open(path, dim=4)
    _out(f"ready {os.getpid()}")
    cmd = sys.stdin.readline().strip()
    if cmd == "close":
        store.close()
    os._exit(0)  # "exit": leave without close(); the kernel drops the lock


def mode_try_open(path: str, ro: bool) -> None:
    from kvgraph.store import EmbeddedVectorStore

    try:
        store = EmbeddedVectorStore.open(path, read_only=ro)
    except Exception as e:
        _out(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e), "pid": os.getpid()}))
        return
    n = store.count()
    store.close()
    _out(json.dumps({"ok": True, "count": n, "pid": os.getpid()}))


def main(argv: list[str]) -> None:
    mode, path = argv[0], argv[1]
    if mode == "crash":
        mode_crash(path, argv[2], int(argv[3]), int(argv[4]))
    elif mode == "verify":
        mode_verify(path, argv[2], int(argv[3]))
    elif mode == "reader":
        mode_reader(path)
    elif mode == "reader-stress":
        mode_reader_stress(path, argv[2])
    elif mode == "hold":
        mode_hold(path)
    elif mode == "try-open":
        mode_try_open(path, len(argv) > 2 and argv[2] == "ro")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception:
        traceback.print_exc()
        sys.exit(3)
