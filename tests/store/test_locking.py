"""One writer per store, across real processes; read-only and closed stores refuse writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kvgraph.errors import (
    DimensionMismatchError,
    InvalidInputError,
    KvgraphError,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
)
from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

WORKER = Path(__file__).with_name("_crash_worker.py")


def try_open(path: Path, read_only: bool = False) -> dict:
    """Open the store in a fresh process; its JSON report (ok/count or error/message, pid)."""
    args = [sys.executable, str(WORKER), "try-open", str(path)] + (["ro"] if read_only else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Holder:
    """A child process that opens the store as writer and keeps it open until told."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "hold", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["ready"], self.proc.stderr.read() if self.proc.stderr else line
        self.pid = int(line[1])
        assert self.pid == self.proc.pid

    def tell(self, cmd: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.wait(60)

    def kill9(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(60)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill9()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture
def holder(tmp_path):
    h = Holder(tmp_path / "kb")
    yield h
    h.cleanup()


def _node(i: int, dim: int = 4) -> Node:
    return Node(
        id=f"n{i}",
        text=f"text {i}",
        metadata={"i": i},
        embedding=np.random.default_rng(i).normal(size=dim).astype(np.float32),
    )


def test_second_writer_process_is_refused_with_the_holders_pid(tmp_path, holder):
    path = tmp_path / "kb"
    # a writer in this process
    with pytest.raises(StoreLockedError) as e:
        EmbeddedVectorStore.open(path)
    assert f"pid {holder.pid}" in str(e.value)
    assert str(path) in str(e.value)
    # and one in yet another process
    res = try_open(path)
    assert res["ok"] is False and res["error"] == "StoreLockedError", res
    assert f"pid {holder.pid}" in res["message"]
    assert res["pid"] != holder.pid


def test_refused_open_leaves_nothing_behind(tmp_path, holder):
    path = tmp_path / "kb"
    before = sorted(p.name for p in path.iterdir())
    lock_before = (path / "LOCK").read_bytes()
    for _ in range(3):
        with pytest.raises(StoreLockedError):
            EmbeddedVectorStore.open(path, dim=4)
    assert sorted(p.name for p in path.iterdir()) == before
    assert (path / "LOCK").read_bytes() == lock_before  # the holder's identity is not overwritten
    assert holder.tell("close") == 0
    with EmbeddedVectorStore.open(path) as s:
        assert s.count() == 0


@pytest.mark.parametrize("how", ["close", "exit-without-close", "sigkill"])
def test_lock_is_free_after_the_holder_is_gone(tmp_path, holder, how):
    path = tmp_path / "kb"
    assert try_open(path)["error"] == "StoreLockedError"
    if how == "close":
        assert holder.tell("close") == 0
    elif how == "exit-without-close":
        assert holder.tell("exit") == 0
    else:
        assert holder.kill9() == -signal.SIGKILL
    res = try_open(path)
    assert res["ok"] is True and res["count"] == 0, res
    with EmbeddedVectorStore.open(path) as s:
        s.add([_node(1)])
        assert s.count() == 1
        # now this process holds it: the next process is refused and told our pid
        res = try_open(path)
        assert res["error"] == "StoreLockedError" and f"pid {os.getpid()}" in res["message"]
    res = try_open(path)
    assert res["ok"] is True and res["count"] == 1


def test_read_only_opener_works_while_a_writer_holds_the_lock(tmp_path):
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=4) as w:
        w.add([_node(i) for i in range(5)])
        res = try_open(path, read_only=True)
        assert res["ok"] is True and res["count"] == 5
        with EmbeddedVectorStore.open(path, read_only=True) as r:  # and in the writer's own process
            assert r.count() == 5
            w.add([_node(5)])
            assert r.count() == 6
            assert r.get(["n5"])[0].text == "text 5"
        # the lock is still held by w
        assert try_open(path)["error"] == "StoreLockedError"


def test_same_process_cannot_open_the_same_store_twice_as_writer(tmp_path):
    path = tmp_path / "kb"
    first = EmbeddedVectorStore.open(path, dim=4)
    try:
        with pytest.raises(StoreLockedError) as e:
            EmbeddedVectorStore.open(path)
        assert f"pid {os.getpid()}" in str(e.value)
        # through another spelling of the same directory, too
        (tmp_path / "alias").symlink_to(path, target_is_directory=True)
        with pytest.raises(StoreLockedError):
            EmbeddedVectorStore.open(tmp_path / "alias")
        with pytest.raises(StoreLockedError):
            EmbeddedVectorStore.open(Path(os.path.relpath(path)))
        # the refused attempts did not release the first writer's lock
        assert try_open(path)["error"] == "StoreLockedError"
        first.add([_node(1)])
        assert first.count() == 1
    finally:
        first.close()
    with EmbeddedVectorStore.open(path) as again:
        assert again.count() == 1


def test_failed_open_releases_the_lock(tmp_path):
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=4, metric="cosine") as s:
        s.add([_node(1)])
    with pytest.raises(DimensionMismatchError):
        EmbeddedVectorStore.open(path, dim=8)
    with pytest.raises(InvalidInputError):
        EmbeddedVectorStore.open(path, metric="l2")
    res = try_open(path)
    assert res["ok"] is True and res["count"] == 1
    with EmbeddedVectorStore.open(path) as s:
        assert s.count() == 1


