"""Knowledge-base commands: init, ingest, sync, search, ask, stats, documents, delete.

Each is a thin layer over :class:`kvgraph.kb.KnowledgeBase`. The knowledge base is chosen
with the global ``--kb PATH`` option or ``KVGRAPH_KB`` (default ``./.kvgraph``).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from kvgraph.cli.common import echo_json as _echo_json
from kvgraph.cli.common import kb_path as _kb_path
from kvgraph.kb import KnowledgeBase


def _open(ctx: click.Context, read_only: bool, **overrides: Any) -> KnowledgeBase:
    return KnowledgeBase.open(_kb_path(ctx), read_only=read_only, **overrides)


def _console() -> Any:
    from rich.console import Console

    return Console()


def _report(report: Any, as_json: bool, verb: str) -> None:
    d = report.to_dict()
    if as_json:
        _echo_json(d)
        return
    parts = [
        f"{d['files_ingested']} files {verb}",
        f"{d['files_unchanged']} unchanged",
    ]
    if d["files_removed"]:
        parts.append(f"{d['files_removed']} removed")
    parts.append(f"{len(d['skipped'])} skipped")
    click.echo(
        ", ".join(parts)
        + f"; {d['documents']} documents (pages/sections), {d['chunks']} chunks, {d['tokens']} tokens"
        + f" in {d['seconds']:.1f} s ({d['chunks_per_s']:.1f} chunks/s, {d['embedded']} embedded, rest cached)"
    )
    for s in d["skipped"]:
        click.echo(f"skipped {s['path']}: {s['reason']}", err=True)


def _filters(exprs: tuple[str, ...]) -> dict[str, Any] | None:
    from kvgraph.filters import parse_expression

    parsed = [parse_expression(e) for e in exprs]
    if not parsed:
        return None
    return parsed[0] if len(parsed) == 1 else {"$and": parsed}


_filter_option = click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="EXPR",
    help="Metadata filter, e.g. 'page>=20', 'file_type=pdf', 'title~Llama' or JSON; repeat to AND.",
)
_mode_option = click.option(
    "--mode",
    type=click.Choice(["dense", "sparse", "hybrid", "mmr", "graph"]),
    default=None,
    help="Retrieval mode (graph: hybrid seeds, then a walk over the document graph; run kvgraph graph build first).",
)


def register(main: click.Group) -> None:
    @main.command("init")
    @click.option("--embedder", default=None, help="Embedder spec (default onnx-int8; see docs/configuration.md).")
    @click.option("--chunk-size", type=int, default=None, help="Chunk size in the embedder's tokens (default 254).")
    @click.option("--chunk-overlap", type=int, default=None, help="Overlap between chunks in tokens (default 32).")
    @click.option(
        "--references",
        type=click.Choice(["none", "chunk", "metadata", "both"]),
        default=None,
        help="Node references: search small nodes, answer from 1024-token parents (docs/retrieval.md).",
    )
    @click.option("--rerank", default=None, metavar="SPEC", help="Second stage: none, mmr or cross-encoder:MODEL_DIR.")
    @click.pass_context
    def init(
        ctx: click.Context,
        embedder: str | None,
        chunk_size: int | None,
        chunk_overlap: int | None,
        references: str | None,
        rerank: str | None,
    ) -> None:
        """Create the knowledge base and its settings file (optional: first use creates it too)."""
        from kvgraph.config import CONFIG_FILE

        path = _kb_path(ctx)
        existed = (path / CONFIG_FILE).exists()
        given = {
            "embedder": embedder,
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
            "references": references,
            "rerank": rerank,
        }
        with _open(ctx, False, **given) as kb:
            if existed and any(v is not None for v in given.values()):
                click.echo(f"{path / CONFIG_FILE} exists; edit it to change settings", err=True)
            click.echo(f"knowledge base ready at {kb.path} (settings in {kb.path / CONFIG_FILE})")

    @main.command("ingest")
    @click.argument("paths", nargs=-1, required=True, type=click.Path())
    @click.option("--include", multiple=True, help="Glob of files to take (repeatable), e.g. '*.md' or 'docs/**'.")
    @click.option("--exclude", multiple=True, help="Glob of files or folders to leave out (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def ingest(
        ctx: click.Context, paths: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...], as_json: bool
    ) -> None:
        """Ingest files and folders (PDF, text, Markdown, HTML); unchanged files are skipped."""
        from kvgraph.progress import RichProgress

        with _open(ctx, False) as kb:
            report = kb.ingest(
                list(paths), include=list(include) or None, exclude=list(exclude) or None, progress=RichProgress()
            )
        _report(report, as_json, "ingested")

    @main.command("sync")
    @click.argument("paths", nargs=-1, type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def sync(ctx: click.Context, paths: tuple[str, ...], as_json: bool) -> None:
        """Re-scan ingested folders: add new files, replace changed ones, remove deleted ones."""
        from kvgraph.progress import RichProgress

        with _open(ctx, False) as kb:
            report = kb.sync(list(paths), progress=RichProgress(label="syncing"))
        _report(report, as_json, "re-ingested")

    @main.command("search")
    @click.argument("query")
    @click.option("-k", "k", type=int, default=None, help="How many chunks (default: top_k setting, 5).")
    @_filter_option
    @_mode_option
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def search(
        ctx: click.Context, query: str, k: int | None, filters: tuple[str, ...], mode: str | None, as_json: bool
    ) -> None:
        """Show the chunks that best match QUERY, with scores and sources."""
        from kvgraph.schema import source_label

        with _open(ctx, True) as kb:
            hits = kb.search(query, k=k, filters=_filters(filters), mode=mode)
            walked: dict[str, str] = {}  # graph mode: how the walk reached each chunk, in words
            if (mode or kb.settings.mode) == "graph":
                walked = {
                    h.node.id: kb.graph.describe_path(getattr(h, "path", []))
                    for h in hits
                    if len(getattr(h, "path", [])) > 1
                }
        if as_json:
            _echo_json(
                [
                    {
                        "id": h.node.id,
                        "score": h.score,
                        "text": h.node.text,
                        "metadata": h.node.metadata,
                        **({"path": path} if (path := getattr(h, "path", None)) else {}),
                        **({"path_text": walked[h.node.id]} if h.node.id in walked else {}),
                    }
                    for h in hits
                ]
            )
            return
        if not hits:
            click.echo("no results")
            return
        from rich.table import Table

        t = Table(show_lines=True)
        for col in ("#", "score", "source", "text"):
            t.add_column(col, overflow="fold")
        from rich.text import Text

        for i, h in enumerate(hits, 1):
            flat = " ".join(h.node.text.split())
            text = Text(flat[:300] + ("…" if len(flat) > 300 else ""))  # Text: document brackets are not markup
            hit = getattr(h, "hit", None)
            if h.node.id in walked:  # reached by the graph walk: say along which nodes
                text.append(f"\npath: {walked[h.node.id]}", "dim")
            elif hit is not None and hit.id != h.node.id:  # reached through a reference: say which
                text.append(f"\nvia {hit.metadata.get('role', 'chunk')}: {' '.join(hit.text.split())[:120]}", "dim")
            t.add_row(str(i), f"{h.score:.3f}", Text(source_label(h.node.metadata)), text)
        _console().print(t)

    @main.command("ask")
    @click.argument("question")
    @click.option("-k", "k", type=int, default=None, help="How many chunks to answer from (default 5).")
    @_filter_option
    @_mode_option
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def ask(
        ctx: click.Context, question: str, k: int | None, filters: tuple[str, ...], mode: str | None, as_json: bool
    ) -> None:
        """Answer QUESTION from the knowledge base, citing sources as [n].

        Offline the answer is extractive (sentences quoted from the sources); with an LLM
        server configured (KVGRAPH_LLM_BASE_URL, KVGRAPH_LLM_MODEL) it is written by the LLM
        and streamed as it arrives.
        """
        with _open(ctx, True) as kb:
            if as_json:
                answer = kb.ask(question, k=k, filters=_filters(filters), mode=mode)
            else:
                streaming = kb.ask_stream(question, k=k, filters=_filters(filters), mode=mode)
                if hasattr(kb.answerer(), "stream"):  # an LLM writes the answer: show it as it comes
                    for delta in streaming:
                        click.echo(delta, nl=False)
                    click.echo()
                    answer = streaming.answer()
                    print_answer(answer, text=False)
                    return
                answer = streaming.answer()
        if as_json:
            _echo_json(
                {
                    "question": question,
                    "answer": answer.text,
                    "mode": answer.mode,
                    "citations": [c.__dict__ for c in answer.citations],
                    "sources": [
                        {"id": h.node.id, "score": h.score, "metadata": h.node.metadata} for h in answer.source_nodes
                    ],
                }
            )
            return
        print_answer(answer)

    @main.command("stats")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def stats(ctx: click.Context, as_json: bool) -> None:
        """Files, documents, chunks, tokens, settings and disk use of the knowledge base."""
        with _open(ctx, True) as kb:
            st = kb.stats()
        if as_json:
            _echo_json(st)
            return
        from rich.table import Table

        t = Table(title=f"knowledge base {st['path']}", show_header=False)
        t.add_column("key", style="bold")
        t.add_column("value")
        for key, value in st.items():
            t.add_row(key, str(value))
        _console().print(t)

    @main.command("documents")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def documents(ctx: click.Context, as_json: bool) -> None:
        """List ingested files with their chunk counts."""
        with _open(ctx, True) as kb:
            docs = kb.documents()
        if as_json:
            _echo_json(docs)
            return
        for d in docs:
            click.echo(f"{d['path']}  {len(d['doc_ids'])} documents, {d['n_nodes']} chunks, {d['ingested_at']}")

    @main.command("delete")
    @click.argument("doc")
    @click.pass_context
    def delete(ctx: click.Context, doc: str) -> None:
        """Delete a file (by path) or document (by id) and everything derived from it."""
        with _open(ctx, False) as kb:
            n = kb.delete(doc)
        click.echo(f"deleted {n} chunks of {doc}")


def print_answer(answer: Any, out: Any = None, text: bool = True) -> None:
    """The answer (unless already streamed), then its numbered sources with file, page and score."""
    console = out or _console()
    if text:
        console.print(answer.text, markup=False, highlight=False)
    if answer.citations:
        console.print()
        console.print("[bold]Sources[/bold]")
        for c in answer.citations:
            score = f"  (score {c.score:.3f})" if c.score is not None else ""
            console.print(f"  [{c.number}] {c.source}{score}", markup=False, highlight=False)
    sys.stdout.flush()
