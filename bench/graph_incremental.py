"""Graph-mode quality after many incremental graph updates against a rebuilt graph (issue 17).

HotpotQA's 994 passages (HippoRAG's 100-question subset): the first half ingested and the
document graph built, the rest ingested in ``--batches`` ingests, each updating the graph in place
(``kvgraph.docgraph.incremental``); then the 100 questions in graph mode, the graph rebuilt from
scratch, and the questions again. Prints recall@2 / recall@5 of both and how many questions get
the same top 5.

    .venv/bin/python bench/graph_incremental.py [--datasets ../shared/datasets] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kvgraph.eval.datasets import EvalDataset, read_hotpotqa_subset
from kvgraph.eval.retrievers import passages_as_documents
from kvgraph.kb import KnowledgeBase


def graph_recall(kb: KnowledgeBase, ds: EvalDataset) -> tuple[float, float, dict[str, list[str]]]:
    """Mean recall@2 and @5 of graph mode over the dataset's questions, and each question's top 5 documents."""
    r2 = r5 = 0.0
    tops: dict[str, list[str]] = {}
    for q in ds.queries:
        ids = [str(r.node.ref_doc_id) for r in kb.search(q.text, 5, mode="graph")]
        tops[q.id] = ids
        gold = set(q.relevant)
        r2 += len(gold & set(ids[:2])) / len(gold)
        r5 += len(gold & set(ids[:5])) / len(gold)
    return r2 / len(ds.queries), r5 / len(ds.queries), tops


def run(datasets: str | None, batches: int, work: Path) -> dict[str, Any]:
    ds = read_hotpotqa_subset(datasets)
    docs = passages_as_documents(ds)
    half = len(docs) // 2
    out: dict[str, Any] = {"passages": len(docs), "questions": len(ds.queries), "batches": batches}
    with KnowledgeBase.open(work / "kb", expand_neighbors=False) as kb:
        kb.add_documents(docs[:half])
        kb.graph.build()
        rest = docs[half:]
        step = max(1, -(-len(rest) // batches))
        t0 = time.perf_counter()
        for i in range(0, len(rest), step):
            kb.add_documents(rest[i : i + step])  # each updates the graph in place
        out["ingest_s"] = round(time.perf_counter() - t0, 2)
        out["updates"] = kb.graph.doc_graph().meta.get("updates")
        r2, r5, updated = graph_recall(kb, ds)
        out["incremental"] = {"recall@2": round(r2, 4), "recall@5": round(r5, 4)}
        kb.graph.build()
        r2, r5, rebuilt = graph_recall(kb, ds)
        out["rebuilt"] = {"recall@2": round(r2, 4), "recall@5": round(r5, 4)}
        out["same_top5"] = sum(updated[q] == rebuilt[q] for q in updated)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="datasets folder (default: KVGRAPH_DATASETS, ../shared/datasets)")
    ap.add_argument("--batches", type=int, default=20, help="ingests of the second half (default 20)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvgraph-bench-incremental-"))
    try:
        out = run(args.datasets, args.batches, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{out['passages']} passages, {out['questions']} questions; second half in {out['batches']} ingests "
        f"({out['updates']} graph updates, {out['ingest_s']} s)"
    )
    for name in ("incremental", "rebuilt"):
        print(f"{name:12} recall@2 {out[name]['recall@2']:.3f}  recall@5 {out[name]['recall@5']:.3f}")
    print(f"same top 5: {out['same_top5']}/{out['questions']} questions")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
