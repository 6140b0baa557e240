"""Knowledge-base commands: init, ingest, sync, search, ask, stats, documents, delete.

Each is a thin layer over :class:`kvgraph.kb.KnowledgeBase`. The knowledge base is chosen
with the global ``--kb PATH`` option or ``KVGRAPH_KB`` (default ``./.kvgraph``); the conventions
they share (``-`` for standard input, the JSON envelope, ``--nl``/``--csv``, exit statuses,
progress) are in :mod:`kvgraph.cli.common`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from kvgraph.cli.common import (
    EXIT_INCOMPLETE,
    console,
    echo_json,
    echo_rows,
    expand_stdin,
    prepare_model,
    progress_bar,
    row_format,
    row_formats,
    stdin_text,
)
from kvgraph.cli.common import kb_path as _kb_path
from kvgraph.kb import KnowledgeBase


def _open(ctx: click.Context, read_only: bool, **overrides: Any) -> KnowledgeBase:
    return KnowledgeBase.open(_kb_path(ctx), read_only=read_only, **overrides)


class _FirstIngest:
    """Leaves no empty knowledge base behind: when an ingest creates the knowledge-base directory
    (or finds it empty) and nothing gets in, what the run created is removed on the way out,
    whatever ends it (a skip, an error, Ctrl-C). Nothing that existed before is ever removed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.remove: Path | None = None  # a directory this run creates: removed whole
        self.empty_before = False  # the directory existed and was empty: its new entries are removed
        self.kept = False
        if not os.path.lexists(path):
            top = path.absolute()
            while not os.path.lexists(top.parent) and top.parent != top:
                top = top.parent  # --kb a/b/kb with a/ missing: a/ is created too
            self.remove = top
        elif path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                self.empty_before = not any(path.iterdir())

    def keep_if_used(self, kb: KnowledgeBase) -> None:
        """Mark the knowledge base as kept when it lists an ingested file (or cannot be read: when unsure, keep)."""
        try:
            self.kept = self.kept or bool(kb.documents())
        except Exception:
            self.kept = True

    def __enter__(self) -> _FirstIngest:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kept or not (self.remove or self.empty_before):
            return
        try:
            if self.remove is not None:
                shutil.rmtree(self.remove)
            else:
                for entry in self.path.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        except OSError as e:
            click.echo(f"warning: could not remove the empty knowledge base {self.path}: {e}", err=True)
            return
        click.echo(f"nothing was ingested: removed the new, empty knowledge base {self.path}", err=True)


def _report(report: Any, as_json: bool, verb: str) -> None:
    """Print an ingest or sync report; exit 3 when files were skipped or none was found to ingest."""
    d = report.to_dict()
    if as_json:
        echo_json(d)
    else:
        parts = [
            f"{d['files_ingested']} files {verb}",
            f"{d['files_unchanged']} unchanged",
        ]
        if d["files_removed"]:
            parts.append(f"{d['files_removed']} removed")
        parts.append(f"{len(d['skipped'])} skipped")
        reused = d["chunks"] - d["embedded"]
        kept = f", {reused} kept their stored vectors" if reused > 0 else ""
        click.echo(
            ", ".join(parts)
            + f"; {d['documents']} documents (pages/sections), {d['chunks']} chunks, {d['tokens']} tokens"
            + f" in {d['seconds']:.1f} s ({d['chunks_per_s']:.1f} chunks/s, {d['embedded']} embedded{kept})"
        )
        for s in d["skipped"]:
            click.echo(f"skipped {s['path']}: {s['reason']}", err=True)
    nothing = verb == "ingested" and not (d["files_ingested"] or d["files_unchanged"] or d["files_restored"])
    if nothing and not d["skipped"]:
        kinds = " ".join(sorted(KnowledgeBase.supported_extensions()))
        click.echo(f"nothing to ingest: no file of a supported type found there ({kinds})", err=True)
    if d["skipped"] or nothing:
        sys.exit(EXIT_INCOMPLETE)


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


