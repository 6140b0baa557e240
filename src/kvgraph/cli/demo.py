"""The main job on sample documents: ingest, then answer questions with citations.

Ingests the sample documents shipped in the package, ``kvgraph/demo_data/docs`` (Markdown,
HTML, text and a PDF), into a knowledge base, asks the questions in
``kvgraph/demo_data/questions.json`` and prints each answer with its numbered sources; it
works from an installed wheel, in any directory. When the shared datasets are present it also ingests the Llama 2 paper
(one document per page) and asks about safety fine-tuning. A second run re-uses the
knowledge base: unchanged files are not embedded again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from kvgraph.cli.common import console as _console
from kvgraph.cli.common import prepare_model, progress_bar
from kvgraph.kb import KnowledgeBase

LLAMA2_QUESTION = "Can you tell me about the key concepts for safety finetuning"


def samples_dir() -> Path:
    """The demo's documents (``docs/``) and questions, package data of kvgraph (kvgraph/cli/demo.py -> kvgraph/)."""
    return Path(__file__).resolve().parents[1] / "demo_data"


def _rule(console: Any, title: str = "") -> None:
    """A horizontal rule on a terminal; a short marked line when piped (a rule would be as wide as the console)."""
    from rich.rule import Rule

    if console.is_terminal:
        console.print(Rule(title))
    else:
        console.print(f"--- {title}" if title else "---", markup=False, highlight=False)


def run_demo(
    kb_dir: Path, datasets: Path | None, n_questions: int | None = None, console: Any = None
) -> dict[str, Any]:
    from kvgraph.cli.kb import print_answer

    console = console or _console()
    samples = samples_dir()
    questions = json.loads((samples / "questions.json").read_text(encoding="utf-8"))[:n_questions]
    summary: dict[str, Any] = {"questions": len(questions), "expected_source_cited_first": 0}
    with KnowledgeBase.open(kb_dir) as kb:
        _rule(console, f"ingesting {samples / 'docs'} into {kb_dir}")
        prepare_model(kb)
        progress = progress_bar()
        try:
            report = kb.ingest([samples / "docs"], progress=progress)
        finally:
            progress.finish()
        console.print(
            f"{report.files_ingested} files ingested, {report.files_unchanged} unchanged: "
            f"{report.documents} documents, {report.chunks} chunks, {report.tokens} tokens "
            f"in {report.seconds:.1f} s"
        )
        for q in questions:
            _rule(console)
            console.print(f"[bold]Q: {q['question']}[/bold]")
            t0 = time.perf_counter()
            answer = kb.ask(q["question"])
            print_answer(answer, console)
            first = answer.citations[0] if answer.citations else None
            ok = first is not None and first.source.startswith(q["expected_source"])
            ok = ok and (q.get("expected_page") is None or (first is not None and first.page == q["expected_page"]))
            summary["expected_source_cited_first"] += int(ok)
            console.print(f"[dim]{(time.perf_counter() - t0) * 1000:.0f} ms[/dim]")
        if datasets is not None and (datasets / "llama2").is_dir():
            summary["llama2"] = _llama2(kb, datasets, console)
    _rule(console)
    console.print(
        f"{summary['expected_source_cited_first']}/{summary['questions']} answers cite the expected document first"
    )
    return summary


def _llama2(kb: KnowledgeBase, datasets: Path, console: Any) -> dict[str, Any]:
    from kvgraph.cli.kb import print_answer
    from kvgraph.eval.sources import llama2_pages

    pages = llama2_pages(datasets)
    _rule(console, f"the Llama 2 paper: {len(pages)} pages")
    t0 = time.perf_counter()
    progress = progress_bar("embedding pages")
    try:
        nodes = kb.add_documents(pages, progress=progress)
    finally:
        progress.finish()
    console.print(f"{len(nodes)} chunks in {time.perf_counter() - t0:.1f} s (cached after the first run)")
    console.print(f"[bold]Q: {LLAMA2_QUESTION}[/bold]")
    answer = kb.ask(LLAMA2_QUESTION, filters={"file_name": "llama2_paper_pdftext.txt"})
    print_answer(answer, console)
    return {"top_pages": [h.node.metadata.get("page") for h in answer.source_nodes]}


def register(main: click.Group) -> None:
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
        from kvgraph.eval.sources import datasets_root

        run_demo(Path(kb_dir), datasets_root(datasets), questions)
