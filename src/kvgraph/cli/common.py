"""What every kvgraph command module shares: one-line errors, the knowledge-base path, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kvgraph.errors import KvgraphError


class OneLineErrors(click.Group):
    """Turns kvgraph errors into one clear line and exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KvgraphError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


def kb_path(ctx: click.Context) -> Path:
    """The knowledge base of this invocation: ``--kb``, else ``KVGRAPH_KB``, else ``./.kvgraph``."""
    from kvgraph.kb import default_kb_path  # kvgraph.kb loads the ingest pipeline: only when a command runs

    obj = ctx.find_root().obj or {}
    return Path(obj.get("kb") or default_kb_path())


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def print_table(title: str, rows: dict[str, Any]) -> None:
    """A two-column key/value table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k, v in rows.items():
        t.add_row(k, str(v))
    Console().print(t)
