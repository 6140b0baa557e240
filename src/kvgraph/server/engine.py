"""One knowledge base behind the server: a single writer thread and a pool of reader threads.

The knowledge base's own concurrency rule (one writer holding the lock, readers that open
read-only and run beside it) is kept inside one process:

- every write (ingest, sync, delete) runs on the **writer thread**, which owns the one writable
  :class:`~kvgraph.kb.KnowledgeBase`; writes therefore run one after the other, in order;
- every read runs on one of ``readers`` **reader threads**, each with its own read-only handle
  of the same directory. A handle is only ever used by its thread, so nothing in the knowledge
  base has to be thread-safe, and a write in progress never blocks a read: readers see the
  last commit. After each write the generation moves on and every reader refreshes its handle
  (:meth:`KnowledgeBase.refresh`) before its next request, so the file list, the document graph
  and the Cypher graph are current too.

Conversations and evaluation runs are in their own SQLite files, shared by all threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kvgraph.kb import KnowledgeBase
from kvgraph.kb.conversations import ConversationStore
from kvgraph.kb.eval_runs import EvalRunStore
from kvgraph.server.config import ServerConfig
from kvgraph.server.jobs import JobTable
from kvgraph.server.security import UPLOAD_DIR

log = logging.getLogger("kvgraph.server")
T = TypeVar("T")
Work = Callable[[KnowledgeBase], Any]
_STOP = object()


class KBThreads:
    """``n`` threads, each owning one KnowledgeBase handle that ``open_kb`` makes on first use."""

    def __init__(self, name: str, n: int, open_kb: Callable[[], KnowledgeBase], generation: Callable[[], int]) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._open_kb = open_kb
        self._generation = generation
        self.busy = 0
        self._busy_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, name=f"kvgraph-{name}-{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[[KnowledgeBase], T]) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return fut

    def each(self, fn: Work) -> list[concurrent.futures.Future[Any]]:
        """Run ``fn`` once on every thread (they wait for each other, so no thread runs it twice)."""
        barrier = threading.Barrier(len(self._threads))

        def once(kb: KnowledgeBase) -> Any:
            barrier.wait(timeout=300)
            return fn(kb)

        return [self.submit(once) for _ in self._threads]

    def stop(self, timeout: float = 30.0) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)

    def _loop(self) -> None:
        kb: KnowledgeBase | None = None
        seen = -1
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                fn, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                with self._busy_lock:
                    self.busy += 1
                try:
                    now = self._generation()
                    if kb is None:
                        kb = self._open_kb()
                    elif now != seen:
                        kb.refresh()
                    seen = now
                    fut.set_result(fn(kb))
                except BaseException as e:
                    fut.set_exception(e)
                finally:
                    with self._busy_lock:
                        self.busy -= 1
        finally:
            if kb is not None:
                try:
                    kb.close()
                except Exception:  # closing at shutdown: nothing left to protect
                    log.exception("closing a knowledge base handle failed")


class Engine:
    """The knowledge base, its threads, the job table and the conversation and evaluation stores."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.path = Path(config.kb_path)
        self._generation = 0
        self._gen_lock = threading.Lock()
        self.jobs = JobTable()
        self.ready = threading.Event()
        self.startup_error: str | None = None
        # The writer opens first: it creates the knowledge base, which read-only handles need.
        self.writer = KBThreads("writer", 1, self._open_writer, lambda: 0)
        self.writer.submit(lambda kb: None).result()
        self.readers = KBThreads("reader", config.readers, self._open_reader, self.generation)
        for stale in (self.path / UPLOAD_DIR).glob(".upload-*"):  # staged by a server that stopped mid-upload
            stale.unlink(missing_ok=True)
        self.conversations = ConversationStore.for_kb(self.path)
        self.eval_runs = EvalRunStore.for_kb(self.path)

    def _open_writer(self) -> KnowledgeBase:
        return KnowledgeBase.open(self.path, read_only=False, **self.config.kb_overrides)

    def _open_reader(self) -> KnowledgeBase:
        return KnowledgeBase.open(self.path, read_only=True, **self.config.kb_overrides)

    def generation(self) -> int:
        return self._generation

    def _bump(self) -> None:
        with self._gen_lock:
            self._generation += 1

    def warm_up(self) -> None:
        """Open every reader's handle and load the embedding model, then mark the server ready."""

        def warm(kb: KnowledgeBase) -> None:
            if kb.settings.mode != "sparse":
                kb.embedder.embed(["warm up"])

        def done(futures: list[concurrent.futures.Future[Any]]) -> None:
            try:
                for f in futures:
                    f.result()
            except Exception as e:
                self.startup_error = str(e)
                log.error("warming up the readers failed: %s", e)
            self.ready.set()

        threading.Thread(target=done, args=(self.readers.each(warm),), daemon=True).start()

    async def read(self, fn: Callable[[KnowledgeBase], T]) -> T:
        """Run ``fn`` on a reader thread with its read-only handle."""
        return await asyncio.wrap_future(self.readers.submit(fn))

    async def write(self, fn: Callable[[KnowledgeBase], T]) -> T:
        """Run ``fn`` on the writer thread; readers see the result from their next request on."""
        return await asyncio.wrap_future(self.write_later(fn))

    def write_later(self, fn: Callable[[KnowledgeBase], T]) -> concurrent.futures.Future[T]:
        def wrapped(kb: KnowledgeBase) -> T:
            try:
                return fn(kb)
            finally:
                self._bump()  # even a failed write may have committed part of its work

        return self.writer.submit(wrapped)

    def close(self) -> None:
        self.readers.stop()
        self.writer.stop()
        self.conversations.close()
        self.eval_runs.close()
