"""Progress display for long work (ingestion, LLM extraction), on stderr, only when it is a terminal."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any


def llm_cost(snapshot: Any) -> str:
    """ "12 LLM requests, 3 cached, 4,512 tokens" from a MetadataProgress or TripleProgress."""
    tokens = int(snapshot.prompt_tokens) + int(snapshot.completion_tokens)
    return f"{snapshot.requests} LLM requests, {snapshot.cached} cached, {tokens:,} tokens"


class LLMTally:
    """Totals over several LLM runs (one per ingested file), each reporting snapshots that grow until done == total."""

    FIELDS = ("requests", "cached", "prompt_tokens", "completion_tokens")

    def __init__(self) -> None:
        self._finished = dict.fromkeys(self.FIELDS, 0)
        self.total = SimpleNamespace(**self._finished)

    def add(self, snapshot: Any) -> Any:
        """The running totals including ``snapshot`` (a namespace with the four counts)."""
        current = {name: int(getattr(snapshot, name, 0) or 0) for name in self.FIELDS}
        self.total = SimpleNamespace(**{name: self._finished[name] + current[name] for name in self.FIELDS})
        if snapshot.done >= snapshot.total:  # this run is over: its counts become part of the base
            self._finished = vars(self.total).copy()
        return self.total


class RichProgress:
    """Files done / total with a bar, chunks embedded and the chunk rate; LLM requests and tokens when an LLM works."""

    def __init__(self, console: Any = None, label: str = "ingesting") -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.label = label
        self._progress: Any = None
        self._task: Any = None
        self._chunks = 0
        self._t0 = 0.0
        self._llm = ""
        self.llm_tally = LLMTally()

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
            TextColumn("{task.fields[llm]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total_files, chunks=0, rate="0.0", llm="")

    def _update(self, advance: int = 0) -> None:
        if self._progress is None:
            return
        dt = max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(
            self._task, advance=advance, chunks=self._chunks, rate=f"{self._chunks / dt:.1f}", llm=self._llm
        )

    def chunks_embedded(self, n: int) -> None:
        self._chunks += n
        self._update()

    def file_done(self, path: str, chunks: int) -> None:
        self._update(advance=1)

    def llm_progress(self, snapshot: Any) -> None:
        """LLM-written references (``reference_writer = llm``): requests and tokens so far, over all files."""
        self._llm = llm_cost(self.llm_tally.add(snapshot))
        self._update()

    def finish(self) -> None:
        if self._progress is not None:
            self._update()
            self._progress.stop()
            self._progress = None


class LLMWorkProgress:
    """A bar over the items an LLM works through (chunks for triples), with requests, cache hits and tokens."""

    def __init__(self, label: str, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.label = label
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, snapshot: Any) -> None:
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[cost]}"),
                TimeElapsedColumn(),
                console=self.console,
                disable=not self.console.is_terminal,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=snapshot.total, cost="")
        self._progress.update(self._task, completed=snapshot.done, cost=llm_cost(snapshot))
        if snapshot.done >= snapshot.total:
            self.finish()

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
