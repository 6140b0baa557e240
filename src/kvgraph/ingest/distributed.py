"""Ingestion across a Ray cluster: workers load, split and embed; one writer commits in batches.

The driver (the process that holds the knowledge base's writer lock) lists the files once and
skips those whose size and modification time match the file registry, as the local pipeline does.
Every other file becomes a Ray task that hashes it, loads it, splits it and embeds its chunks on a
worker (the model is loaded once per worker process). Results come back to the driver, which
commits them in batches: one store write per batch (the files' new nodes, replacing their old
documents), then one registry record per file. So:

* a worker that dies mid-task is replaced by Ray, which runs the task again (``max_retries``);
  a file whose task still fails is reported as skipped and ingested by the next run;
* a killed driver leaves the knowledge base at its last committed batch: the store commits before
  the registry, so files of an interrupted batch are simply ingested again by the next run, which
  replaces whatever part of them reached the store (node ids are deterministic);
* a re-run finishes the rest and converges to the same knowledge base as a plain ingest.

The files must be readable at the same path on every worker (one machine, or a shared file system).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError, MissingDependencyError
from kvgraph.ingest.context import embedding_text
from kvgraph.ingest.loaders import (
    DEFAULT_MAX_FILE_BYTES,
    SkippedFile,
    check_file,
    display_path,
    file_key,
    load_file_batches,
    path_from_display,
    walk,
)
from kvgraph.ingest.pipeline import IngestReport, NoProgress, Progress, Splitter, file_sha256
from kvgraph.ingest.registry import FileRecord, Registry, cross_check
from kvgraph.schema import Node

log = logging.getLogger(__name__)

EMBED_BATCH = 64


class WorkerPipeline(Protocol):
    """What a worker needs to turn files into embedded chunks; must pickle (Ray ships it to workers).

    ``key`` names the configuration: a worker builds the pipeline once per key and reuses it.
    """

    @property
    def key(self) -> str: ...

    def build(self) -> tuple[Splitter, Embedder]: ...


@dataclass
class FileTask:
    path: str  # the path as the workers open it
    key: str  # the registry key
    name: str  # for messages
    old_sha: str | None  # the registry's hash: an equal hash means only size/mtime changed


@dataclass
class FileResult:
    key: str
    name: str
    sha: str = ""
    size: int = 0
    mtime_ns: int = 0
    doc_ids: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    tokens: int = 0
    skipped: str | None = None  # why the file was not ingested
    unchanged: bool = False  # same hash as registered: only its size/mtime are recorded
    worker: int = 0  # the worker's process id, for the progress display


# ----------------------------------------------------------------------------- on a worker

_PIPELINES: dict[str, tuple[Splitter, Embedder]] = {}


def process_file(task: FileTask, pipeline: WorkerPipeline, max_file_bytes: int | None) -> FileResult:
    """Hash, load, split and embed one file (runs on a Ray worker; touches no store)."""
    out = FileResult(task.key, task.name, worker=os.getpid())
    path = Path(task.path)
    try:
        st = check_file(path, max_file_bytes)
        out.size, out.mtime_ns = st.st_size, st.st_mtime_ns
        out.sha = file_sha256(path)
    except (OSError, InvalidInputError) as e:
        out.skipped = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        return out
    if task.old_sha is not None and out.sha == task.old_sha:
        out.unchanged = True
        return out
    if pipeline.key not in _PIPELINES:
        _PIPELINES[pipeline.key] = pipeline.build()
    splitter, embedder = _PIPELINES[pipeline.key]
    try:
        for docs in load_file_batches(path, max_file_bytes=max_file_bytes):
            nodes = splitter.split_many(docs)
            todo = [n for n in nodes if n.embedding is None]
            for i in range(0, len(todo), EMBED_BATCH):
                part = todo[i : i + EMBED_BATCH]
                for n, v in zip(part, embedder.embed([embedding_text(n) for n in part])):  # as pipeline.py
                    n.embedding = np.asarray(v, dtype=np.float32)
            out.doc_ids.extend(d.id for d in docs)
            out.nodes.extend(nodes)
    except InvalidInputError as e:  # unreadable, or changed while it was read: retried next run
        out.skipped = getattr(e, "reason", None) or str(e)
        out.nodes, out.doc_ids = [], []
        return out
    out.tokens = sum(_tokens(n) for n in out.nodes)
    return out


def _tokens(n: Node) -> int:
    if n.metadata.get("role") in ("child", "summary", "question"):
        return 0
    v = n.metadata.get("n_tokens")
    return v if isinstance(v, int) else 0


# ----------------------------------------------------------------------------- the driver


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local cluster; "auto" or "ray://host:10001": join one
    num_cpus: int | None = None  # for a local cluster (default: all cores)
    max_retries: int = 2  # runs of a task whose worker died, after the first
    commit_files: int = 16  # commit when this many files are waiting
    commit_chunks: int = 4096  # ... or this many chunks
    in_flight_per_cpu: int = 2  # tasks submitted ahead, per CPU of the cluster
    init_kwargs: dict[str, Any] = field(default_factory=dict)


class RayProgress(Protocol):
    """A Progress that also hears how many workers answered (optional)."""

    def workers(self, n: int) -> None: ...


def ingest_with_ray(
    store: Any,
    registry: Registry,
    paths: Sequence[str | Path],
    pipeline: WorkerPipeline,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    progress: Progress | None = None,
    options: RayOptions | None = None,
    on_commit: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest ``paths`` into ``store`` with the loading, splitting and embedding on Ray workers.

    ``store`` is the knowledge base's vector store and ``registry`` its file registry; the caller
    holds the writer lock. ``on_commit(files_committed)`` is called after each committed batch.
    """
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError("ray", "ray") from e
    opts = options or RayOptions()
    progress = progress or NoProgress()
    report = IngestReport()
    t0 = time.perf_counter()
    files = walk(
        [Path(p) for p in paths],
        include=include or None,
        exclude=exclude or None,
        skipped=report.skipped,
        max_file_bytes=max_file_bytes,
    )
    for p in paths:
        with contextlib.suppress(InvalidInputError):  # a symlink loop: the walk reported it
            registry.add_root(file_key(Path(p)), include or [], exclude or [])
    files = [*files, *_restore(store, registry, report, {file_key(f) for f in files})]
    tasks = _tasks(files, registry, report, progress)
    own = not ray.is_initialized()
    if own:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if opts.address is None and opts.num_cpus is not None:
            kwargs["num_cpus"] = opts.num_cpus
        if _loopback(opts.address):  # a cluster on this machine talks over loopback, not the network
            kwargs["_node_ip_address"] = "127.0.0.1"
        kwargs.update(opts.init_kwargs)
        if opts.address is not None:
            _use_ray_token_if_present()
        ray.init(address=opts.address, **kwargs)
    try:
        run = _Run(store, registry, report, progress, opts, on_commit)
        run.execute(ray, tasks, pipeline, max_file_bytes)
    finally:
        progress.finish()
        if own:
            ray.shutdown()
    report.seconds = time.perf_counter() - t0
    return report


