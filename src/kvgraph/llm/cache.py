"""A JSON Lines file of LLM results keyed by a hash, so an interrupted run resumes and a re-run pays nothing.

Every result is appended (and flushed) the moment it arrives; the file is the checkpoint.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class JsonlCache:
    """Results keyed by a string, appended to a JSONL file as they arrive (thread-safe).

    A line cut short by a crash is skipped on load, and a newline is written before the
    next record so that it does not glue onto the broken line.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._needs_newline = False
        if self.path is not None and self.path.is_file():
            raw = self.path.read_bytes()
            self._needs_newline = bool(raw) and not raw.endswith(b"\n")
            for line in raw.decode("utf-8", "replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("key"), str) and "result" in record:
                    self._data[record["key"]] = record["result"]
                    for alias in record.get("aliases") or ():
                        if isinstance(alias, str):
                            self._data[alias] = record["result"]

    def get(self, key: str) -> Any:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, result: Any, info: dict[str, Any], aliases: tuple[str, ...] = ()) -> None:
        """Record ``result`` under ``key`` (and ``aliases``: other keys that find it, the latest one winning)."""
        with self._lock:
            self._data[key] = result
            for alias in aliases:
                self._data[alias] = result
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"key": key, **info, "result": result}
            if aliases:
                record["aliases"] = list(aliases)
            line = json.dumps(record, ensure_ascii=False)
            with open(self.path, "a", encoding="utf-8") as f:
                if self._needs_newline:
                    f.write("\n")
                    self._needs_newline = False
                f.write(line + "\n")
                f.flush()
