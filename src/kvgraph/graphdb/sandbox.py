"""The Cypher sandbox: untrusted read-only queries run in a worker process that may crash.

One read-only query can take an embedded engine's process down: on Ladybug 0.22, ``RETURN``
followed by 5,000 nested ``(`` segfaults in the parser, and memory or parse time can run away
before the engine's own timeout starts counting. The guard's limits (:mod:`kvgraph.graphdb.guard`)
refuse the known shapes; the sandbox contains the unknown ones. :class:`CypherSandbox` keeps one
persistent worker process (:mod:`kvgraph.graphdb.sandbox_worker`) per graph store and sends it
each untrusted query over a pipe:

- the worker opens the database **read-only** (a second, independent handle), with its own
  buffer pool size, and runs the query through the same guard and
  :meth:`~kvgraph.graphdb.ladybug.LadybugGraphStore.query` as in-process, so results are the same;
- it runs under ``RLIMIT_AS`` (the address space it had after opening plus
  :attr:`SandboxLimits.memory_bytes`), a per-query ``RLIMIT_CPU`` and ``RLIMIT_CORE = 0``, with
  ``HOME`` pointing at an empty private directory (extension commands that slipped through would
  touch only that) and none of the caller's environment variables but ``PATH`` and the locale;
- the caller waits at most the query's timeout plus :attr:`SandboxLimits.grace_s`, then kills
  the worker's process group: :class:`~kvgraph.graphdb.base.QueryTimeoutError`. A worker that
  dies (segfault, out of memory, CPU limit) gives :class:`~kvgraph.graphdb.base.QueryAbortedError`.
  Either way the caller's process is untouched and the next query starts a new worker;
- replies are unpickled with an allow-list of types (dates, decimals, UUIDs), so a compromised
  worker cannot run code in the caller by what it sends back.

A worker reopens its handle when the store it serves has written since (the store counts its
writes: :meth:`CypherSandbox.query`'s ``generation``), so queries see every committed write of
their own store. Starting a worker costs ~0.3 s once per store; a query costs a pickle round trip
on top of the in-process time (bench/cypher_sandbox.py, figures in bench/README.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from kvgraph.errors import (
    InvalidInputError,
    KvgraphError,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
)
from kvgraph.graphdb.base import (
    DEFAULT_TIMEOUT_S,
    CypherSyntaxError,
    GraphError,
    QueryAbortedError,
    QueryResult,
    QueryTimeoutError,
    WriteRejectedError,
)
from kvgraph.graphdb.guard import (
    DEFAULT_LIMITS,
    CypherLimits,
    FunctionNotAllowedError,
    QueryLimitError,
    UnboundedTraversalError,
)

WORKER_MODULE = "kvgraph.graphdb.sandbox_worker"


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandbox worker may use."""

    memory_bytes: int = 1 << 30  # heap beyond what the open database maps (RLIMIT_AS)
    buffer_pool_bytes: int = 1 << 30  # Ladybug's buffer pool: cached pages and the query's working memory
    threads: int = 2  # Ladybug's query threads
    grace_s: float = 2.0  # past the query's timeout before the worker is killed
    max_result_bytes: int = 64 << 20  # a larger (pickled) result is refused, not sent
    start_timeout_s: float = 60.0  # starting the worker and opening the database


DEFAULT_SANDBOX_LIMITS = SandboxLimits()

# ---------------------------------------------------------------------- the pipe protocol

_HEADER = struct.Struct("!Q")
_MAX_FRAME = 1 << 32

# Types a reply may hold besides the built-in containers, strings, numbers and bytes.
_REPLY_TYPES = frozenset(
    {
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("uuid", "UUID"),
    }
)

# Errors the worker may report, by name; anything else becomes a GraphError.
_ERRORS: dict[str, type[KvgraphError]] = {
    cls.__name__: cls
    for cls in (
        GraphError,
        CypherSyntaxError,
        WriteRejectedError,
        UnboundedTraversalError,
        QueryLimitError,
        FunctionNotAllowedError,
        QueryTimeoutError,
        QueryAbortedError,
        InvalidInputError,
        ReadOnlyError,
        StoreClosedError,
        StoreLockedError,
    )
}


class _ReplyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REPLY_TYPES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected type {module}.{name} in a sandbox reply")


def load_reply(data: bytes) -> Any:
    """Unpickle what a worker sent, allowing only plain data types."""
    return _ReplyUnpickler(io.BytesIO(data)).load()


def write_frame(fd: int, data: bytes) -> None:
    """Send one length-prefixed message on pipe ``fd``."""
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Deadline(Exception):
    pass


