"""Crash safety of the embedded store, with real processes killed by SIGKILL mid-write.

A child writer (``_crash_worker.py crash``) applies a deterministic op sequence (add,
upsert, delete, delete_ref_doc, vacuum, checkpoint) and prints "committed <i>" after each
call returns. The parent kills it at a random moment, reopens the store and checks that
it equals *exactly* the model state after the last printed op or after the op that was
in flight, then lets the next writer continue from there. Nothing is mocked.

``KVGRAPH_CRASH_ROUNDS`` (default 40) sets the number of rounds of the mixed crash loop;
the vacuum and ANN loops scale with it.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

WORKER = Path(__file__).with_name("_crash_worker.py")
_spec = importlib.util.spec_from_file_location("kvgraph_crash_worker", WORKER)
assert _spec and _spec.loader
cw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cw)

ROUNDS = int(os.environ.get("KVGRAPH_CRASH_ROUNDS", "40"))


class Child:
    """A worker process whose stdout lines are collected by a thread as they arrive."""

    def __init__(self, args: list[str], stderr_path: Path, stdin: bool = False) -> None:
        self.stderr_path = stderr_path
        self._err = open(stderr_path, "wb")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[str], bool], timeout: float = 120) -> str | None:
        """The first line satisfying pred (waiting for it), or None if the child ended first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                if self._eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"worker did not report in {timeout}s; lines: {self.lines[-5:]}")
                self._cond.wait(left)

    def send(self, obj: object) -> dict:
        """Send one JSON command and return the next JSON reply (reader mode)."""
        assert self.proc.stdin is not None
        n = len(self.lines)
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        with self._cond:
            while len(self.lines) <= n:
                if self._eof:
                    raise AssertionError(f"reader died: {self.stderr()}")
                self._cond.wait(60)
            return json.loads(self.lines[n])

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)  # no-op if it already exited
        return self.finish()

    def finish(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout)
        self._thread.join(timeout)
        self._err.close()
        return rc

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]


def _committed(lines: list[str]) -> list[int]:
    return [int(ln.split()[1]) for ln in lines if ln.startswith("committed ")]


