"""The store demo behind ``kvgraph demo``: real data, real embeddings, real search.

SQuAD dev paragraphs are embedded with all-MiniLM-L6-v2 and stored; SQuAD questions
are then answered with the passage each retrieval mode finds, and hit rates for the
questions of the loaded articles are printed. (The ingestion/answering pipeline of
the main job replaces this once it lands.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Node


def load_squad(root: Path, articles: int) -> tuple[list[Node], list[tuple[str, str, str]]]:
    """Paragraph nodes and (question, gold paragraph id, first answer) triples."""
    path = root / "squad" / "dev-v1.1.from-explorer.json"
    if not path.exists():
        raise InvalidInputError(f"{path}: SQuAD dev file not found; pass --datasets or set KVGRAPH_DATASETS")
    data = json.loads(path.read_text(encoding="utf-8"))["data"][:articles]
    nodes, questions = [], []
    for art in data:
        for p_i, para in enumerate(art["paragraphs"]):
            pid = f"{art['title']}#{p_i}"
            nodes.append(
                Node(
                    id=pid,
                    text=para["context"],
                    metadata={"title": art["title"], "paragraph": p_i},
                    ref_doc_id=art["title"],
                )
            )
            for qa in para["qas"]:
                questions.append((qa["question"].strip(), pid, qa["answers"][0]["text"]))
    return nodes, questions


def run_demo(root: Path, kb_dir: Path, articles: int, n_show: int) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from kvgraph.embed import SentenceTransformerEmbedder
    from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

    console = Console()
    nodes, questions = load_squad(root, articles)
    console.print(f"[bold]SQuAD dev[/]: {len(nodes)} paragraphs from {articles} articles, {len(questions)} questions")
    embedder = SentenceTransformerEmbedder()
    with EmbeddedVectorStore.open(kb_dir, dim=384, metric="cosine") as store:
        have = {n.id for n in store.get([n.id for n in nodes]) if n is not None}
        todo = [n for n in nodes if n.id not in have]
        if todo:
            t0 = time.perf_counter()
            with Progress(console=console) as progress:
                task = progress.add_task("embedding + storing paragraphs", total=len(todo))
                for s in range(0, len(todo), 64):
                    batch = todo[s : s + 64]
                    vecs = embedder.embed([n.text for n in batch])
                    for n, v in zip(batch, vecs):
                        n.embedding = v
                    store.add(batch)
                    progress.advance(task, len(batch))
            dt = time.perf_counter() - t0
            console.print(f"stored {len(todo)} paragraphs in {dt:.1f} s ({len(todo) / dt:.1f} paragraphs/s)")
        else:
            console.print(f"store {kb_dir} already holds all {len(nodes)} paragraphs (nothing to embed)")

        qvecs = embedder.embed([q for q, _, _ in questions])
        hits = {"dense": 0, "bm25": 0, "hybrid": 0}
        shown = Table(title="Questions and the passage each mode retrieves first", show_lines=True)
        for col in ("question (answer)", "dense", "bm25", "hybrid"):
            shown.add_column(col, overflow="fold")
        rng = np.random.default_rng(0)
        show_idx = set(rng.choice(len(questions), min(n_show, len(questions)), replace=False).tolist())
        for i, ((q, gold, answer), qv) in enumerate(zip(questions, qvecs)):
            row = []
            for mode, key in (("dense", "dense"), ("sparse", "bm25"), ("hybrid", "hybrid")):
                res = store.query(VectorStoreQuery(query_embedding=qv, query_str=q, mode=mode, similarity_top_k=5))
                hits[key] += gold in res.ids
                if i in show_idx:
                    top = res.nodes[0] if res.nodes else None
                    mark = "[green]✓[/]" if top is not None and top.id == gold else "[red]✗[/]"
                    row.append(f"{mark} {top.id}: {top.text[:140]}…" if top else "—")
            if i in show_idx:
                shown.add_row(f"{q}\n[dim]({answer})[/]", *row)
        console.print(shown)

        title = nodes[0].metadata["title"]
        res = store.query(
            VectorStoreQuery(
                query_embedding=qvecs[0], similarity_top_k=3, filters={"title": {"$ne": title}, "paragraph": {"$lt": 5}}
            )
        )
        console.print(f"filtered search (title != {title!r} and paragraph < 5): {res.ids} via {res.plan}")
        summary = Table(title=f"hit rate@5 over {len(questions)} SQuAD questions ({len(nodes)} paragraphs)")
        summary.add_column("mode")
        summary.add_column("hit rate@5", justify="right")
        for key, h in hits.items():
            summary.add_row(key, f"{h / len(questions):.3f}")
        console.print(summary)
        console.print(f"store: {store.stats()['count']} nodes in {kb_dir} (kvgraph store stats {kb_dir})")
