"""``kvgraph graph index-nodes`` and ``kvgraph graph ask``: vectors on graph nodes, and questions over the graph.

Attach both to the ``graph`` group: ``graph.add_command(index_nodes)``, ``graph.add_command(ask)``.
The knowledge base comes from ``--kb`` / ``KVGRAPH_KB`` (the graph in ``KB/graph/`` or Neo4j when
``KVGRAPH_NEO4J_URI`` is set, the node index in ``KB/graph-index/``); the embedder and the LLM
from the knowledge base's settings and the environment, as for ``kvgraph ask``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from kvgraph.cli_common import echo_json as _echo_json
from kvgraph.cli_common import kb_path as _kb_path
from kvgraph.errors import InvalidInputError


def _settings(kb: Path) -> Any:
    from kvgraph.config import load_settings

    return load_settings(kb)


def _embedder(settings: Any) -> Any:
    from kvgraph.embed.factory import embedder_from_spec

    return embedder_from_spec(settings.embedder, threads=settings.embed_threads)


def _llm(settings: Any) -> Any:
    """The LLM of the knowledge base's settings or the environment (None: offline)."""
    from kvgraph.llm import llm_from_env

    env = dict(os.environ)
    if settings.llm_base_url:
        env["KVGRAPH_LLM_BASE_URL"] = settings.llm_base_url
    if settings.llm_model:
        env["KVGRAPH_LLM_MODEL"] = settings.llm_model
    return llm_from_env(env)


def _split_names(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise InvalidInputError(f"--text {text!r}: give property names separated by commas, e.g. name,description")
    return names


@click.command("index-nodes")
@click.option("--label", required=True, help="Node label whose nodes are embedded, e.g. Task.")
@click.option(
    "--text", "text", required=True, metavar="PROPS", help="Comma-separated properties to embed: name,description."
)
@click.option("--key", default=None, help="Property naming a node in answers (default: name, when embedded).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def index_nodes(ctx: click.Context, label: str, text: str, key: str | None, as_json: bool) -> None:
    """Embed text properties of graph nodes so that `graph ask` finds nodes by meaning.

    Run it again after the graph changed: only nodes whose text changed are embedded again,
    and vectors of deleted nodes are removed.
    """
    from kvgraph.graph.node_index import NodeIndex, index_path
    from kvgraph.graph.open import open_graph_store

    kb = _kb_path(ctx)
    properties = _split_names(text)
    embedder = _embedder(_settings(kb))
    store = open_graph_store(kb, read_only=True)
    try:
        with NodeIndex.open(store, index_path(kb), embedder) as index:
            report = index.index_nodes(label, properties, key=key)
    finally:
        store.close()
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(
        f"{label}: {report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged"
        + (f", {report.empty} without text" if report.empty else "")
        + f" ({report.embedded} embedded in {report.seconds:.1f} s)"
    )


@click.command("ask")
@click.argument("question")
@click.option(
    "--tool",
    type=click.Choice(["auto", "vector", "graph"]),
    default="auto",
    show_default=True,
    help="vector: answer from the indexed node texts; graph: an LLM writes Cypher; auto: the router decides.",
)
@click.option("-k", "--top-k", "k", type=int, default=4, show_default=True, help="Nodes the vector tool reads.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer, route, query, rows and citations as JSON.")
@click.pass_context
def ask(ctx: click.Context, question: str, tool: str, k: int, as_json: bool) -> None:
    """Answer QUESTION from the knowledge graph, with the tool the router picks (and why).

    Counting, ranking and relationship questions go to text-to-Cypher (needs an LLM; the query
    always runs read-only), questions about descriptions to the node index.
    """
    from kvgraph.graph.ask import GraphQA
    from kvgraph.graph.node_index import NodeIndex, index_path
    from kvgraph.graph.open import open_graph_store

    kb = _kb_path(ctx)
    settings = _settings(kb)
    embedder = _embedder(settings)
    llm = _llm(settings)
    store = open_graph_store(kb, read_only=True)
    index = None
    try:
        if Path(index_path(kb), "records.sqlite").exists():
            index = NodeIndex.open(store, index_path(kb), embedder, read_only=True)
        result = GraphQA(store, embedder, index, llm, k=k).ask(question, tool)
    finally:
        if index is not None:
            index.close()
        store.close()
        if llm is not None:
            llm.close()
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(result.answer_text)
    if result.graph is not None:
        from kvgraph.graph.text2cypher import rows_text

        click.echo("\nCypher (run read-only):\n" + result.graph.cypher)
        click.echo("\nRows:\n" + rows_text(result.graph.columns, result.graph.rows))
        if len(result.graph.attempts) > 1:
            click.echo(
                f"({len(result.graph.attempts)} attempts; earlier errors: "
                + "; ".join(a.error or "" for a in result.graph.attempts[:-1])
                + ")"
            )
    elif result.citations:
        click.echo("")
        for c in result.citations:
            score = f", score {c.score:.3f}" if c.score is not None else ""
            click.echo(f"[{c.number}] {c.source} ({c.node_id}{score})")
    d = result.decision
    scores = ", ".join(f"{name} {score:.3f}" for name, score in d.scores.items())
    click.echo(f"\nroute: {d.tool} by {d.method} ({scores}): {d.reason}", err=True)