def crash_loop(tmp_path: Path, profile: str, rounds: int, seed: int, max_ops: int) -> collections.Counter:
    """Run kill/verify/continue rounds on one store; return counts of where kills landed."""
    path = tmp_path / "kb"
    rnd = random.Random(seed)
    model = cw.Model(profile)  # the state after every op < next_op
    next_op = 0
    landed: collections.Counter = collections.Counter()
    vacuum_secs = [0.1]
    ann = profile == "ann"
    for r in range(rounds):
        final = r == rounds - 1
        child = Child(["crash", str(path), profile, str(next_op), str(max_ops)], tmp_path / f"stderr-{r}.txt")
        how = (
            "finish"
            if final
            else rnd.choice(
                {"mixed": ["startup"] + ["running"] * 5, "vacuum": ["running"] + ["vacuum"] * 3, "ann": ["running"]}[
                    profile
                ]
            )
        )
        if how == "startup":  # may land while the interpreter starts or the store opens/recovers
            time.sleep(rnd.uniform(0.02, 0.6))
        elif how == "running":
            child.wait_for(lambda ln: ln.startswith("ready"))
            time.sleep(rnd.uniform(0.05, 1.5) if ann else rnd.uniform(0.02, 0.4))
        elif how == "vacuum":  # kill inside vacuum(): wait for it to begin, then a fraction of its duration
            child.wait_for(lambda ln: ln.startswith("begin") and ln.endswith("vacuum"))
            time.sleep(rnd.uniform(0.0, 0.9 * float(np.median(vacuum_secs))))
        rc = child.finish() if final else child.kill()
        assert rc in (0, -signal.SIGKILL), f"worker failed (rc {rc}):\n{child.stderr()}"
        lines = child.lines
        vacuum_secs += [float(ln.split()[3]) for ln in lines if ln.startswith("committed") and " vacuum " in ln]
        if final:
            assert lines and lines[-1] == "closed", child.stderr()
        # where did the kill land?
        if not lines:
            landed["startup"] += 1
        elif lines[-1].startswith("begin"):
            landed[lines[-1].split()[2]] += 1
        else:
            landed["between ops"] += 1
        reports = [ln for ln in lines if " idx=" in ln]
        if reports and reports[-1].endswith("idx=1"):
            landed["indexer running"] += 1  # the last report before the kill saw the indexer busy
        done = _committed(lines)
        last = done[-1] if done else next_op - 1
        assert done == list(range(next_op, last + 1))
        for i in range(next_op, last + 1):
            model.apply(cw.op_spec(profile, i))
        nxt = model.copy()
        nxt.apply(cw.op_spec(profile, last + 1))
        check_rng = random.Random(seed * 1000 + r)
        store = EmbeddedVectorStore.open(path, read_only=True, **cw.PROFILES[profile]["open"])
        try:
            which = cw.check_store(store, [model, nxt], check_rng, ann=ann)
            if ann:
                probe = next(iter(model.nodes.values()))[3]
                plan = store.query(VectorStoreQuery(query_embedding=probe, similarity_top_k=3, strategy="ann")).plan
                landed["verified through the ANN index"] += plan.startswith("ann")
        finally:
            store.close()
        if which == 1:
            # only possible if op last+1 had started
            assert f"begin {last + 1} {cw.op_spec(profile, last + 1)['kind']}" in lines
        if not ann and r % 3 == 2:
            # the writer's recovery path (cuts torn rows, drops orphans) must agree with the reader
            store = EmbeddedVectorStore.open(path, **cw.PROFILES[profile]["open"])
            try:
                assert cw.check_store(store, [model, nxt], check_rng) == which
            finally:
                store.close()
        if which == 1:
            model, next_op = nxt, last + 2
        else:
            next_op = last + 1
    # an independent check by a fresh process that replays the whole history from op 0
    out = subprocess.run(
        [sys.executable, str(WORKER), "verify", str(path), profile, str(next_op - 1)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["verified", str(next_op - 1)]
    landed["ops"] = next_op
    return landed


@pytest.mark.slow
def test_crash_loop_mixed_ops(tmp_path):
    landed = crash_loop(tmp_path, "mixed", ROUNDS, seed=1, max_ops=250)
    print(dict(landed))
    kills_in_writes = sum(landed[k] for k in ("add", "upsert", "delete", "delete_ref_doc"))
    assert kills_in_writes >= 1 and landed["ops"] > ROUNDS, landed


@pytest.mark.slow
def test_crash_loop_during_vacuum(tmp_path):
    landed = crash_loop(tmp_path, "vacuum", max(10, ROUNDS // 4), seed=2, max_ops=12)
    print(dict(landed))
    assert landed["vacuum"] >= 1, f"no kill landed inside vacuum(): {dict(landed)}"


@pytest.mark.slow
def test_crash_loop_during_background_index_build(tmp_path):
    landed = crash_loop(tmp_path, "ann", max(8, ROUNDS // 5), seed=3, max_ops=12)
    print(dict(landed))
    assert landed["indexer running"] >= 1, f"no kill landed while the indexer ran: {dict(landed)}"
    assert landed["verified through the ANN index"] >= 1, f"the persisted index was never used: {dict(landed)}"


# ----------------------------------------------------------------------------- torn appends


def _nodes(n: int, dim: int, seed: int, prefix: str = "n") -> list[Node]:
    vecs = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return [
        Node(
            id=f"{prefix}{i}",
            text=f"{prefix} number {i} word{i}",
            metadata={"i": i, "par": i % 2},
            embedding=vecs[i],
            ref_doc_id=f"doc{i % 3}",
        )
        for i in range(n)
    ]


def _snapshot(store: EmbeddedVectorStore, nodes: list[Node]) -> tuple:
    got = store.get([n.id for n in nodes])
    dense = [store.query(VectorStoreQuery(query_embedding=n.embedding, similarity_top_k=5)).ids for n in nodes[:10]]
    sparse = store.query(VectorStoreQuery(query_str="word7 number", mode="sparse", similarity_top_k=5)).ids
    filt = store.query(
        VectorStoreQuery(query_embedding=nodes[0].embedding, similarity_top_k=1000, filters={"par": 1})
    ).ids
    return (
        store.count(),
        [(g.id, g.text, g.metadata, np.round(g.embedding, 5).tolist()) for g in got],
        dense,
        sparse,
        sorted(filt),
    )


@pytest.mark.parametrize("garbage", ["partial-row", "whole-rows"])
def test_torn_vector_append_is_ignored_and_cut(tmp_path, garbage):
    dim = 8
    path = tmp_path / "kb"
    nodes = _nodes(100, dim, seed=4)
    with EmbeddedVectorStore.open(path, dim=dim) as s:
        s.add(nodes[:60])
        s.add(nodes[60:])
        before = _snapshot(s, nodes)
    vec = path / "vectors-0.f32"
    committed_size = vec.stat().st_size
    assert committed_size == 100 * dim * 4
    # uncommitted rows, as a writer killed between its vector fsync and its records commit leaves
    if garbage == "whole-rows":
        # rows that would win every query if they were read: unit copies of the probes
        probes = np.stack([n.embedding for n in nodes[:10]]).astype(np.float32)
        tail = (probes / np.linalg.norm(probes, axis=1, keepdims=True)).tobytes()
    else:
        tail = np.random.default_rng(5).bytes(3 * dim * 4 + 5)
    with open(vec, "ab") as f:
        f.write(tail)
    # a reader ignores the tail (it never repairs anything)
    with EmbeddedVectorStore.open(path, read_only=True) as ro:
        assert _snapshot(ro, nodes) == before
    assert vec.stat().st_size == committed_size + len(tail)
    # the writer cuts it off on open
    with EmbeddedVectorStore.open(path) as w:
        assert vec.stat().st_size == committed_size
        assert _snapshot(w, nodes) == before
        extra = _nodes(1, dim, seed=6, prefix="x")
        w.add(extra)
        assert vec.stat().st_size == committed_size + dim * 4
    with EmbeddedVectorStore.open(path, read_only=True) as ro:
        assert ro.count() == 101
        res = ro.query(VectorStoreQuery(query_embedding=extra[0].embedding, similarity_top_k=1, exact=True))
        assert res.ids == ["x0"]
        assert np.allclose(ro.get(["x0"])[0].embedding, extra[0].embedding, atol=1e-5)
        assert _snapshot(ro, nodes)[1] == before[1]


# ----------------------------------------------------------------------------- readers in other processes


def _reader_get(reader: Child, ids: list[str]) -> list[dict | None]:
    reply = reader.send({"op": "get", "ids": ids})
    assert "error" not in reply, reply
    return reply["nodes"]


def _reader_query(reader: Child, **kw) -> list[str]:
    kw = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    reply = reader.send({"op": "query", **kw})
    assert "error" not in reply, reply
    return reply["ids"]


def _assert_reader_matches(reader: Child, live: dict[str, Node], gone: list[str]) -> None:
    assert reader.send({"op": "count"}) == {"count": len(live)}
    ids = sorted(live)
    for nid, got in zip(ids, _reader_get(reader, ids)):
        want = live[nid]
        assert got is not None, f"reader does not see {nid}"
        assert (got["text"], got["metadata"], got["ref_doc_id"]) == (want.text, want.metadata, want.ref_doc_id)
        assert np.allclose(got["embedding"], want.embedding, atol=1e-5)
    assert _reader_get(reader, gone) == [None] * len(gone)
    for nid in ids[:: max(1, len(ids) // 7)]:
        assert _reader_query(reader, embedding=live[nid].embedding, k=3, exact=True)[0] == nid
        word = live[nid].text.split()[-1]
        assert _reader_query(reader, mode="sparse", query_str=word, k=3) == [nid]
    want = sorted(k for k, n in live.items() if n.metadata["par"] == 1)
    got = _reader_query(reader, embedding=live[ids[0]].embedding, k=10_000, filters={"par": 1})
    assert sorted(got) == want


def test_reader_process_sees_adds_deletes_and_vacuum(tmp_path):
    dim = 8
    path = tmp_path / "kb"
    nodes = {n.id: n for n in _nodes(120, dim, seed=7)}
    ids = list(nodes)
    writer = EmbeddedVectorStore.open(path, dim=dim)
    writer.add([nodes[i] for i in ids[:20]])
    reader = Child(["reader", str(path)], tmp_path / "reader.txt", stdin=True)
    try:
        assert reader.wait_for(lambda ln: "ready" in ln)
        live = {i: nodes[i] for i in ids[:20]}
        _assert_reader_matches(reader, live, [])
        # adds: visible as soon as add() has returned
        writer.add([nodes[i] for i in ids[20:120]])
        live = dict(nodes)
        _assert_reader_matches(reader, live, [])
        # deletes by id and by document
        writer.delete(ids[:10])
        assert writer.delete_ref_doc("doc1") > 0
        gone = [i for i in ids if i in ids[:10] or nodes[i].ref_doc_id == "doc1"]
        live = {i: n for i, n in nodes.items() if i not in gone}
        _assert_reader_matches(reader, live, gone)
        # upsert: same id, new content
        up = _nodes(5, dim, seed=8, prefix="n")
        for n in up:
            n.text = f"replaced {n.id} fresh{n.id}"
            n.ref_doc_id = "doc0"
        writer.add(up)
        live.update({n.id: n for n in up})
        gone = [g for g in gone if g not in live]
        _assert_reader_matches(reader, live, gone)
        # vacuum rewrites the vector file under the reader
        stats = writer.vacuum()
        assert stats["rows"] == len(live)
        assert not (path / "vectors-0.f32").exists()
        _assert_reader_matches(reader, live, gone)
        # and writes after the vacuum
        more = _nodes(30, dim, seed=9, prefix="m")
        writer.add(more)
        live.update({n.id: n for n in more})
        _assert_reader_matches(reader, live, gone)
        # a reader cannot write
        reply = reader.send({"op": "add"})
        assert reply["error"] == "ReadOnlyError"
        assert reader.send({"op": "exit"}) == {"ok": True}
        assert reader.finish() == 0
        # a reader started now, while the writer still holds the lock, sees the same
        out = subprocess.run(
            [sys.executable, str(WORKER), "try-open", str(path), "ro"], capture_output=True, text=True, timeout=120
        )
        res = json.loads(out.stdout)
        assert res["ok"] and res["count"] == len(live), res
    finally:
        if reader.proc.poll() is None:
            reader.kill()
        writer.close()


# Readers racing a writer: every read-only call must see one committed state (one SQLite
# snapshot for records and in-memory state) and survive a vacuum that removes its vector file.


def test_reader_process_stays_correct_while_writer_writes_and_vacuums(tmp_path):
    """A reader process hammering get()/query() while the writer adds, re-adds, deletes, vacuums."""
    path = tmp_path / "kb"
    stable = cw.stress_vectors()
    ids = [f"s{j}" for j in range(cw.STRESS_N)]
    writer = EmbeddedVectorStore.open(path, dim=16)
    writer.add_arrays(ids, stable)
    stop = tmp_path / "stop"
    reader = Child(["reader-stress", str(path), str(stop)], tmp_path / "stress.txt")
    rng = np.random.default_rng(11)
    try:
        assert reader.wait_for(lambda ln: "ready" in ln)
        for it in range(200):
            if any(ln.startswith("problem") for ln in reader.lines):
                break
            moved = sorted(rng.choice(cw.STRESS_N, 20, replace=False).tolist())
            writer.add_arrays([ids[j] for j in moved], stable[moved])  # same content, new slots
            tmp = [f"t{it}-{j}" for j in range(20)]
            writer.add_arrays(tmp, rng.normal(size=(20, 16)).astype(np.float32))
            writer.delete(tmp)
            if it % 2:
                writer.vacuum()
        stop.touch()
        assert reader.finish() == 0, reader.stderr()
    finally:
        stop.touch()
        if reader.proc.poll() is None:
            reader.kill()
        writer.close()
    summary = json.loads(reader.lines[-1])
    assert summary["loops"] > 0
    assert summary["problems"] == [], summary["problems"]


class WriteWhenIterated(list):
    """An id list whose first iteration runs a write (by default writer.vacuum()): it makes a
    commit land in the middle of a reader's call, deterministically, after the reader has
    loaded its state (the interleaving that the stress test above hits by chance)."""

    def __init__(self, items, writer, write=None):
        super().__init__(items)
        self.write = write or writer.vacuum
        self.fired = False

    def __iter__(self):
        if not self.fired:
            self.fired = True
            self.write()
        return super().__iter__()


def _moved_store(tmp_path):
    vecs = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    writer = EmbeddedVectorStore.open(tmp_path / "kb", dim=4)
    writer.add_arrays([f"a{i}" for i in range(10)], vecs)
    writer.add_arrays(["a0"], vecs[:1])  # a0 moves to slot 10; vacuum will shift every slot down by one
    reader = EmbeddedVectorStore.open(tmp_path / "kb", read_only=True)
    return writer, reader, vecs


def test_reader_get_racing_vacuum_returns_the_right_embedding(tmp_path):
    writer, reader, vecs = _moved_store(tmp_path)
    try:
        assert np.allclose(reader.get(["a5"])[0].embedding, vecs[5], atol=1e-5)  # maps the vector file
        got = reader.get(WriteWhenIterated(["a5"], writer))[0]
        assert got is not None and np.allclose(got.embedding, vecs[5], atol=1e-5), (
            f"a5 came back with {got.embedding if got else None}; a4's is {vecs[4]}"
        )
    finally:
        reader.close()
        writer.close()


def test_reader_keeps_reading_its_snapshot_file_after_vacuum_unlinks_it(tmp_path, monkeypatch):
    """No retry needed: the reader holds its snapshot's vector file open, so a vacuum that unlinks
    it mid-call (after rows were appended, forcing a remap) does not fail the read."""
    import kvgraph.store.core as core  # where the read snapshot's retry count lives

    monkeypatch.setattr(core, "READ_RETRIES", 1)
    writer, reader, _ = _moved_store(tmp_path)
    try:
        reader.get(["a3"])  # maps the vector file (11 rows)
        extra = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
        writer.add_arrays(["b0"], extra)  # 12 rows in the same file: the reader must remap it
        q = VectorStoreQuery(  # node_ids are read inside the call: the vacuum lands mid-snapshot
            query_embedding=extra[0],
            similarity_top_k=1,
            exact=True,
            node_ids=WriteWhenIterated(["b0", *(f"a{i}" for i in range(10))], writer),
        )
        assert reader.query(q).ids == ["b0"]
    finally:
        reader.close()
        writer.close()


def test_reader_get_racing_upsert_returns_the_node(tmp_path):
    writer, reader, vecs = _moved_store(tmp_path)
    try:
        reader.get(["a3"])  # maps the vector file (11 rows)
        new = vecs[5] * 2  # a5 gets a new embedding, in a new slot (11)
        got = reader.get(WriteWhenIterated(["a5"], writer, lambda: writer.add_arrays(["a5"], new[None, :])))[0]
        # either answer is fine (the call may see the state before or after the upsert); an error is not
        assert got is not None and (
            np.allclose(got.embedding, vecs[5], atol=1e-5) or np.allclose(got.embedding, new, atol=1e-5)
        )
    finally:
        reader.close()
        writer.close()


def test_reader_query_racing_vacuum_returns_the_right_node(tmp_path):
    writer, reader, vecs = _moved_store(tmp_path)
    try:
        reader.get(["a3"])  # maps the vector file
        q = VectorStoreQuery(
            query_embedding=vecs[3],
            similarity_top_k=1,
            exact=True,
            node_ids=WriteWhenIterated([f"a{i}" for i in range(10)], writer),
        )
        assert reader.query(q).ids == ["a3"]
    finally:
        reader.close()
        writer.close()


def test_reader_query_racing_vacuum_reports_no_false_corruption(tmp_path):
    writer, reader, vecs = _moved_store(tmp_path)
    try:
        reader.count()  # state loaded, vector file not opened yet
        writer.add_arrays(["a1"], vecs[1:2])  # a new generation: the reader reloads on its next call
        q = VectorStoreQuery(
            query_embedding=vecs[3],
            similarity_top_k=1,
            exact=True,
            node_ids=WriteWhenIterated([f"a{i}" for i in range(10)], writer),
        )
        assert reader.query(q).ids == ["a3"]  # raises CorruptionError: vectors-3.f32 truncated
    finally:
        reader.close()
        writer.close()
