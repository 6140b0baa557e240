"""Progress display for long work (ingestion), on stderr, only when it is a terminal."""

from __future__ import annotations

import time
from typing import Any


class RichProgress:
    """Files done / total with a bar, chunks embedded and the chunk rate."""

    def __init__(self, console: Any = None, label: str = "ingesting") -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.label = label
        self._progress: Any = None
        self._task: Any = None
        self._chunks = 0
        self._t0 = 0.0

    def start(self, total_files: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._t0 = time.perf_counter()
        self._chunks = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TextColumn("{task.fields[chunks]} chunks ({task.fields[rate]}/s)"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total_files, chunks=0, rate="0.0")

    def _update(self, advance: int = 0) -> None:
        if self._progress is None:
            return
        dt = max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, advance=advance, chunks=self._chunks, rate=f"{self._chunks / dt:.1f}")

    def chunks_embedded(self, n: int) -> None:
        self._chunks += n
        self._update()

    def file_done(self, path: str, chunks: int) -> None:
        self._update(advance=1)

    def finish(self) -> None:
        if self._progress is not None:
            self._update()
            self._progress.stop()
            self._progress = None
