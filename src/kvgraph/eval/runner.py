"""Run many retrievers over one dataset and report them side by side.

Retrievers are named by spec (:mod:`kvgraph.eval.specs`: ``kvgraph``, ``kvgraph:mode=hybrid``,
``graph:damping=0.5``, ``bm25``, ``chunk_refs``...; see :mod:`kvgraph.eval.retrievers`), or
passed as ``extra`` callables. The product retrievers (``kvgraph``, ``graph``) ingest the
dataset's passages the way a user would and query them through the knowledge base's own
retrieval (``KnowledgeBase.retriever``, ``kb.graph.retriever``); the passage-KB retrievers
search the same store directly; the node-reference retrievers build their own indexes beside
it. Every query is run through every retriever and the ranked passage ids are scored with
:mod:`kvgraph.eval.metrics`. Everything is kept in ``work_dir``, so a second run with the same
passages embeds nothing. With ``progress``, ingestion, graph builds and queries show progress
on stderr.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import (
    EvalDataset,
    read_beir,
    read_hipporag,
    read_llamaindex_qa,
    read_llamaindex_rag,
    read_page_questions,
)
from kvgraph.eval.datasets import read_squad as _read_squad
from kvgraph.eval.metrics import RetrievalReport, evaluate_retrieval
from kvgraph.eval.retrievers import (
    LEXICAL,
    PRODUCT,
    RETRIEVERS,
    EvalContext,
    Ranker,
    RetrieverFactory,
    passages_as_documents,
    ranked_passages,
    resolve,
)
from kvgraph.eval.specs import RetrieverSpec, parse_retrievers

__all__ = [
    "FORMATS",
    "RETRIEVERS",
    "EvalContext",
    "Ranker",
    "RetrievalRun",
    "RetrieverFactory",
    "passages_as_documents",
    "ranked_passages",
    "read_dataset",
    "resolve_retrievers",
    "run_retrieval",
]

FORMATS = ("beir", "hipporag", "llamaindex", "llamaindex-qa", "squad", "pages")
QUERY_BATCH = 16  # queries ranked between two progress updates


def read_dataset(
    path: str | os.PathLike[str],
    fmt: str,
    max_items: int | None = None,
    datasets: str | os.PathLike[str] | None = None,
) -> EvalDataset:
    """Read a dataset in one of :data:`FORMATS` (a file, or a folder for beir and hipporag).

    ``pages`` reads questions with gold pages (:func:`kvgraph.eval.datasets.read_page_questions`),
    whose text comes from the ``datasets`` folder (default ``KVGRAPH_DATASETS`` or ``../shared/datasets``).
    """
    p = Path(path)
    if fmt == "beir":
        return read_beir(p)
    if fmt == "hipporag":
        if p.is_dir():
            questions = sorted(q for q in p.glob("*.json") if not q.name.endswith("_corpus.json"))
            corpora = sorted(p.glob("*_corpus.json"))
            if len(questions) != 1 or len(corpora) != 1:
                raise InvalidInputError(f"{p}: expected one NAME.json and one NAME_corpus.json (HippoRAG layout)")
            return read_hipporag(questions[0], corpora[0])
        return read_hipporag(p, p.with_name(p.stem + "_corpus.json"))
    if fmt == "llamaindex":
        return read_llamaindex_rag(p)
    if fmt == "llamaindex-qa":
        return read_llamaindex_qa(p)
    if fmt == "squad":
        return _read_squad(p, max_articles=max_items)
    if fmt == "pages":
        return read_page_questions(p, datasets)
    raise InvalidInputError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")


@dataclass
class RetrievalRun:
    dataset: str
    reports: dict[str, RetrievalReport] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per retriever, all queries
    # per retriever: seconds spent building (or reopening) its index in this run, and whether it was built
    index_seconds: dict[str, float] = field(default_factory=dict)
    index_built: dict[str, bool] = field(default_factory=dict)
    # per retriever: means over the queries carrying each tag (e.g. "paraphrase"), for datasets with tags
    tag_means: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def resolve_retrievers(
    retrievers: Sequence[str | RetrieverSpec],
    settings: Mapping[str, str] | None = None,
    extra: Mapping[str, Callable[[str, int], list[str]]] | None = None,
) -> list[tuple[str, RetrieverFactory | None]]:
    """``(label, factory)`` per retriever, in order; ``None`` for an ``extra`` callable. Checks everything first.

    A string may hold several comma-separated specs; ``settings`` (``--set``) go to ``kvgraph`` and
    ``graph``. Unknown names are reported together ("unknown retriever(s) [...]"), bad options by spec.
    """
    specs: list[RetrieverSpec] = []
    for r in retrievers:
        if isinstance(r, RetrieverSpec):
            specs.append(r)
        elif extra and r in extra:
            specs.append(RetrieverSpec(r))
        else:
            specs += parse_retrievers(r)
    unknown = [s.name for s in specs if s.name not in RETRIEVERS and not (extra and s.name in extra)]
    if unknown:
        raise InvalidInputError(
            f"unknown retriever(s) {unknown}; available: {', '.join([*RETRIEVERS, *(extra or {})])}"
        )
    out: list[tuple[str, RetrieverFactory | None]] = []
    for spec in specs:
        if extra and spec.name in extra and not spec.options:
            out.append((spec.name, None))
        else:
            out.append(resolve(spec, settings))
    labels = [label for label, _ in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InvalidInputError(f"retriever(s) {dup} named more than once")
    return out


def run_retrieval(
    dataset: EvalDataset,
    retrievers: Sequence[str | RetrieverSpec],
    ks: Sequence[int] = (1, 5, 10),
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    extra: dict[str, Callable[[str, int], list[str]]] | None = None,
    settings: Mapping[str, str] | None = None,
) -> RetrievalRun:
    """Score each retriever (specs, see :func:`resolve_retrievers`, or ``extra`` callables) on ``dataset``.

    An ``extra`` callable takes ``(query_text, k)`` and returns ranked passage ids. Reports are
    keyed by the retriever's label (its spec, with ``settings`` merged in where they apply).
    """
    from kvgraph.kb import KnowledgeBase

    resolved = resolve_retrievers(retrievers, settings, extra)
    k_max = max(ks)
    kb_dir = Path(work_dir) if work_dir else Path(".kvgraph-eval") / _slug(dataset.name)
    run = RetrievalRun(dataset.name)
    texts = [q.text for q in dataset.queries]
    qids = [q.id for q in dataset.queries]
    tags = sorted({t for q in dataset.queries for t in q.tags})
    with KnowledgeBase.open(kb_dir, expand_neighbors=False) as kb:
        ctx = EvalContext(dataset, k_max, kb_dir, kb, progress=progress)
        try:
            names = {label.split(":", 1)[0] for label, factory in resolved if factory is not None}
            if names - LEXICAL - PRODUCT:
                ctx.query_vectors(texts)  # once for all retrievers, outside their timings
            for label, factory in resolved:
                if factory is not None:
                    built_before = dict(ctx.index_seconds)
                    t0 = time.perf_counter()
                    rank = factory(ctx)
                    run.index_seconds[label] = time.perf_counter() - t0
                    new = [i for i in ctx.index_seconds if i not in built_before]
                    run.index_built[label] = any(ctx.index_built.get(i, False) for i in new)
                else:
                    fn = (extra or {})[label]

                    def rank(batch: Sequence[str], fn: Callable[[str, int], list[str]] = fn) -> list[list[str]]:
                        return [fn(text, k_max) for text in batch]

                t0 = time.perf_counter()
                ranked = _rank_all(rank, texts, label, progress)
                run.seconds[label] = time.perf_counter() - t0
                report = evaluate_retrieval(dict(zip(qids, ranked)), dataset.gold(), ks=tuple(ks))
                run.reports[label] = report
                for tag in tags:
                    tagged = [q.id for q in dataset.queries if tag in q.tags and q.relevant]
                    if tagged:
                        run.tag_means.setdefault(label, {})[tag] = report.subset(tagged).means
                if progress:
                    index = f" (index {run.index_seconds[label]:.1f} s)" if label in run.index_seconds else ""
                    print(f"  {label}: {len(texts)} queries in {run.seconds[label]:.1f} s{index}", file=sys.stderr)
        finally:
            ctx.close()
    return run


def _rank_all(rank: Ranker, texts: Sequence[str], label: str, progress: bool) -> list[list[str]]:
    """``rank(texts)``, in batches under a progress bar when ``progress`` and stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not progress or not console.is_terminal or len(texts) <= QUERY_BATCH:
        return rank(texts)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out: list[list[str]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"querying {label}", total=len(texts))
        for i in range(0, len(texts), QUERY_BATCH):
            out += rank(texts[i : i + QUERY_BATCH])
            bar.update(task, advance=min(QUERY_BATCH, len(texts) - i))
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "dataset"