def read_exact(fd: int, n: int, deadline: float | None = None) -> bytes:
    """Read ``n`` bytes from pipe ``fd``; EOFError when it closes, _Deadline past ``deadline`` (monotonic)."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise _Deadline
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> bytes:
    """Receive one length-prefixed message from pipe ``fd``."""
    (n,) = _HEADER.unpack(read_exact(fd, _HEADER.size, deadline))
    if n > _MAX_FRAME:
        raise EOFError(f"frame of {n} bytes")
    return read_exact(fd, n, deadline)


def _short(cypher: str, limit: int = 200) -> str:
    flat = " ".join(cypher.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


# ---------------------------------------------------------------------- one worker process


class _Worker:
    """A running worker: its process, its pipe ends, its private HOME and its stderr file."""

    def __init__(self, proc: subprocess.Popen[bytes], to_worker: int, from_worker: int, home: str, err: IO[bytes]):
        self.proc = proc
        self.to_worker = to_worker
        self.from_worker = from_worker
        self.home = home
        self.err = err
        self.owner_pid = os.getpid()
        self.generation = 0

    def stop(self, kill: bool = False) -> None:
        """End the worker (closing its pipe lets it exit by itself; ``kill`` does not wait) and clean up."""
        for fd in (self.to_worker, self.from_worker):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_worker = self.from_worker = -1
        if self.owner_pid != os.getpid():
            return  # a forked copy closes its ends of the pipes; the worker belongs to the parent process
        if self.proc.poll() is None:
            if not kill:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(2)
            if self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    self.proc.kill()
                self.proc.wait()
        self.err.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def stderr_tail(self) -> str:
        try:
            self.err.seek(0, os.SEEK_END)
            size = self.err.tell()
            self.err.seek(max(0, size - 400))
            lines = self.err.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1].strip() if lines else ""


def _worker_env(home: str) -> dict[str, str]:
    """The worker's environment: no secrets of the caller, a private HOME, small native thread pools."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")}
    if "LBUG_PYTHON_BACKEND" in os.environ:
        env["LBUG_PYTHON_BACKEND"] = os.environ["LBUG_PYTHON_BACKEND"]
    # kvgraph itself must import in the worker, wherever the caller found it
    paths = [str(Path(__file__).resolve().parents[2])]  # the directory holding the kvgraph package
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["HOME"] = home
    # each native thread pool and malloc arena reserves address space, which RLIMIT_AS counts
    env.update({"MALLOC_ARENA_MAX": "2", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _died(worker: _Worker, cypher: str) -> QueryAbortedError:
    """The error for a worker that exited while running ``cypher``."""
    try:
        code = worker.proc.wait(5)
    except subprocess.TimeoutExpired:  # its pipe broke but it still runs: end it
        with contextlib.suppress(OSError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        code = worker.proc.wait()
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            what = f"was stopped by signal {-code}"
        else:
            if sig == signal.SIGXCPU:
                what = "used more CPU time than its budget"
            elif sig == signal.SIGKILL:
                what = "was killed (out of memory?)"
            else:
                what = f"crashed the graph engine ({sig.name})"
    else:
        what = f"stopped the graph engine's process (exit status {code})"
    tail = worker.stderr_tail()
    detail = f"; the engine said: {tail[:200]}" if tail and code >= 0 else ""
    return QueryAbortedError(
        f"the query {what}{detail}; it ran in a sandbox process, so the caller is unaffected and the next "
        f"query starts a new one. Query: {_short(cypher)}"
    )


# ---------------------------------------------------------------------- the caller's side


class CypherSandbox:
    """Runs untrusted read-only Cypher on ``db_dir`` (a Ladybug store directory) in a worker process.

    ``max_hops`` and ``cypher_limits`` are the guard's settings, applied again in the worker;
    ``limits`` bounds the worker. The worker starts on the first query; :meth:`close` ends it.
    Thread-safe (queries are serialized: one worker, one query at a time).
    """

    def __init__(
        self,
        db_dir: str | os.PathLike[str],
        *,
        max_hops: int | None,
        cypher_limits: CypherLimits = DEFAULT_LIMITS,
        limits: SandboxLimits = DEFAULT_SANDBOX_LIMITS,
    ) -> None:
        # absolute: the worker runs in its own empty home directory, where a relative path
        # (the default knowledge base ./.kvgraph) would name nothing
        self.db_dir = Path(db_dir).absolute()
        self.max_hops = max_hops
        self.cypher_limits = cypher_limits
        self.limits = limits
        self.starts = 0  # workers started so far (crashes and kills start new ones)
        self._worker: _Worker | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"CypherSandbox({str(self.db_dir)!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None before the first query or after a crash)."""
        w = self._worker
        return w.proc.pid if w is not None and w.proc.poll() is None else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop(kill=False)

    # ------------------------------------------------------------------ requests

    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_rows: int | None = None,
        generation: int = 0,
    ) -> QueryResult:
        """Run one read-only query in the worker; ``generation`` is the store's write count (see module doc)."""
        request: dict[str, Any] = {"op": "query", "cypher": cypher, "params": dict(params or {})}
        request.update({"timeout_s": timeout_s, "max_rows": max_rows})
        columns, rows, truncated = self._request(request, cypher, timeout_s, generation)
        return QueryResult(list(columns), list(rows), bool(truncated))

    def explain(self, cypher: str, params: Mapping[str, Any] | None = None, *, generation: int = 0) -> None:
        """Parse and bind ``cypher`` in the worker (the parser is where the known crashes are)."""
        request = {"op": "explain", "cypher": cypher, "params": dict(params or {})}
        self._request(request, cypher, DEFAULT_TIMEOUT_S, generation)

    def _request(self, request: dict[str, Any], cypher: str, timeout_s: float | None, generation: int) -> Any:
        with self._lock:
            if self._closed:
                raise StoreClosedError(f"{self.db_dir}: the graph store was closed")
            worker = self._ready(generation)
            try:
                write_frame(worker.to_worker, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                error = _died(worker, cypher)
                self._drop(kill=True)
                raise error from None
            deadline = None if not timeout_s else time.monotonic() + timeout_s + self.limits.grace_s
            try:
                reply = load_reply(read_frame(worker.from_worker, deadline))
            except _Deadline:
                self._drop(kill=True)
                raise QueryTimeoutError(
                    f"query ran past its timeout of {timeout_s} s and its sandbox process was stopped "
                    f"(the engine cannot interrupt parsing or allocation): {_short(cypher)}"
                ) from None
            except (EOFError, OSError, pickle.UnpicklingError):
                error = _died(worker, cypher)
                self._drop(kill=True)
                raise error from None
            except BaseException:  # interrupted mid-request: its reply would answer the next one
                self._drop(kill=True)
                raise
            if isinstance(reply, tuple) and reply[:2] == ("err", QueryAbortedError.__name__):
                self._drop(kill=True)  # the engine survived a failed allocation; do not trust its state
            return self._unwrap(reply)

    @staticmethod
    def _unwrap(reply: Any) -> Any:
        if not isinstance(reply, tuple) or not reply:
            raise GraphError(f"malformed reply from the sandbox worker: {type(reply).__name__}")
        if reply[0] == "ok":
            return reply[1]
        _, name, message = reply
        raise _ERRORS.get(str(name), GraphError)(str(message))

    # ------------------------------------------------------------------ the worker's life

    def _ready(self, generation: int) -> _Worker:
        """The running worker, started or reopened as needed; the caller holds the lock."""
        w = self._worker
        if w is not None and (w.owner_pid != os.getpid() or w.proc.poll() is not None):
            self._drop(kill=True)  # forked copy, or a worker that died between queries
            w = None
        if w is None:
            w = self._start()
            w.generation = generation
        elif w.generation != generation:
            try:
                write_frame(w.to_worker, pickle.dumps({"op": "reopen"}))
                self._unwrap(load_reply(read_frame(w.from_worker, time.monotonic() + self.limits.start_timeout_s)))
            except (_Deadline, EOFError, OSError, pickle.UnpicklingError, KvgraphError):
                self._drop(kill=True)  # a fresh worker opens the database anew, or says why it cannot
                w = self._start()
            w.generation = generation
        return w

    def _start(self) -> _Worker:
        home = tempfile.mkdtemp(prefix="kvgraph-sandbox-home-")
        config = {
            "db_dir": str(self.db_dir),
            "max_hops": self.max_hops,
            "cypher_limits": asdict(self.cypher_limits),
            "limits": asdict(self.limits),
        }
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker; _Worker.stop closes it
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, json.dumps(config), str(to_r), str(from_w)],
                pass_fds=(to_r, from_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=_worker_env(home),
                cwd=home,
                start_new_session=True,  # its own process group: a kill takes its threads and children
            )
        except BaseException:
            for fd in (to_r, to_w, from_r, from_w):
                os.close(fd)
            err.close()
            shutil.rmtree(home, ignore_errors=True)
            raise
        os.close(to_r)
        os.close(from_w)
        worker = _Worker(proc, to_w, from_r, home, err)
        self.starts += 1
        try:
            reply = load_reply(read_frame(from_r, time.monotonic() + self.limits.start_timeout_s))
        except (_Deadline, EOFError, OSError, pickle.UnpicklingError):
            tail = worker.stderr_tail()
            worker.stop(kill=True)
            raise GraphError(
                f"{self.db_dir}: the Cypher sandbox process did not start"
                + (f": {tail[:300]}" if tail else f" within {self.limits.start_timeout_s:.0f} s")
            ) from None
        if reply[0] != "ready":
            worker.stop(kill=True)
            self._unwrap(reply)
        self._worker = worker
        self._finalizer = weakref.finalize(self, worker.stop, True)
        return worker

    def _drop(self, kill: bool) -> None:
        """Stop and forget the current worker (the next query starts a new one)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        w, self._worker = self._worker, None
        if w is not None:
            w.stop(kill=kill)
