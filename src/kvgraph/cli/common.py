"""What every kvgraph command shares, applied to the whole command tree by :func:`install_conventions`.

- ``-h`` and ``--help`` everywhere; an ``Examples`` section in every command's help (:mod:`.examples`).
- Global options, accepted before or after the command's name: ``--kb PATH``, ``-q/--quiet`` (no
  progress on stderr) and ``--json`` (for commands that print JSON).
- One-line errors and documented exit statuses (:data:`EXIT_STATUSES`).
- JSON in one envelope: ``{"kvgraph": VERSION, "schema": 1, "command": "search", ...}``: a report's
  fields beside those, a list of rows (search hits, documents) under ``results``. Commands whose
  output is rows (search, documents, graph query) also print newline-delimited JSON (``--nl``) and
  CSV (``--csv``).
- Human output that is not wrapped at 80 columns when stdout is not a terminal.
- ``-`` for standard input: a question (``ask -``), a query, or paths one per line (``ingest -``).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kvgraph.errors import KvgraphError

if TYPE_CHECKING:
    from kvgraph.kb import KnowledgeBase

SCHEMA_VERSION = 1  # of the JSON envelope and its rows; raised when a field changes meaning or goes away

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_STATUSES = {
    EXIT_OK: "success",
    EXIT_ERROR: "error: bad input, a missing knowledge base, damage found by check (one line on stderr)",
    EXIT_USAGE: "usage: an unknown command or option, a missing argument, a value of the wrong type",
    EXIT_INCOMPLETE: "ingest/sync finished, but skipped files it could not read or found none to ingest",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); what was committed before stays",
    EXIT_BROKEN_PIPE: "the reader of stdout went away (| head)",
}

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
WIDE = 100_000  # the console width when stdout is not a terminal: lines are as long as their text


class OneLineErrors(click.Group):
    """Turns kvgraph errors into one clear line and exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KvgraphError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _silence_stdout()  # the interpreter would otherwise complain again when it flushes at exit
            sys.exit(EXIT_BROKEN_PIPE)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


# ----------------------------------------------------------------------------- the invocation's options


def _root_obj(ctx: click.Context | None = None) -> dict[str, Any]:
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return {}
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {}
    obj: dict[str, Any] = root.obj
    return obj


def kb_path(ctx: click.Context) -> Path:
    """The knowledge base of this invocation: ``--kb``, else ``KVGRAPH_KB``, else ``./.kvgraph``."""
    from kvgraph.kb import default_kb_path  # kvgraph.kb loads the ingest pipeline: only when a command runs

    return Path(_root_obj(ctx).get("kb") or default_kb_path())


def quiet() -> bool:
    """``-q/--quiet`` was given: no progress displays (errors and results still print)."""
    return bool(_root_obj().get("quiet"))


