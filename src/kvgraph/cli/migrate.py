"""``kvgraph migrate``: move a knowledge base's vectors and graph between the embedded engines and servers.

``--store postgresql://...`` / ``--graph bolt://...`` copy to a server; ``embedded`` copies back into the
KB directory. The copy is checked before ``kvgraph.toml`` switches to it (see :mod:`kvgraph.kb.migrate`).
"""

from __future__ import annotations

import click

from kvgraph.cli.common import echo_json, kb_path


def _target(value: str | None) -> str | None:
    if value is None:
        return None
    return "" if value == "embedded" else value


def register(main: click.Group) -> None:
    @main.command("migrate")
    @click.option("--store", "store", default=None, help="postgresql://user@host/db?schema=NAME, or embedded.")
    @click.option("--graph", "graph", default=None, help="bolt://host:7687?database=NAME, or embedded.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def migrate(ctx: click.Context, store: str | None, graph: str | None, as_json: bool) -> None:
        """Copy the vectors (--store) and/or the graph (--graph) to another engine, then switch to it."""
        from kvgraph.kb.migrate import migrate as run

        if store is None and graph is None:
            raise click.UsageError("give --store and/or --graph (a URI, or embedded)")

        def show(part: str, done: int, total: int) -> None:
            if not as_json:
                click.echo(f"  {part}: {done:,}/{total:,}", err=True)

        report = run(kb_path(ctx), store_uri=_target(store), graph_uri=_target(graph), progress=show)
        if as_json:
            echo_json(report.to_dict())
            return
        if report.store_to:
            click.echo(f"vectors: {report.nodes:,} nodes copied from {report.store_from} to {report.store_to}")
        if report.graph_to:
            click.echo(
                f"graph: {report.graph_nodes:,} nodes and {report.graph_edges:,} relationships copied "
                f"from {report.graph_from} to {report.graph_to}"
            )
        for kept in report.kept:
            click.echo(f"the previous embedded copy is kept at {kept} (delete it when satisfied)")
        if not (report.store_to or report.graph_to):
            click.echo("nothing to do: the knowledge base already uses those engines")