def _hit_rows(hits: list[Any], walked: dict[str, str]) -> list[dict[str, Any]]:
    """Search hits as rows: rank, score, id, source label, text, metadata (and how the graph walk got there)."""
    from kvgraph.schema import source_label

    return [
        {
            "rank": i,
            "id": h.node.id,
            "score": h.score,
            "source": source_label(h.node.metadata),
            "text": h.node.text,
            "metadata": h.node.metadata,
            **({"path": path} if (path := getattr(h, "path", None)) else {}),
            **({"path_text": walked[h.node.id]} if h.node.id in walked else {}),
        }
        for i, h in enumerate(hits, 1)
    ]


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
    @click.option(
        "--rerank",
        default=None,
        metavar="SPEC",
        help="Second stage: auto (default), none, mmr, sentences, tokens or cross-encoder:MODEL_DIR.",
    )
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
    @click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="ray: load, split and embed on the workers of a Ray cluster; commit here in batches.",
    )
    @click.option("--address", default=None, help="Ray cluster to join (auto, ray://host:10001); default: a local one.")
    @click.option("--null", "null", is_flag=True, help="With '-': paths on standard input are NUL-separated.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def ingest(
        ctx: click.Context,
        paths: tuple[str, ...],
        include: tuple[str, ...],
        exclude: tuple[str, ...],
        engine: str,
        address: str | None,
        null: bool,
        as_json: bool,
    ) -> None:
        """Ingest files and folders (PDF, text, Markdown, HTML, Word, PowerPoint, Excel, CSV, e-mail, EPUB,
        JSON); unchanged files are skipped.

        PATH '-' reads paths from standard input, one per line (NUL-separated with --null). Exit
        status 3: files were skipped (unreadable; listed on stderr) or none was found; the rest is
        committed. A knowledge base this run created is removed again when nothing got into it.
        """
        if address is not None and engine != "ray":
            raise click.UsageError("--address needs --engine ray")
        if null and "-" not in paths:
            raise click.UsageError("--null is for paths read from standard input: give '-' as PATH")
        files = expand_stdin(paths, null)
        with _FirstIngest(_kb_path(ctx)) as first:
            with _open(ctx, False) as kb:
                try:
                    if engine == "local":
                        prepare_model(kb)
                    progress = progress_bar()
                    try:
                        report = kb.ingest(
                            files,
                            include=list(include) or None,
                            exclude=list(exclude) or None,
                            progress=progress,
                            engine=engine,
                            address=address,
                        )
                    finally:
                        progress.finish()
                finally:
                    first.keep_if_used(kb)
            _report(report, as_json, "ingested")

    @main.command("sync")
    @click.argument("paths", nargs=-1, type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def sync(ctx: click.Context, paths: tuple[str, ...], as_json: bool) -> None:
        """Re-scan ingested folders: add new files, replace changed ones, remove deleted ones.

        Exit status 3 when files were skipped (unreadable; listed on stderr).
        """
        with _open(ctx, False) as kb:
            prepare_model(kb)
            progress = progress_bar("syncing")
            try:
                report = kb.sync(list(paths), progress=progress)
            finally:
                progress.finish()
        _report(report, as_json, "re-ingested")

    @main.command("search")
    @click.argument("query")
    @click.option("-k", "k", type=int, default=None, help="How many chunks (default: top_k setting, 5).")
    @_filter_option
    @_mode_option
    @click.option("--json", "as_json", is_flag=True, help="Print JSON: the hits under results.")
    @row_formats
    @click.pass_context
    def search(
        ctx: click.Context,
        query: str,
        k: int | None,
        filters: tuple[str, ...],
        mode: str | None,
        as_json: bool,
        as_nl: bool,
        as_csv: bool,
    ) -> None:
        """Show the chunks that best match QUERY, with scores and sources ('-': read it from standard input)."""
        fmt = row_format(as_json, as_nl, as_csv)
        if query == "-":
            query = stdin_text("QUERY")
        with _open(ctx, True) as kb:
            if (mode or kb.settings.mode) != "sparse":  # BM25 alone never loads the model
                prepare_model(kb)
            hits = kb.search(query, k=k, filters=_filters(filters), mode=mode)
            walked: dict[str, str] = {}  # graph mode: how the walk reached each chunk, in words
            if (mode or kb.settings.mode) == "graph":
                walked = {
                    h.node.id: kb.graph.describe_path(getattr(h, "path", []))
                    for h in hits
                    if len(getattr(h, "path", [])) > 1
                }
        if fmt is not None:
            columns = ["rank", "score", "id", "source", "text", "metadata"] if fmt == "csv" else None
            echo_rows(_hit_rows(hits, walked), fmt, columns)
            return
        if not hits:
            click.echo("no results")
            return
        from rich.table import Table
        from rich.text import Text

        from kvgraph.schema import source_label

        t = Table(show_lines=True)
        for col in ("#", "score", "source", "text"):
            t.add_column(col, overflow="fold")
        for i, h in enumerate(hits, 1):
            flat = " ".join(h.node.text.split())
            text = Text(flat[:300] + ("…" if len(flat) > 300 else ""))  # Text: document brackets are not markup
            hit = getattr(h, "hit", None)
            if h.node.id in walked:  # reached by the graph walk: say along which nodes
                text.append(f"\npath: {walked[h.node.id]}", "dim")
            elif hit is not None and hit.id != h.node.id:  # reached through a reference: say which
                text.append(f"\nvia {hit.metadata.get('role', 'chunk')}: {' '.join(hit.text.split())[:120]}", "dim")
            t.add_row(str(i), f"{h.score:.3f}", Text(source_label(h.node.metadata)), text)
        console().print(t)

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
        """Answer QUESTION from the knowledge base, citing sources as [n] ('-': read it from standard input).

        Offline the answer is extractive (sentences quoted from the sources); with an LLM
        server configured (KVGRAPH_LLM_BASE_URL, KVGRAPH_LLM_MODEL) it is written by the LLM
        and streamed as it arrives.
        """
        if question == "-":
            question = stdin_text("QUESTION")
        with _open(ctx, True) as kb:
            if (mode or kb.settings.mode) != "sparse":
                prepare_model(kb)
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
            echo_json(
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
        """Files, documents (from files and added through the API), chunks, tokens, settings and disk use."""
        with _open(ctx, True) as kb:
            st = kb.stats()
        if as_json:
            echo_json(st)
            return
        from rich.table import Table

        shown = dict(st)
        if "documents_added" in shown:  # one line: how many documents, and where they came from
            from_files, added = shown.pop("documents_from_files"), shown.pop("documents_added")
            shown["documents"] = f"{st['documents']} ({from_files} from files, {added} added through the API)"
        t = Table(title=f"knowledge base {st['path']}", show_header=False)
        t.add_column("key", style="bold")
        t.add_column("value", overflow="fold")
        for key, value in shown.items():
            t.add_row(key, str(value))
        console().print(t)

    @main.command("documents")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON: the files under results.")
    @row_formats
    @click.pass_context
    def documents(ctx: click.Context, as_json: bool, as_nl: bool, as_csv: bool) -> None:
        """List ingested files with their documents and chunk counts."""
        fmt = row_format(as_json, as_nl, as_csv)
        with _open(ctx, True) as kb:
            docs = kb.documents()
        if fmt is not None:
            echo_rows(docs, fmt)
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
    con = out or console()
    if text:
        con.print(answer.text, markup=False, highlight=False)
    if answer.citations:
        con.print()
        con.print("[bold]Sources[/bold]")
        for c in answer.citations:
            score = f"  (score {c.score:.3f})" if c.score is not None else ""
            con.print(f"  [{c.number}] {c.source}{score}", markup=False, highlight=False)
    sys.stdout.flush()
