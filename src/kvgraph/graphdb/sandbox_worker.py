"""The Cypher sandbox's worker process: ``python -m kvgraph.graphdb.sandbox_worker CONFIG READ_FD WRITE_FD``.

Started by :class:`~kvgraph.graphdb.sandbox.CypherSandbox`, never by hand. It opens the store
read-only, limits itself (address space, core dumps; CPU per query), says ``ready`` and then
answers one request at a time until its request pipe closes. Requests are pickled dicts from
the trusted caller; replies are ``("ok", value)`` or ``("err", error class name, message)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from kvgraph.errors import KvgraphError
from kvgraph.graphdb.base import QueryAbortedError
from kvgraph.graphdb.guard import CypherLimits
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.graphdb.sandbox import SandboxLimits, read_frame, write_frame

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows; the deadline and the buffer pool still apply
    resource = None  # type: ignore[assignment]


def _address_space() -> int | None:
    """This process's mapped address space in bytes (Linux), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _limit_memory(extra: int | None) -> None:
    """Cap the address space at what is mapped now plus ``extra`` bytes (None lifts the cap).

    Relative, because Ladybug maps its whole buffer pool and maximum database size up front:
    that reservation is counted once, at open, and only allocations beyond it are limited.
    """
    if resource is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    now = _address_space()
    if extra is None or now is None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return
    soft = now + extra
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _limit_cpu(seconds: float | None) -> None:
    """Allow ``seconds`` more CPU time from now (all threads together); None lifts the limit."""
    if resource is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if seconds is None:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _open(config: dict[str, Any], limits: SandboxLimits) -> LadybugGraphStore:
    """Open the store read-only; retry while a writer's checkpoint is being recovered (Ladybug refuses then)."""
    deadline = time.monotonic() + min(10.0, limits.start_timeout_s / 2)
    while True:
        try:
            store = LadybugGraphStore.open(
                Path(config["db_dir"]),
                read_only=True,
                max_hops=config["max_hops"],
                sandbox=False,
                cypher_limits=CypherLimits(**config["cypher_limits"]),
                buffer_pool_bytes=limits.buffer_pool_bytes,
                max_threads=limits.threads,
            )
            break
        except KvgraphError as e:
            if "recovery is pending" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    store.query("RETURN 1", timeout_s=None)  # the engine starts its threads now, before the memory cap
    return store


def _handle(store: LadybugGraphStore, request: dict[str, Any], limits: SandboxLimits) -> Any:
    op = request["op"]
    if op == "query":
        timeout_s = request["timeout_s"]
        # every engine thread counts against the budget; the caller's deadline is the main bound
        _limit_cpu(None if not timeout_s else (timeout_s + limits.grace_s) * max(1, limits.threads) + 1)
        try:
            res = store.query(
                request["cypher"],
                request["params"],
                read_only=True,
                timeout_s=timeout_s,
                max_rows=request["max_rows"],
            )
        finally:
            _limit_cpu(None)
        return (res.columns, res.rows, res.truncated)
    if op == "explain":
        store.explain(request["cypher"], request["params"])
        return None
    raise KvgraphError(f"unknown sandbox request {op!r}")


def _reply(value: Any, limits: SandboxLimits) -> bytes:
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        return pickle.dumps(("err", QueryAbortedError.__name__, "the result did not fit in the sandbox's memory"))
    if len(data) > limits.max_result_bytes:
        data = pickle.dumps(
            (
                "err",
                "QueryAbortedError",
                f"the result is {len(data):,} bytes, more than the sandbox returns "
                f"({limits.max_result_bytes:,} bytes); ask for fewer rows or smaller values",
            )
        )
    return data


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    read_fd, write_fd = int(argv[1]), int(argv[2])
    limits = SandboxLimits(**config["limits"])
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    try:
        store = _open(config, limits)
    except KvgraphError as e:
        write_frame(write_fd, pickle.dumps(("err", type(e).__name__, str(e))))
        return 1
    _limit_memory(limits.memory_bytes)
    write_frame(write_fd, pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            request = pickle.loads(read_frame(read_fd))
        except EOFError:
            break  # the caller closed the pipe (or exited)
        reply: Any
        try:
            if request["op"] == "reopen":
                store.close()
                _limit_memory(None)
                store = _open(config, limits)
                _limit_memory(limits.memory_bytes)
                reply = ("ok", None)
            else:
                reply = ("ok", _handle(store, request, limits))
        except KvgraphError as e:
            reply = ("err", type(e).__name__, str(e))
        except MemoryError:
            reply = ("err", QueryAbortedError.__name__, "the query ran out of the sandbox's memory")
        try:
            write_frame(write_fd, _reply(reply, limits))
        except OSError:
            break
    with contextlib.suppress(KvgraphError):
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