def metric_keys(ks: Sequence[int], metrics: Sequence[str]) -> list[str]:
    return [f"{m}@{k}" for m in metrics for k in ks]


def print_table(
    run: RetrievalRun, keys: Sequence[str], title: str, console: Any = None, tag: str | None = None
) -> None:
    """The means of ``keys`` per retriever, with queries/s and index seconds; ``tag``: only the tagged queries."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("retriever", style="bold")
    for key in keys:
        t.add_column(key, justify="right")
    if tag is None:
        t.add_column("queries/s", justify="right")
        t.add_column("index s", justify="right")
    for name, rep in run.reports.items():
        means = rep.means if tag is None else run.tag_means.get(name, {}).get(tag, {})
        cells = [f"{means.get(key, float('nan')):.3f}" for key in keys]
        if tag is None:
            qps = rep.n_queries / run.seconds[name] if run.seconds.get(name) else float("nan")
            index = f"{run.index_seconds[name]:.1f}" if name in run.index_seconds else "-"
            cells += [f"{qps:.0f}", index]
        t.add_row(name, *cells)
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped into a log: no terminal width to fit, so keep every column whole
            console = Console(width=max(console.width, 160))
    console.print(t)


def save_reports(run: RetrievalRun, keys: Sequence[str], out_dir: str | os.PathLike[str], title: str) -> list[Path]:
    """``retrieval.json`` (means, per-tag means and every query's ranked ids), ``retrieval.csv`` (means)
    and ``retrieval.svg`` (a grouped bar chart of ``keys``, :mod:`kvgraph.eval.chart`)."""
    from kvgraph.eval.chart import grouped_bar_svg

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "retrieval.json", out / "retrieval.csv"]
    reports = run.reports
    data = {
        name: {
            **rep.to_dict(),
            "tag_means": run.tag_means.get(name, {}),
            "seconds": round(run.seconds.get(name, 0.0), 3),
            "index_seconds": round(run.index_seconds.get(name, 0.0), 3),
            "index_built": run.index_built.get(name, False),
        }
        for name, rep in reports.items()
    }
    paths[0].write_text(json.dumps({"title": title, "reports": data}, indent=1))
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["retriever", *keys])
        for name, rep in reports.items():
            w.writerow([name, *(f"{rep.means.get(k, float('nan')):.4f}" for k in keys)])
    series = {name: [rep.means.get(k, float("nan")) for k in keys] for name, rep in reports.items()}
    paths.append(grouped_bar_svg(list(keys), series, out / "retrieval.svg", title))
    return paths
