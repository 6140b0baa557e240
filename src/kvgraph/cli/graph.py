"""``kvgraph graph``: import a graph, query it with Cypher, show its schema.

The graph belongs to the knowledge base chosen with ``--kb`` / ``KVGRAPH_KB`` (embedded Ladybug in
``KB/graph/``), or is a Neo4j server when ``KVGRAPH_NEO4J_URI`` is set. Queries are read-only unless
``--write`` is given; register with ``main.add_command(graph)``.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from kvgraph.cli.common import (
    CONTEXT_SETTINGS,
    OneLineErrors,
    activity,
    console,
    echo_rows,
    prepare_model,
    quiet,
    row_format,
    row_formats,
    stdin_text,
)
from kvgraph.cli.common import echo_json as _echo_json
from kvgraph.cli.common import kb_path as _kb_path
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v`` → (k, v), v parsed as JSON when it parses (numbers, lists, true), else the text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise InvalidInputError(f"--param {text!r}: write NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


@click.group("graph", cls=OneLineErrors, context_settings=CONTEXT_SETTINGS)
def graph() -> None:
    """The knowledge graph: import Cypher/JSON/CSV, run Cypher queries, show the schema."""


@graph.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cypher", "json", "jsonl", "csv"]),
    default=None,
    help="File format (default: from the extension; .cypher/.cql are Cypher scripts).",
)
@click.option("--label", default=None, help="Node label: import PATH as a node list of this label.")
@click.option("--rel-type", default=None, help="Relationship type: import PATH as an edge list.")
@click.option("--source-col", default="source", show_default=True, help="Edge list column of the source node.")
@click.option("--target-col", default="target", show_default=True, help="Edge list column of the target node.")
@click.option("--source-label", default=None, help="Label of source nodes (else the column holds node keys).")
@click.option("--target-label", default=None, help="Label of target nodes (else the column holds node keys).")
@click.option("--key", default="id", show_default=True, help="Property that identifies nodes.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def graph_import(
    ctx: click.Context,
    path: str,
    fmt: str | None,
    label: str | None,
    rel_type: str | None,
    source_col: str,
    target_col: str,
    source_label: str | None,
    target_label: str | None,
    key: str,
    as_json: bool,
) -> None:
    """Import a Cypher script, or a JSON/CSV node list (--label) or edge list (--rel-type)."""
    p = Path(path)
    fmt = fmt or ("cypher" if p.suffix.lower() in (".cypher", ".cql") else p.suffix.lstrip(".").lower())
    if fmt == "cypher" and (label or rel_type):
        raise InvalidInputError("--label/--rel-type are for JSON or CSV lists, not Cypher scripts")
    if fmt != "cypher" and bool(label) == bool(rel_type):
        raise InvalidInputError(f"{path}: give --label (a node list) or --rel-type (an edge list)")
    with KnowledgeBase.open(_kb_path(ctx)) as kb:
        outcome: dict[str, int]
        if fmt == "cypher":
            outcome = {"statements": kb.graph.import_cypher(p)}
        elif label:
            outcome = {"nodes": kb.graph.import_nodes(p, label, key=key, fmt=fmt)}
        else:
            assert rel_type
            outcome = {
                "edges": kb.graph.import_edges(
                    p,
                    rel_type,
                    source=source_col,
                    target=target_col,
                    source_label=source_label,
                    target_label=target_label,
                    key=key,
                    fmt=fmt,
                )
            }
        counts = kb.graph.counts()
    outcome.update({"total_nodes": counts[0], "total_relationships": counts[1]})
    if as_json:
        _echo_json(outcome)
    else:
        done = ", ".join(f"{v} {k}" for k, v in outcome.items() if not k.startswith("total"))
        click.echo(f"imported {done} from {path}; the graph has {counts[0]} nodes and {counts[1]} relationships")


def _cell(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return "" if v is None else str(v)


@graph.command("query")
@click.argument("cypher")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Bind $NAME (repeatable); VALUE is parsed as JSON when it parses, else taken as text.",
)
@click.option("--write", is_flag=True, help="Allow writing (otherwise the query must only read).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Stop the query after S seconds.")
@click.option("--max-rows", type=int, default=1000, show_default=True, help="Return at most N rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: columns, rows (lists) and truncated.")
@row_formats
@click.pass_context
def graph_query(
    ctx: click.Context,
    cypher: str,
    params: tuple[str, ...],
    write: bool,
    timeout: float,
    max_rows: int,
    as_json: bool,
    as_nl: bool,
    as_csv: bool,
) -> None:
    """Run one Cypher statement with bound parameters and print its rows ('-': read it from standard input).

    Without --write the statement must pass the read-only guard (reading statements only, size
    limits) and runs on a read-only handle in a sandbox process.
    """
    fmt = row_format(as_json, as_nl, as_csv)
    if cypher == "-":
        cypher = stdin_text("CYPHER")
    bound = dict(parse_param(p) for p in params)
    with KnowledgeBase.open(_kb_path(ctx), read_only=not write) as kb:
        run = kb.graph.write if write else kb.graph.query
        res = run(cypher, bound, timeout_s=timeout, max_rows=max_rows)
    if fmt == "json":
        _echo_json({"columns": res.columns, "rows": res.rows, "truncated": res.truncated})
        return
    if fmt is not None:  # one object per row, keyed by column
        echo_rows([dict(zip(res.columns, row)) for row in res.rows], fmt, list(res.columns))
        if res.truncated:
            click.echo(f"truncated at --max-rows {max_rows}", err=True)
        return
    from rich.table import Table

    t = Table(show_lines=False)
    for c in res.columns:
        t.add_column(c, overflow="fold")
    for row in res.rows:
        t.add_row(*[_cell(v) for v in row])
    console().print(t)
    note = f"{len(res.rows)} rows" + (f" (truncated at --max-rows {max_rows})" if res.truncated else "")
    click.echo(note, err=True)


@graph.command("schema")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def graph_schema(ctx: click.Context, as_json: bool) -> None:
    """Node labels, relationship types (with directions) and their properties."""
    with KnowledgeBase.open(_kb_path(ctx), read_only=True) as kb:
        s = kb.graph.schema()
    if as_json:
        _echo_json(
            {
                "node_labels": {k: {p.name: p.type for p in v} for k, v in s.node_labels.items()},
                "rel_types": {k: {p.name: p.type for p in v} for k, v in s.rel_types.items()},
                "rel_endpoints": {k: [list(x) for x in v] for k, v in s.rel_endpoints.items()},
            }
        )
    else:
        click.echo(s.text())


@graph.command("build")
@click.option(
    "--extractor",
    type=click.Choice(["offline", "llm", "both"]),
    default="offline",
    show_default=True,
    help="Entities from the offline extractor, from LLM triples (subject-relation-object), or both.",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel LLM requests.")
@click.option("--export", is_flag=True, help="Also write the graph into the graph store (Chunk/Document/Entity).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def graph_build(ctx: click.Context, extractor: str, concurrency: int, export: bool, as_json: bool) -> None:
    """Build the document graph from the ingested chunks, for `search --mode graph`.

    Chunks become nodes linked by NEXT/PARENT, to the entities they mention, to their nearest
    neighbours (SIMILAR), and entities to close names (SYNONYM). The offline extractor finds
    names, acronyms and keyphrases without an LLM; `--extractor llm` asks the configured LLM
    for each chunk's triples (RELATED edges that keep the relation and the chunk), cached in
    the knowledge base so a rebuild pays only for new chunks. Ingest and sync rebuild the
    graph with the same extractor once it exists.
    """
    from kvgraph.progress import LLMWorkProgress

    progress = LLMWorkProgress("extracting triples", enabled=not quiet()) if extractor != "offline" else None
    with KnowledgeBase.open(_kb_path(ctx)) as kb:
        prepare_model(kb)  # entity names are embedded for SYNONYM edges
        try:
            # one live display at a time: the LLM's bar, or else a spinner
            with activity("building the document graph") if progress is None else nullcontext():
                report = kb.graph.build(export=export, extractor=extractor, progress=progress, concurrency=concurrency)
        finally:
            if progress is not None:
                progress.finish()
    if as_json:
        _echo_json(report)
        return
    edges = ", ".join(f"{n:,} {t}" for t, n in report["edges"].items())
    click.echo(
        f"document graph: {report['chunks']:,} chunks, {report['documents']:,} documents, "
        f"{report['entities']:,} entities; edges: {edges} ({report['seconds']:.1f} s)"
    )
    t = report.get("triple_extraction")
    if t:
        click.echo(
            f"triples ({t['model'] or 'no model'}): {t['triples']:,} from {t['chunks_with_triples']:,} chunks; "
            f"{t['requests']:,} LLM requests, {t['cached']:,} chunks from the cache, "
            f"{t['prompt_tokens']:,} prompt + {t['completion_tokens']:,} completion tokens ({t['seconds']:.1f} s)"
        )


def _split_names(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise InvalidInputError(f"--text {text!r}: give property names separated by commas, e.g. name,description")
    return names


@graph.command("index-nodes")
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
    properties = _split_names(text)
    with KnowledgeBase.open(_kb_path(ctx)) as kb:
        prepare_model(kb)
        with activity(f"embedding {label} nodes"):
            report = kb.graph.index_nodes(label, properties, key=key)
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(
        f"{label}: {report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged"
        + (f", {report.empty} without text" if report.empty else "")
        + f" ({report.embedded} embedded in {report.seconds:.1f} s)"
    )


@graph.command("ask")
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
    always runs read-only), questions about descriptions to the node index. QUESTION '-' reads
    it from standard input.
    """
    if question == "-":
        question = stdin_text("QUESTION")
    with KnowledgeBase.open(_kb_path(ctx), read_only=True) as kb:
        if tool != "graph":
            prepare_model(kb)
        result = kb.graph.ask(question, tool=tool, k=k)
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(result.answer_text)
    if result.graph is not None:
        click.echo("\nCypher (run read-only):\n" + result.graph.cypher)
        click.echo("\nRows:\n" + result.graph.rows_text())
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
