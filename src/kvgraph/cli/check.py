"""``kvgraph check`` and ``kvgraph repair``: is anything in the knowledge base damaged, and fix what can be.

``check`` reads every part (store, registry, caches, graphs) and exits 1 naming what is damaged;
``repair`` rebuilds everything derived, ingests again what is missing and says what it did. See
:mod:`kvgraph.kb.integrity` for what each looks at.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from kvgraph.cli.common import echo_json, kb_path
from kvgraph.kb import KnowledgeBase


def _print_check(d: dict[str, Any]) -> None:
    for part in d["parts"]:
        state = "absent" if not part["present"] else "ok" if part["ok"] else "DAMAGED"
        click.echo(f"{state:8} {part['part']:20} {part['path']}")
        for line in part["problems"]:
            click.echo(f"  problem: {line}")
        for line in part["notes"]:
            click.echo(f"  note: {line}")
    click.echo("all parts intact" if d["ok"] else "damage found: run kvgraph repair (it rebuilds what can be rebuilt)")


def register(main: click.Group) -> None:
    @main.command("check")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def check(ctx: click.Context, as_json: bool) -> None:
        """Check every part of the knowledge base; exit 1 naming what is damaged."""
        from kvgraph.kb.integrity import check_kb  # not through an open: parts may be missing or unreadable

        d = check_kb(kb_path(ctx)).to_dict()
        echo_json(d) if as_json else _print_check(d)
        if not d["ok"]:
            sys.exit(1)

    @main.command("repair")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def repair(ctx: click.Context, as_json: bool) -> None:
        """Rebuild every derived file and ingest again what is missing; exit 1 if damage remains."""
        with KnowledgeBase.open(kb_path(ctx)) as kb:
            d = kb.repair().to_dict()
        if as_json:
            echo_json(d)
        else:
            for line in d["actions"] or ["nothing to repair"]:
                click.echo(line)
            for line in d["remaining"]:
                click.echo(f"still damaged: {line}", err=True)
        if d["remaining"]:
            sys.exit(1)
