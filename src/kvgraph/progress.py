"""Progress display for long work, on stderr, only when stderr is a terminal and not silenced.

Every display takes ``enabled`` (the CLI passes ``not --quiet``) and shows nothing when stderr is
not a terminal, so piped output and log files stay clean:

- :class:`RichProgress`: files of an ingest or sync, with chunks, their rate and the time left;
- :class:`LLMWorkProgress`: items an LLM works through (triples), with requests and tokens;
- :class:`ModelPreparation`: the one-time preparation of the embedding model, step by step;
- :class:`CountProgress`: anything reported as ``(done, total)`` (queries, nodes);
- :class:`Activity`: a spinner with the elapsed time, for work whose size is not known ahead.
"""

from __future__ import annotations

import time
from types import SimpleNamespace, TracebackType
from typing import Any

PREPARING_MODEL = "preparing the embedding model (once)…"


def llm_cost(snapshot: Any) -> str:
    """ "12 LLM requests, 3 cached, 4,512 tokens" from a MetadataProgress or TripleProgress."""
    tokens = int(snapshot.prompt_tokens) + int(snapshot.completion_tokens)
    return f"{snapshot.requests} LLM requests, {snapshot.cached} cached, {tokens:,} tokens"


def stderr_console(enabled: bool = True) -> Any:
    """A rich console on stderr; ``enabled=False`` makes it print nothing at all."""
    from rich.console import Console

    return Console(stderr=True, quiet=not enabled)


def _bar(console: Any, *columns: Any, transient: bool = False) -> Any:
    """A rich Progress on ``console`` that stays silent unless it is a terminal (and not quiet)."""
    from rich.progress import Progress

    return Progress(*columns, console=console, disable=console.quiet or not console.is_terminal, transient=transient)


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


class _Bar:
    """A rich progress display started on the first report and stopped by :meth:`finish`."""

    def __init__(self, console: Any = None, enabled: bool = True) -> None:
        self.console = console or stderr_console(enabled)
        self._progress: Any = None
        self._task: Any = None

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class RichProgress(_Bar):
    """Files done / total with a bar, chunks embedded, the chunk rate, the time left; LLM requests and tokens
    when an LLM works. The ingest pipeline's ``Progress``."""

    def __init__(self, console: Any = None, label: str = "ingesting", enabled: bool = True) -> None:
        super().__init__(console, enabled)
        self.label = label
        self._chunks = 0
        self._t0 = 0.0
        self._llm = ""
        self.llm_tally = LLMTally()

    def start(self, total_files: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._t0 = time.perf_counter()
        self._chunks = 0
        self._progress = _bar(
            self.console,
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TextColumn("{task.fields[chunks]} chunks ({task.fields[rate]}/s)"),
            TextColumn("{task.fields[llm]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
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
        super().finish()


class LLMWorkProgress(_Bar):
    """A bar over the items an LLM works through (chunks for triples), with requests, cache hits and tokens."""

    def __init__(self, label: str, console: Any = None, enabled: bool = True) -> None:
        super().__init__(console, enabled)
        self.label = label

    def __call__(self, snapshot: Any) -> None:
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = _bar(
                self.console,
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[cost]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=snapshot.total, cost="")
        self._progress.update(self._task, completed=snapshot.done, cost=llm_cost(snapshot))
        if snapshot.done >= snapshot.total:
            self.finish()


class CountProgress(_Bar):
    """A bar for work reported as ``(done, total)`` calls: queries answered, nodes embedded, rows copied."""

    def __init__(self, label: str, console: Any = None, enabled: bool = True, unit: str = "") -> None:
        super().__init__(console, enabled)
        self.label = label
        self.unit = unit

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = _bar(
                self.console,
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total)
        self._progress.update(self._task, completed=done, total=total)
        if done >= total:
            self.finish()


class ModelPreparation(_Bar):
    """ "preparing the embedding model (once)…" and its steps, for ``KnowledgeBase.prepare_embedder(progress=...)``.

    Called with ``(step, done, total)`` reports (``kvgraph.embed.onnx_build.PrepareProgress``); the
    line stays on the terminal when done, so the pause before the first embedding is explained.
    """

    def __call__(self, report: Any) -> None:
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

            self._progress = _bar(
                self.console,
                TextColumn(f"[bold]{PREPARING_MODEL}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("{task.fields[step]}"),
                TimeElapsedColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task("model", total=report.total, step="")
        # a few steps, seconds apart: draw each at once rather than at the next tick
        self._progress.update(self._task, completed=report.done, total=report.total, step=report.step, refresh=True)
        if report.done >= report.total:
            self.finish()


class Activity(_Bar):
    """A spinner with a label and the elapsed time while a block runs (work whose size is not known ahead).

    ``with Activity("building the document graph"): ...``; it disappears when the block ends, so the
    command's summary line follows.
    """

    def __init__(self, label: str, console: Any = None, enabled: bool = True) -> None:
        super().__init__(console, enabled)
        self.label = label

    def __enter__(self) -> Activity:
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = _bar(
            self.console, SpinnerColumn(), TextColumn(f"[bold]{self.label}"), TimeElapsedColumn(), transient=True
        )
        self._progress.start()
        self._progress.add_task(self.label, total=None)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()