def _use_ray_token_if_present() -> None:
    """Authenticate to a cluster with this machine's Ray token, when there is one.

    Ray (2.5x) turns token authentication on for clusters started where a token exists
    (``~/.ray/auth_token``, which any local ``ray.init()`` writes), but a driver connecting to an
    address does not send it unless ``RAY_AUTH_MODE=token``: the connection is refused with
    "Failed to connect to Ray cluster". An explicit RAY_AUTH_MODE is left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _loopback(address: str | None) -> bool:
    """True for a local cluster (no address) or one at a loopback address."""
    if address is None:
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def _restore(store: Any, registry: Registry, report: IngestReport, walked: set[str]) -> list[Path]:
    """Files whose chunks went missing from the store are ingested again (as the local pipeline does)."""
    check = cross_check(store, registry)
    out = []
    for key in check.missing_files:
        if path_from_display(key).exists():
            registry.invalidate(key)
            if key not in walked:
                out.append(path_from_display(key))
            report.files_restored += 1
    for line in check.problems(str(registry.path), str(getattr(store, "path", "store"))):
        report.warnings.append(line)
        log.warning("%s", line)
    return out


def _tasks(files: Iterable[Path], registry: Registry, report: IngestReport, progress: Progress) -> list[FileTask]:
    files = list(files)
    progress.start(len(files))
    tasks = []
    for f in files:
        report.files_seen += 1
        name = display_path(f)
        try:
            st = os.stat(f)
            key = file_key(f)
        except (OSError, InvalidInputError) as e:
            report.skipped.append(SkippedFile(name, getattr(e, "reason", None) or str(e)))
            progress.file_done(name, 0)
            continue
        rec = registry.get(key)
        if rec and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            report.files_unchanged += 1
            progress.file_done(name, 0)
            continue
        tasks.append(FileTask(str(f), key, name, rec.sha256 if rec else None))
    return tasks


@dataclass
class _Run:
    """The driver's side of one distributed ingest: submit, collect, commit."""

    store: Any
    registry: Registry
    report: IngestReport
    progress: Progress
    opts: RayOptions
    on_commit: Callable[[int], None] | None

    def execute(self, ray: Any, tasks: list[FileTask], pipeline: WorkerPipeline, max_file_bytes: int | None) -> None:
        opts = self.opts
        remote = ray.remote(max_retries=opts.max_retries, retry_exceptions=False)(process_file)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        limit = max(2, opts.in_flight_per_cpu * cpus)
        pipeline_ref = ray.put(pipeline)
        queue = list(reversed(tasks))
        running: dict[Any, FileTask] = {}
        waiting: list[FileResult] = []
        workers: set[int] = set()
        committed = 0
        while queue or running:
            while queue and len(running) < limit:
                task = queue.pop()
                running[remote.remote(task, pipeline_ref, max_file_bytes)] = task
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                task = running.pop(ref)
                try:
                    result: FileResult = ray.get(ref)
                except Exception as e:  # the task failed on every try (its worker kept dying, or it raised)
                    reason = f"worker failed after {opts.max_retries + 1} tries: {type(e).__name__}"
                    self.report.skipped.append(SkippedFile(task.name, reason))
                    self.progress.file_done(task.name, 0)
                    continue
                workers.add(result.worker)
                if hasattr(self.progress, "workers"):
                    self.progress.workers(len(workers))
                if result.nodes:
                    self.progress.chunks_embedded(len(result.nodes))
                waiting.append(result)
            if waiting and (
                len(waiting) >= opts.commit_files
                or sum(len(r.nodes) for r in waiting) >= opts.commit_chunks
                or not (queue or running)
            ):
                committed += _commit(waiting, self.store, self.registry, self.report, self.progress)
                waiting = []
                if self.on_commit is not None:
                    self.on_commit(committed)


