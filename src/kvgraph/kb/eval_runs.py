"""Evaluation runs over a knowledge base and their results, kept in ``KB/eval-runs.sqlite``.

A run is a row: what was asked for (``params``), its state (``queued``, ``running``, ``done``,
``failed``), and when done its ``results`` (JSON). The HTTP API starts runs and the web page
charts them; the store only keeps them. Safe to share between threads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError, KvgraphError

EVAL_RUNS_FILE = "eval-runs.sqlite"
STATES = ("queued", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    results TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
"""


class EvalRunNotFoundError(InvalidInputError):
    """An evaluation run id that the store does not have."""


@dataclass
class EvalRun:
    id: str
    name: str
    state: str
    params: dict[str, Any]
    results: dict[str, Any] | None = None
    error: str | None = None
    created_at: str = ""
    finished_at: str | None = None

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        d = dict(self.__dict__)
        if not with_results:
            d.pop("results")
        return d


class EvalRunStore:
    """Evaluation runs of one knowledge base."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            # A process that stopped mid-run left it "running" for ever: say what happened.
            self._db.execute(
                "UPDATE runs SET state = 'failed', error = 'interrupted: the server stopped during the run'"
                " WHERE state IN ('queued', 'running')"
            )
        except sqlite3.DatabaseError as e:
            raise KvgraphError(f"{self.path}: cannot open the evaluation run store: {e}") from None

    @classmethod
    def for_kb(cls, kb_path: str | os.PathLike[str]) -> EvalRunStore:
        return cls(Path(kb_path) / EVAL_RUNS_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, name: str, params: dict[str, Any]) -> EvalRun:
        run = EvalRun(uuid.uuid4().hex[:16], name, "queued", params, created_at=_now())
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, name, state, params, created_at) VALUES (?,?,?,?,?)",
                (run.id, run.name, run.state, json.dumps(params), run.created_at),
            )
        return run

    def set_state(
        self, run_id: str, state: str, results: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        if state not in STATES:
            raise InvalidInputError(f"run state must be one of {', '.join(STATES)}, got {state!r}")
        finished = _now() if state in ("done", "failed") else None
        with self._lock:
            self._db.execute(
                "UPDATE runs SET state = ?, results = ?, error = ?, finished_at = ? WHERE id = ?",
                (state, json.dumps(results) if results is not None else None, error, finished, run_id),
            )

    def list(self) -> list[EvalRun]:
        """Every run, newest first (results included)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, state, params, results, error, created_at, finished_at FROM runs"
                " ORDER BY created_at DESC, id"
            ).fetchall()
        return [_run(r) for r in rows]

    def get(self, run_id: str) -> EvalRun:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, state, params, results, error, created_at, finished_at FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            raise EvalRunNotFoundError(f"no evaluation run {run_id!r} in {self.path}")
        return _run(row)

    def delete(self, run_id: str) -> None:
        with self._lock:
            gone = self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        if not gone:
            raise EvalRunNotFoundError(f"no evaluation run {run_id!r} in {self.path}")


def _run(row: tuple[Any, ...]) -> EvalRun:
    rid, name, state, params, results, error, created, finished = row
    return EvalRun(
        rid, name, state, json.loads(params), json.loads(results) if results else None, error, created, finished
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