def command_name(ctx: click.Context | None = None) -> str:
    """``graph query`` for ``kvgraph graph query``, whatever the program was called."""
    ctx = ctx or click.get_current_context(silent=True)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def _set_kb(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        _root_obj(ctx)["kb"] = value


def _set_flag(name: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def set_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            _root_obj(ctx)[name] = True

    return set_flag


def _global_params(cmd: click.Command) -> list[click.Parameter]:
    """The global options a command accepts after its name (hidden: ``kvgraph -h`` documents them once)."""
    taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    out: list[click.Parameter] = []
    if "--kb" not in taken:  # eval generate has its own --kb
        out.append(
            click.Option(["--kb"], type=click.Path(file_okay=False), hidden=True, expose_value=False, callback=_set_kb)
        )
    if "--quiet" not in taken and "-q" not in taken:
        out.append(
            click.Option(["-q", "--quiet"], is_flag=True, hidden=True, expose_value=False, callback=_set_flag("quiet"))
        )
    return out


def _json_param(cmd: click.Command) -> str | None:
    """The name of the command's ``--json`` flag, if it has one."""
    for p in cmd.params:
        if isinstance(p, click.Option) and "--json" in p.opts and p.name:
            return p.name
    return None


def _with_global_json(cmd: click.Command, json_param: str | None) -> None:
    """``kvgraph --json stats`` means ``kvgraph stats --json``; a command without JSON output refuses it."""
    inner = cmd.callback
    if inner is None:
        return

    @functools.wraps(inner)
    def callback(*args: Any, **kwargs: Any) -> Any:
        obj = _root_obj()
        if json_param is None:
            if obj.get("json"):
                raise click.UsageError(f"`kvgraph {command_name()}` has no JSON output; leave out --json")
        elif obj.get("json"):
            kwargs[json_param] = True
        return inner(*args, **kwargs)

    cmd.callback = callback


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group``, with its path of names (groups before their commands)."""
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, path)


def install_conventions(root: click.Group, examples: dict[str, str]) -> None:
    """Give every command under ``root`` the global options, ``-h``, its examples and the global ``--json``."""
    root.epilog = examples.get("", root.epilog)
    for path, cmd in walk(root):
        cmd.params.extend(_global_params(cmd))
        cmd.context_settings = {**CONTEXT_SETTINGS, **cmd.context_settings}
        example = examples.get(" ".join(path))
        if example and not cmd.epilog:
            cmd.epilog = example
        if not isinstance(cmd, click.Group):
            _with_global_json(cmd, _json_param(cmd))


def show_warnings() -> None:
    """kvgraph's log warnings (a layout saved, chunks missing) as ``warning: ...`` lines on stderr, and the
    steps of a model preparation that no bar shows (one started deep inside ``eval``, say)."""
    logger = logging.getLogger("kvgraph")
    if not any(isinstance(h, _EchoLog) for h in logger.handlers):
        logger.addHandler(_EchoLog())
    embed = logging.getLogger(MODEL_LOG)
    if embed.level == logging.NOTSET:  # the user's own logging configuration wins
        embed.setLevel(logging.INFO)


MODEL_LOG = "kvgraph.embed"  # where kvgraph.embed.onnx_build reports the steps of preparing a model


class _EchoLog(logging.Handler):
    muted = False  # while prepare_model's bar shows the same steps

    def emit(self, record: logging.LogRecord) -> None:
        # click.echo finds the stderr of now (a test runner swaps it)
        if record.levelno >= logging.WARNING:
            click.echo(f"warning: {record.getMessage()}", err=True)
        elif record.name == MODEL_LOG and not _EchoLog.muted and not quiet() and _stderr_is_terminal():
            click.echo(record.getMessage(), err=True)


def _stderr_is_terminal() -> bool:
    from kvgraph.progress import stderr_console

    return bool(stderr_console().is_terminal)


# ----------------------------------------------------------------------------- output


def envelope(payload: Any, command: str | None = None) -> dict[str, Any]:
    """``payload`` in the JSON envelope: a report's fields beside ``kvgraph``, ``schema`` and ``command``;
    a list of rows under ``results``."""
    from kvgraph import __version__

    head: dict[str, Any] = {"kvgraph": __version__, "schema": SCHEMA_VERSION, "command": command or command_name()}
    if isinstance(payload, dict) and not payload.keys() & head.keys():
        return {**head, **payload}
    return {**head, "results": payload}


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON, in the envelope (see :func:`envelope`)."""
    click.echo(json.dumps(envelope(obj), indent=2, ensure_ascii=False, default=str))


def row_formats(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--nl`` and ``--csv`` for a command whose output is rows (it has its own ``--json``)."""
    f = click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV: a header, then one line each.")(f)
    return click.option("--nl", "as_nl", is_flag=True, help="Print one JSON object per line (NDJSON).")(f)


def row_format(as_json: bool, as_nl: bool, as_csv: bool) -> str | None:
    """Which of ``--json``, ``--nl``, ``--csv`` was chosen (None: human output)."""
    chosen = [name for name, on in (("--json", as_json), ("--nl", as_nl), ("--csv", as_csv)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of {', '.join(chosen)}")
    return chosen[0].lstrip("-") if chosen else None


def echo_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> None:
    """Rows as JSON (the envelope), NDJSON (one object a line) or CSV (nested values as JSON text)."""
    if fmt == "json":
        echo_json(rows)
        return
    if fmt == "nl":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    names = columns or list(dict.fromkeys(k for row in rows for k in row))
    out = sys.stdout  # a test runner's too
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([_csv_cell(row.get(name)) for name in names])
    out.flush()


def _csv_cell(v: Any) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return "" if v is None else str(v)


def console() -> Any:
    """A rich console on stdout that wraps at the terminal's width, and not at all when piped."""
    from rich.console import Console

    c = Console()
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(width=WIDE)
    return c


def print_table(title: str, rows: dict[str, Any]) -> None:
    """A two-column key/value table on stdout."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in rows.items():
        t.add_row(k, str(v))
    console().print(t)


# ----------------------------------------------------------------------------- standard input


def stdin_text(what: str) -> str:
    """All of standard input, stripped: ``kvgraph ask -`` reads its question this way."""
    text = sys.stdin.read().strip()
    if not text:
        raise click.UsageError(f"{what} '-': standard input was empty")
    return text


def stdin_paths(null: bool) -> list[str]:
    """Paths from standard input, one per line (or NUL-separated with ``null``, as ``find -print0`` writes)."""
    data = sys.stdin.read()
    parts = data.split("\0") if null else data.splitlines()
    paths = [p for p in parts if p.strip()]
    if not paths:
        raise click.UsageError("'-': no paths on standard input")
    return paths


def expand_stdin(paths: Iterable[str], null: bool) -> list[str]:
    """``paths`` with ``-`` replaced by the paths read from standard input."""
    out: list[str] = []
    for p in paths:
        out += stdin_paths(null) if p == "-" else [p]
    return out


# ----------------------------------------------------------------------------- progress


def prepare_model(kb: KnowledgeBase) -> None:
    """Before a command embeds: prepare the embedding model if it is not yet, saying so on stderr."""
    from kvgraph.progress import ModelPreparation

    bar = ModelPreparation(enabled=not quiet())
    _EchoLog.muted = True
    try:
        kb.prepare_embedder(progress=bar)
    finally:
        _EchoLog.muted = False
        bar.finish()


def progress_bar(label: str = "ingesting") -> Any:
    """The ingest progress display (files, chunks, rate, time left), silent with ``--quiet``."""
    from kvgraph.progress import RichProgress

    return RichProgress(label=label, enabled=not quiet())


def activity(label: str) -> Any:
    """A spinner with elapsed time while a block runs, silent with ``--quiet``."""
    from kvgraph.progress import Activity

    return Activity(label, enabled=not quiet())
