"""The root ``kvgraph`` group; each command group lives in its own module and registers here.

Human-readable output by default, ``--json`` for scripts; the conventions every command shares
(global options, ``-h``, examples, the JSON envelope, exit statuses) are in :mod:`.common`.
"""

from __future__ import annotations

import click

from kvgraph import __version__
from kvgraph.cli import chat as chat_commands
from kvgraph.cli import check as check_commands
from kvgraph.cli import demo as demo_commands
from kvgraph.cli import eval as eval_commands
from kvgraph.cli import finetune as finetune_commands
from kvgraph.cli import kb as kb_commands
from kvgraph.cli import migrate as migrate_commands
from kvgraph.cli import serve as serve_commands
from kvgraph.cli.common import CONTEXT_SETTINGS, OneLineErrors, install_conventions, show_warnings
from kvgraph.cli.examples import EXAMPLES
from kvgraph.cli.graph import graph
from kvgraph.cli.store import store


@click.group(cls=OneLineErrors, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="kvgraph")
@click.option(
    "--kb",
    envvar="KVGRAPH_KB",
    type=click.Path(file_okay=False),
    default=None,
    help="Knowledge-base directory (default: $KVGRAPH_KB or ./.kvgraph). Also accepted after the command.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (errors and results still print).")
@click.option("--json", "as_json", is_flag=True, help="JSON output, for commands that have it (same as their --json).")
@click.pass_context
def main(ctx: click.Context, kb: str | None, quiet: bool, as_json: bool) -> None:
    """kvgraph: a self-hosted knowledge engine (vector store, retrieval, knowledge graph).

    Global options (--kb, --quiet, --json) work before or after the command's name.
    """
    # the command's own --kb, --quiet and --json are parsed after this and update the same dict
    ctx.ensure_object(dict).update(kb=kb, quiet=quiet, json=as_json)
    show_warnings()


kb_commands.register(main)
eval_commands.register(main)
finetune_commands.register(main)
demo_commands.register(main)
serve_commands.register(main)
chat_commands.register(main)
check_commands.register(main)
migrate_commands.register(main)
main.add_command(store)
main.add_command(graph)
install_conventions(main, EXAMPLES)

if __name__ == "__main__":  # pragma: no cover
    main()
