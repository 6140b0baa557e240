"""The Cypher sandbox: untrusted reads run in a worker process on a read-only handle, and whatever
happens there (a crash, a runaway parse, memory) ends as a one-line error while the caller goes on.

Real worker processes on real database files; crashes are real signals. The engine's own
segfault (5,000 nested parentheses) takes 30-65 s to happen on this machine, so it is `slow`.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

from kvgraph.errors import StoreClosedError
from kvgraph.graphdb.base import (
    CypherSyntaxError,
    QueryAbortedError,
    QueryTimeoutError,
    WriteRejectedError,
)
from kvgraph.graphdb.guard import CypherLimits
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.graphdb.sandbox import SandboxLimits, load_reply

# Guard limits off: to reach the sandbox with what the guard would refuse.
NO_LIMITS = CypherLimits(max_chars=10**7, max_tokens=10**7, max_depth=10**6, max_terms=10**7, max_size=10**12)
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "status").exists(), reason="needs Linux /proc")


def small_graph(path: Path) -> None:
    s = LadybugGraphStore.open(path)
    s.upsert_nodes("Entity", [{"id": "a", "name": "Alpha", "w": 1.5}, {"id": "b", "name": "Beta", "w": 2.0}])
    s.upsert_nodes("Doc", [{"id": "d1", "pages": 3}])
    s.upsert_edges("MENTIONS", [("Doc:d1", "Entity:a", {"weight": 0.5}), ("Doc:d1", "Entity:b", {})])
    s.upsert_edges("RELATED", [("Entity:a", "Entity:b", {"why": "test"})])
    s.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not (PROC / str(pid) / "status").exists() or "zombie" not in (PROC / str(pid) / "status").read_text()


QUERIES = [
    "MATCH (d:Doc)-[m:MENTIONS]->(e:Entity) RETURN d, m, e ORDER BY e.name",
    "MATCH ()-[r:RELATED]->() RETURN r",
    "MATCH p = (d:Doc)-[:MENTIONS]->(:Entity)-[:RELATED*1..2]->(:Entity) RETURN p",
    "MATCH (n) RETURN label(n) AS l, count(*) AS c ORDER BY l",
    "MATCH (n:Entity) RETURN sum(n.w), avg(n.w), collect(n.name)",
    "RETURN date('2020-01-01'), timestamp('2020-01-01 10:00:00'), interval('1 day'), to_blob('ab')",
    "RETURN CAST('1.5' AS DECIMAL(5,2)), {a: 1, b: [1, 2]}, NULL, to_uuid('92a726fd-6c9b-462a-bb96-aab07fdeb432')",
    "MATCH (n:Entity) WHERE n.name = $name RETURN n.id",
]


def test_the_sandbox_returns_what_the_engine_returns_in_process(tmp_path: Path) -> None:
    small_graph(tmp_path / "g")
    boxed = LadybugGraphStore.open(tmp_path / "g", read_only=True)
    here = LadybugGraphStore.open(tmp_path / "g", read_only=True, sandbox=False)
    try:
        for q in QUERIES:
            a = boxed.query(q, {"name": "Beta"} if "$name" in q else None)
            b = here.query(q, {"name": "Beta"} if "$name" in q else None)
            assert (a.columns, a.rows, a.truncated) == (b.columns, b.rows, b.truncated), q
        cut = boxed.query("UNWIND range(1, 50) AS x RETURN x", max_rows=7)
        assert cut.truncated and [r[0] for r in cut.rows] == list(range(1, 8))
        assert boxed.sandbox is not None and boxed.sandbox.pid not in (None, os.getpid())
        assert here.sandbox is None
        # explain runs in the worker too, after the guard
        with pytest.raises(CypherSyntaxError, match="Nope"):
            boxed.explain("MATCH (n:Nope) RETURN n")
        with pytest.raises(WriteRejectedError, match="UNINSTALL"):
            boxed.explain("UNINSTALL json")
        boxed.explain("MATCH (n:Entity) WHERE n.name = $x RETURN n", {"x": "a"})
    finally:
        boxed.close()
        here.close()


def test_a_relative_store_path_is_the_callers_not_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_graph(tmp_path / "g")
    monkeypatch.chdir(tmp_path)  # the worker runs in its own home: "g" must still mean tmp_path/g
    boxed = LadybugGraphStore.open("g", read_only=True)
    try:
        assert boxed.query("MATCH (n:Entity) RETURN count(n)").rows[0][0] > 0
    finally:
        boxed.close()


def test_reads_see_every_committed_write_of_their_store(tmp_path: Path) -> None:
    s = LadybugGraphStore.open(tmp_path / "g")
    try:
        s.upsert_nodes("N", [{"id": i, "x": "a"} for i in range(3)])
        assert s.query("MATCH (n:N) RETURN count(n)").scalar() == 3
        pid = s.sandbox.pid if s.sandbox else None
        s.upsert_nodes("N", [{"id": 10}])
        s.query("MATCH (n:N {id: 10}) SET n.x = 'set'", read_only=False)
        assert s.query("MATCH (n:N) RETURN count(n), max(n.x)").rows == [[4, "set"]]
        assert s.sandbox is not None and s.sandbox.pid == pid  # reopened its handle, same process
        # inside a transaction reads run here and see the transaction's own writes
        with pytest.raises(RuntimeError, match="undo"), s.transaction():
            s.query("CREATE (:N {id: 99})", read_only=False)
            assert s.query("MATCH (n:N) RETURN count(n)").scalar() == 5
            raise RuntimeError("undo")
        assert s.query("MATCH (n:N) RETURN count(n)").scalar() == 4
    finally:
        s.close()


def _kill_when_busy(store: LadybugGraphStore, sig: signal.Signals, after_s: float) -> threading.Thread:
    """Send ``sig`` to the store's worker ``after_s`` seconds from now (it is running a query then)."""
    sandbox = store.sandbox
    assert sandbox is not None

    def run() -> None:
        time.sleep(after_s)
        assert sandbox.pid is not None
        os.kill(sandbox.pid, sig)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_crashing_worker_gives_a_clear_error_and_the_caller_goes_on(tmp_path: Path) -> None:
    small_graph(tmp_path / "g")
    s = LadybugGraphStore.open(tmp_path / "g", read_only=True, cypher_limits=NO_LIMITS)
    try:
        assert s.query("MATCH (n) RETURN count(n)").scalar() == 3
        assert s.sandbox is not None
        first = s.sandbox.pid
        killer = _kill_when_busy(s, signal.SIGSEGV, 0.5)
        with pytest.raises(QueryAbortedError, match=r"SIGSEGV.*caller is unaffected") as e:
            s.query("RETURN 1" + "+1" * 8000, timeout_s=60)  # ~2 s of parsing: the crash comes first
        killer.join()
        assert "\n" not in str(e.value)
        assert first is not None and not alive(first)
        assert s.query("MATCH (n) RETURN count(n)").scalar() == 3  # a new worker answers
        assert s.sandbox.starts == 2 and s.sandbox.pid not in (None, first)
    finally:
        s.close()


