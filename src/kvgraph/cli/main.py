"""The root ``kvgraph`` group; each command group lives in its own module and registers here.

Human-readable output by default, ``--json`` for scripts.
"""

from __future__ import annotations

import click

from kvgraph import __version__
from kvgraph.cli import demo as demo_commands
from kvgraph.cli import eval as eval_commands
from kvgraph.cli import kb as kb_commands
from kvgraph.cli.common import OneLineErrors
from kvgraph.cli.graph import graph
from kvgraph.cli.store import store


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


kb_commands.register(main)
eval_commands.register(main)
demo_commands.register(main)
main.add_command(store)
main.add_command(graph)

if __name__ == "__main__":  # pragma: no cover
    main()
