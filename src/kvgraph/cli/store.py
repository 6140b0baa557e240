"""``kvgraph store``: inspect and maintain one embedded vector store directory."""

from __future__ import annotations

from typing import Any

import click

from kvgraph.cli.common import CONTEXT_SETTINGS, OneLineErrors, activity, echo_json, print_table
from kvgraph.kb import maintenance


@click.group(cls=OneLineErrors, context_settings=CONTEXT_SETTINGS)
def store() -> None:
    """Inspect and maintain an embedded vector store directory."""


def _show(title: str, rows: dict[str, Any], as_json: bool) -> None:
    echo_json(rows) if as_json else print_table(title, rows)


@store.command("stats")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def store_stats(path: str, as_json: bool) -> None:
    """Counts, dimension, metric, index state and disk use of the store at PATH."""
    _show(f"store {path}", maintenance.store_stats(path), as_json)


@store.command("check")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def store_check(path: str, as_json: bool) -> None:
    """Verify every checksum (vectors, records, caches; a knowledge base's store also against its registry).

    Exit 1 naming what is damaged.
    """
    with activity(f"checking {path}"):
        res = maintenance.verify_store(path)
    echo_json({"ok": True, **res}) if as_json else print_table(f"store {path}: all checksums match", res)


@store.command("vacuum")
@click.argument("path", type=click.Path(file_okay=False))
def store_vacuum(path: str) -> None:
    """Purge deleted rows from vectors and indexes and reclaim disk space."""
    with activity(f"vacuuming {path}"):
        res = maintenance.vacuum_store(path)
    click.echo(f"removed {res['removed_rows']} dead rows; {res['rows']} rows remain")
