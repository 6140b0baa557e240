"""Run many retrievers over one dataset and report them side by side.

Retrievers are chosen by name from :data:`RETRIEVERS` (see :mod:`kvgraph.eval.retrievers`:
the passage-KB retrievers ``dense``, ``bm25``, ``hybrid``, ``hybrid_alpha`` and the
node-reference retrievers ``base``, ``chunk_refs``, ``metadata_refs`` and their variants), or
passed as ``extra`` callables. For the passage-KB retrievers the dataset's passages are
ingested into a knowledge base (one document per passage, so a passage longer than a chunk
becomes several chunks that map back to it); the node-reference retrievers build their own
indexes beside it. Every query is run through every retriever and the ranked passage ids are
scored with :mod:`kvgraph.eval.metrics`. Everything is kept in ``work_dir``, so a second run
with the same passages embeds nothing.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import EvalDataset, read_beir, read_hipporag, read_llamaindex_qa, read_llamaindex_rag
from kvgraph.eval.datasets import read_squad as _read_squad
from kvgraph.eval.metrics import RetrievalReport, evaluate_retrieval
from kvgraph.eval.retrievers import (
    LEXICAL,
    RETRIEVERS,
    EvalContext,
    Ranker,
    RetrieverFactory,
    passages_as_documents,
    ranked_passages,
)

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
    "run_retrieval",
]

FORMATS = ("beir", "hipporag", "llamaindex", "llamaindex-qa", "squad")


def read_dataset(path: str | os.PathLike[str], fmt: str, max_items: int | None = None) -> EvalDataset:
    """Read a dataset in one of :data:`FORMATS` (a file, or a folder for beir and hipporag)."""
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
    raise InvalidInputError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")


@dataclass
class RetrievalRun:
    dataset: str
    reports: dict[str, RetrievalReport] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per retriever, all queries
    # per retriever: seconds spent building (or reopening) its index in this run, and whether it was built
    index_seconds: dict[str, float] = field(default_factory=dict)
    index_built: dict[str, bool] = field(default_factory=dict)


def run_retrieval(
    dataset: EvalDataset,
    retrievers: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    extra: dict[str, Callable[[str, int], list[str]]] | None = None,
) -> RetrievalRun:
    """Score each named retriever (see :data:`RETRIEVERS`, or ``extra`` callables) on ``dataset``.

    An ``extra`` callable takes ``(query_text, k)`` and returns ranked passage ids.
    """
    from kvgraph.kb import KnowledgeBase

    unknown = [r for r in retrievers if r not in RETRIEVERS and r not in (extra or {})]
    if unknown:
        raise InvalidInputError(
            f"unknown retriever(s) {unknown}; available: {', '.join([*RETRIEVERS, *(extra or {})])}"
        )
    k_max = max(ks)
    kb_dir = Path(work_dir) if work_dir else Path(".kvgraph-eval") / _slug(dataset.name)
    run = RetrievalRun(dataset.name)
    texts = [q.text for q in dataset.queries]
    with KnowledgeBase.open(kb_dir, expand_neighbors=False) as kb:
        ctx = EvalContext(dataset, k_max, kb_dir, kb)
        try:
            if any(r in RETRIEVERS and r not in LEXICAL for r in retrievers):
                ctx.query_vectors(texts)  # once for all retrievers, outside their timings
            for name in retrievers:
                if name in RETRIEVERS:
                    built_before = dict(ctx.index_seconds)
                    t0 = time.perf_counter()
                    rank = RETRIEVERS[name](ctx)
                    run.index_seconds[name] = time.perf_counter() - t0
                    new = [i for i in ctx.index_seconds if i not in built_before]
                    run.index_built[name] = any(ctx.index_built.get(i, False) for i in new)
                else:
                    fn = (extra or {})[name]

                    def rank(batch: Sequence[str], fn: Callable[[str, int], list[str]] = fn) -> list[list[str]]:
                        return [fn(text, k_max) for text in batch]

                t0 = time.perf_counter()
                results = dict(zip((q.id for q in dataset.queries), rank(texts)))
                run.seconds[name] = time.perf_counter() - t0
                run.reports[name] = evaluate_retrieval(results, dataset.gold(), ks=tuple(ks))
                if progress:
                    index = f" (index {run.index_seconds[name]:.1f} s)" if name in run.index_seconds else ""
                    print(f"  {name}: {len(texts)} queries in {run.seconds[name]:.1f} s{index}")
        finally:
            ctx.close()
    return run


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "dataset"


def metric_keys(ks: Sequence[int], metrics: Sequence[str]) -> list[str]:
    return [f"{m}@{k}" for m in metrics for k in ks]


def print_table(run: RetrievalRun, keys: Sequence[str], title: str, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("retriever", style="bold")
    for key in keys:
        t.add_column(key, justify="right")
    t.add_column("queries/s", justify="right")
    t.add_column("index s", justify="right")
    for name, rep in run.reports.items():
        qps = rep.n_queries / run.seconds[name] if run.seconds.get(name) else float("nan")
        index = f"{run.index_seconds[name]:.1f}" if name in run.index_seconds else "-"
        t.add_row(name, *(f"{rep.means.get(key, float('nan')):.3f}" for key in keys), f"{qps:.0f}", index)
    (console or Console()).print(t)


def save_reports(run: RetrievalRun, keys: Sequence[str], out_dir: str | os.PathLike[str], title: str) -> list[Path]:
    """JSON (with per-query rows), CSV (means) and a bar chart PNG when matplotlib is installed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "retrieval.json", out / "retrieval.csv"]
    reports = run.reports
    data = {
        name: {
            **rep.to_dict(),
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
    png = bar_chart(reports, keys, out / "retrieval.png", title)
    if png is not None:
        paths.append(png)
    return paths


def bar_chart(reports: dict[str, RetrievalReport], keys: Sequence[str], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    names = list(reports)
    x = np.arange(len(keys))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(keys) + 2), 4))
    for i, name in enumerate(names):
        vals = [reports[name].means.get(k, 0.0) for k in keys]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, keys)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