def test_close_releases_the_lock_and_is_idempotent(tmp_path):
    path = tmp_path / "kb"
    s = EmbeddedVectorStore.open(path, dim=4)
    s.add([_node(1)])
    s.close()
    s.close()
    res = try_open(path)
    assert res["ok"] is True and res["count"] == 1


def _write_calls(s: EmbeddedVectorStore) -> dict:
    return {
        "add": lambda: s.add([_node(9)]),
        "add_arrays": lambda: s.add_arrays(["z"], np.ones((1, 4), np.float32)),
        "delete": lambda: s.delete(["n1"]),
        "delete_ref_doc": lambda: s.delete_ref_doc("doc"),
        "vacuum": lambda: s.vacuum(),
        "checkpoint": lambda: s.checkpoint(),
        "persist": lambda: s.persist(),
    }


def _read_calls(s: EmbeddedVectorStore) -> dict:
    q = np.ones(4, np.float32)
    return {
        "count": lambda: s.count(),
        "get": lambda: s.get(["n1"]),
        "query": lambda: s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=1)),
        "sparse": lambda: s.query(VectorStoreQuery(query_str="text", mode="sparse", similarity_top_k=1)),
        "query_batch": lambda: s.query_batch(q[None, :], similarity_top_k=1),
        "stats": lambda: s.stats(),
        "build_index": lambda: s.build_index(),
    }


def test_writes_on_a_read_only_store_raise_read_only_error(tmp_path):
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=4) as w:
        w.add([_node(1), _node(2)])
    vec = path / "vectors-0.f32"
    size = vec.stat().st_size
    with EmbeddedVectorStore.open(path, read_only=True) as r:
        for name, call in _write_calls(r).items():
            with pytest.raises(ReadOnlyError) as e:
                call()
            assert str(path) in str(e.value), name
        for call in _read_calls(r).values():
            call()  # reads work
        assert r.count() == 2
    assert vec.stat().st_size == size
    assert not (path / "vectors-1.f32").exists()
    with EmbeddedVectorStore.open(path) as w:
        assert w.count() == 2 and w.get(["n1"])[0] is not None


def test_read_only_open_of_a_missing_store_does_not_create_it(tmp_path):
    path = tmp_path / "nothing"
    with pytest.raises(KvgraphError):
        EmbeddedVectorStore.open(path, read_only=True)
    assert not (path / "records.sqlite").exists()


@pytest.mark.parametrize("read_only", [False, True])
def test_use_after_close_raises_store_closed_error(tmp_path, read_only):
    path = tmp_path / "kb"
    with EmbeddedVectorStore.open(path, dim=4) as w:
        w.add([_node(1)])
    s = EmbeddedVectorStore.open(path, read_only=read_only)
    s.close()
    calls = {**_read_calls(s), **_write_calls(s)}
    for name, call in calls.items():
        with pytest.raises(StoreClosedError):
            call()
            pytest.fail(f"{name} worked on a closed store")
    s.close()  # still fine
    with EmbeddedVectorStore.open(path, read_only=True) as r:
        assert r.count() == 1
