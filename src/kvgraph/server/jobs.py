"""Background jobs (ingest, sync, evaluation runs) with progress that clients poll or stream.

A :class:`Job` changes only under its lock, and every change bumps ``version``: a client that
streams events sends a snapshot whenever the version moved. Finished jobs are kept (the most
recent :data:`KEEP_FINISHED`) so a client that polls late still sees the outcome.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kvgraph.errors import InvalidInputError

KEEP_FINISHED = 200
FINAL_STATES = ("done", "failed")


class JobNotFoundError(InvalidInputError):
    """A job id the server does not know (never started, or forgotten after many newer jobs)."""


@dataclass
class Job:
    id: str
    kind: str  # ingest, sync, eval
    state: str = "queued"  # queued, running, done, failed
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1

    def progress_update(self, **values: Any) -> None:
        with self._lock:
            self.progress.update(values)
            self.version += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "state": self.state,
                "created_at": self.created_at,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "progress": dict(self.progress),
                "result": self.result,
                "error": self.error,
                "version": self.version,
            }

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class JobProgress:
    """The ingest pipeline's progress callbacks, recorded on a job (files, chunks, current file)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._files_done = 0
        self._chunks = 0
        self._embedded = 0

    def start(self, total_files: int) -> None:
        self._files_done = self._chunks = self._embedded = 0
        self.job.progress_update(files_total=total_files, files_done=0, chunks=0, chunks_embedded=0)

    def file_done(self, path: str, chunks: int) -> None:
        self._files_done += 1
        self._chunks += chunks
        self.job.progress_update(files_done=self._files_done, chunks=self._chunks, current=str(path).rsplit("/", 1)[-1])

    def chunks_embedded(self, n: int) -> None:
        self._embedded += n
        self.job.progress_update(chunks_embedded=self._embedded)

    def finish(self) -> None:
        self.job.progress_update(current=None)


class JobTable:
    """The jobs of this server process, by id."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def new(self, kind: str) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.finished]
            for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[old]
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} on this server")
        return job

    def all(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))