def test_a_query_past_its_deadline_is_stopped_with_its_worker(tmp_path: Path) -> None:
    """The engine's timeout does not cover parsing; the caller's deadline does."""
    small_graph(tmp_path / "g")
    s = LadybugGraphStore.open(
        tmp_path / "g", read_only=True, cypher_limits=NO_LIMITS, sandbox_limits=SandboxLimits(grace_s=0.5)
    )
    try:
        s.query("RETURN 1")
        t = time.perf_counter()
        with pytest.raises(QueryTimeoutError, match="sandbox process was stopped"):
            s.query("RETURN 1" + "+1" * 20000, timeout_s=0.5)  # parses for tens of seconds
        assert time.perf_counter() - t < 10
        assert s.query("MATCH (n:Entity) RETURN count(n)").scalar() == 2
    finally:
        s.close()


def test_memory_is_capped_and_the_next_query_gets_a_fresh_worker(tmp_path: Path) -> None:
    small_graph(tmp_path / "g")
    s = LadybugGraphStore.open(
        tmp_path / "g",
        read_only=True,
        sandbox_limits=SandboxLimits(memory_bytes=256 << 20, buffer_pool_bytes=128 << 20),
    )
    try:
        # the guard cannot size range(1, 1000*1000*1000): 8 GB of list, stopped by the worker's limits
        with pytest.raises(QueryAbortedError, match="memory"):
            s.query("UNWIND range(1, 1000*1000*1000) AS x RETURN count(x)")
        assert s.query("MATCH (n) RETURN count(n)").scalar() == 3
        assert s.sandbox is not None and s.sandbox.starts == 2
    finally:
        s.close()


def test_oversized_results_are_refused_not_sent(tmp_path: Path) -> None:
    small_graph(tmp_path / "g")
    s = LadybugGraphStore.open(tmp_path / "g", read_only=True, sandbox_limits=SandboxLimits(max_result_bytes=20_000))
    try:
        with pytest.raises(QueryAbortedError, match="bytes, more than the sandbox returns"):
            s.query("UNWIND range(1, 5000) AS x RETURN x, 'padding padding'")
        assert len(s.query("UNWIND range(1, 50) AS x RETURN x").rows) == 50
    finally:
        s.close()


@needs_proc
def test_the_worker_has_no_secrets_a_private_home_and_ends_with_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_graph(tmp_path / "g")
    monkeypatch.setenv("KVGRAPH_NEO4J_PASSWORD", "s3cret-neo4j")
    monkeypatch.setenv("KVGRAPH_LLM_API_KEY", "s3cret-llm")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = LadybugGraphStore.open(tmp_path / "g", read_only=True)
    s.query("RETURN 1")
    assert s.sandbox is not None
    pid = s.sandbox.pid
    assert pid is not None
    env = dict(kv.split("=", 1) for kv in (PROC / str(pid) / "environ").read_bytes().decode().split("\0") if "=" in kv)
    assert "s3cret" not in " ".join(env.values())
    assert env["HOME"] != str(tmp_path / "home") and Path(env["HOME"]).is_dir()
    limits = (PROC / str(pid) / "limits").read_text()
    assert any(line.startswith("Max core file size") and line.split()[4] == "0" for line in limits.splitlines())
    s.close()
    assert not alive(pid) and not Path(env["HOME"]).exists()
    with pytest.raises(StoreClosedError):
        s.query("RETURN 1")


def test_replies_may_hold_plain_data_only() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="unexpected type"):
        load_reply(pickle.dumps(("ok", Evil())))


@pytest.mark.slow
def test_the_engines_own_segfault_is_contained(tmp_path: Path) -> None:
    """RETURN + 5,000 nested parentheses segfaults Ladybug 0.22's parser (after 30-65 s here)."""
    small_graph(tmp_path / "g")
    s = LadybugGraphStore.open(tmp_path / "g", read_only=True, cypher_limits=NO_LIMITS)
    try:
        with pytest.raises(QueryAbortedError, match="SIGSEGV"):
            s.query("RETURN " + "(" * 5000 + "1" + ")" * 5000, timeout_s=300)
        assert s.query("MATCH (n) RETURN count(n)").scalar() == 3
    finally:
        s.close()
