"""The kvgraph command line. Thin: every command calls the Python API.

Human-readable output by default, ``--json`` for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kvgraph import __version__, cli_eval, cli_kb
from kvgraph.cli_common import OneLineErrors
from kvgraph.cli_graph import graph
from kvgraph.cli_graph_ask import ask as graph_ask
from kvgraph.cli_graph_ask import index_nodes as graph_index_nodes


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _table(title: str, rows: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k, v in rows.items():
        t.add_row(k, str(v))
    Console().print(t)


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="kvgraph")
@click.option(
    "--kb",
    envvar="KVGRAPH_KB",
    type=click.Path(file_okay=False),
    default=None,
    help="Knowledge-base directory (default: $KVGRAPH_KB or ./.kvgraph).",
)
@click.pass_context
def main(ctx: click.Context, kb: str | None) -> None:
    """kvgraph: a self-hosted knowledge engine (vector store, retrieval, knowledge graph)."""
    ctx.obj = {"kb": kb}


@main.group(cls=OneLineErrors)
def store() -> None:
    """Inspect and maintain an embedded vector store directory."""


def _open(path: str, read_only: bool = True) -> Any:
    from kvgraph.store import EmbeddedVectorStore

    return EmbeddedVectorStore.open(path, read_only=read_only)


@store.command("stats")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def store_stats(path: str, as_json: bool) -> None:
    """Counts, dimension, metric, index state and disk use of the store at PATH."""
    with _open(path) as s:
        st = s.stats()
    _print_json(st) if as_json else _table(f"store {path}", st)


@store.command("check")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def store_check(path: str, as_json: bool) -> None:
    """Verify every checksum; exit 1 naming the damaged file if any."""
    with _open(path) as s:
        res = s.verify()
    _print_json({"ok": True, **res}) if as_json else _table(f"store {path}: all checksums match", res)


@store.command("vacuum")
@click.argument("path", type=click.Path(file_okay=False))
def store_vacuum(path: str) -> None:
    """Purge deleted rows from vectors and indexes and reclaim disk space."""
    with _open(path, read_only=False) as s:
        res = s.vacuum()
    click.echo(f"removed {res['removed_rows']} dead rows; {res['rows']} rows remain")


@main.command("demo")
@click.option(
    "--datasets",
    type=click.Path(file_okay=False),
    default=None,
    help="Shared datasets folder for the Llama 2 question (default: $KVGRAPH_DATASETS or ../shared/datasets).",
)
@click.option(
    "--dir",
    "kb_dir",
    type=click.Path(file_okay=False),
    default=".kvgraph-demo",
    show_default=True,
    help="Where the demo knowledge base lives (reused on the next run).",
)
@click.option("--questions", type=int, default=None, help="Ask only the first N sample questions.")
def demo(datasets: str | None, kb_dir: str, questions: int | None) -> None:
    """Ingest the sample documents and answer questions about them with citations."""
    from kvgraph.datasets import datasets_root
    from kvgraph.demo import run_demo

    run_demo(Path(kb_dir), datasets_root(datasets), questions)


cli_kb.register(main)
cli_eval.register(main)
graph.add_command(graph_ask)
graph.add_command(graph_index_nodes)
main.add_command(graph)

if __name__ == "__main__":  # pragma: no cover
    main()