def _commit(batch: list[FileResult], store: Any, registry: Registry, report: IngestReport, progress: Progress) -> int:
    """One store write for the batch's new nodes (replacing the files' old documents), then the records."""
    nodes: list[Node] = []
    replace: list[str] = []
    ingest = []
    for r in batch:
        if r.skipped is not None:
            report.skipped.append(SkippedFile(r.name, r.skipped))
            progress.file_done(r.name, 0)
            continue
        if r.unchanged:
            registry.touch(r.key, r.size, r.mtime_ns)
            report.files_unchanged += 1
            progress.file_done(r.name, 0)
            continue
        rec = registry.get(r.key)
        replace.extend(rec.doc_ids if rec else ())
        replace.extend(r.doc_ids)
        nodes.extend(r.nodes)
        ingest.append(r)
    if ingest:
        store.add(nodes, replace_docs=list(dict.fromkeys(replace)))  # the commit point of the batch
    at = datetime.now(UTC).isoformat(timespec="seconds")
    for r in ingest:
        registry.put(
            FileRecord(
                path=r.key,
                sha256=r.sha,
                size=r.size,
                mtime_ns=r.mtime_ns,
                doc_ids=r.doc_ids,
                n_nodes=len(r.nodes),
                n_tokens=r.tokens,
                ingested_at=at,
            )
        )
        report.files_ingested += 1
        report.documents += len(r.doc_ids)
        report.chunks += len(r.nodes)
        report.embedded += len(r.nodes)
        report.tokens += r.tokens
        progress.file_done(r.name, len(r.nodes))
    return len(ingest)
