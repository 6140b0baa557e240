"""Graph-mode recall and walk time against the walk's work bound, on knowledge bases with distractors (issue 17).

The bench's scale knowledge bases (``bench/graph.py --kb 1000,10000,100000`` builds them) hold
HotpotQA's 994 passages among SQuAD sentences and, at 100k chunks, generated documents. Here
HippoRAG's 100 HotpotQA questions are asked of each in graph mode with several bounds on the
walk (``max_nodes`` / ``max_edges``), all from the same base hits, and scored against their gold
passages (recall@2, recall@5), beside the walk's time per question (``rank``, p50). The default
bound is the smallest that keeps the recall of the larger ones at every size.

    .venv/bin/python bench/graph_bounds.py [--kb 1000,10000,100000] [--kb-dir DIR] [--json bench/out/graph-bounds.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.eval.datasets import read_hotpotqa_subset
from kvgraph.kb import KnowledgeBase

BOUNDS: list[tuple[str, dict[str, int | None]]] = [
    ("10,000 / 100,000", {"max_nodes": 10_000, "max_edges": 100_000}),
    ("7,000 / 70,000", {"max_nodes": 7_000, "max_edges": 70_000}),
    ("5,000 / 50,000 (default)", {"max_nodes": 5_000, "max_edges": 50_000}),
    ("3,000 / 30,000", {"max_nodes": 3_000, "max_edges": 30_000}),
    ("unbounded", {"max_nodes": None, "max_edges": None}),
]


def measure(path: Path) -> list[dict[str, Any]]:
    """Recall@2/@5 and the walk's p50 per bound, the base search's recall first."""
    queries = read_hotpotqa_subset().queries
    rows = []
    with KnowledgeBase.open(path, read_only=True, expand_neighbors=False) as kb:
        default = kb.graph.retriever()
        hits = {q.id: default.base.retrieve(q.text, default.fetch) for q in queries}
        for label, bound in [("base hits (hybrid, min-max 0.5)", None), *BOUNDS]:
            retriever = None if bound is None else kb.graph.retriever(**bound)
            r2, r5, times = [], [], []
            for q in queries:
                if retriever is None:
                    nodes = [h.node for h in hits[q.id]][:5]
                else:
                    t0 = time.perf_counter()
                    nodes = [r.node for r in retriever.rank(q.text, hits[q.id], limit=5)]
                    times.append(time.perf_counter() - t0)
                # The scale knowledge bases name a HotpotQA passage's document "h:<passage id>".
                ids = [str(n.ref_doc_id or "").removeprefix("h:") for n in nodes]
                gold = set(q.relevant)
                r2.append(len(gold & set(ids[:2])) / len(gold))
                r5.append(len(gold & set(ids[:5])) / len(gold))
            row = {"bound": label, "recall@2": float(np.mean(r2)), "recall@5": float(np.mean(r5))}
            row["walk_p50_ms"] = 1000 * float(np.median(times)) if times else None
            rows.append(row)
            walk = f"  walk p50 {row['walk_p50_ms']:.2f} ms" if times else ""
            print(f"  {label}: R@2 {row['recall@2']:.3f}  R@5 {row['recall@5']:.3f}{walk}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kb", default="1000,10000,100000", help="sizes of the bench/graph.py knowledge bases")
    ap.add_argument("--kb-dir", type=Path, default=Path(tempfile.gettempdir()) / "kvgraph-bench-graph-kb")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {}
    for n in args.kb.split(","):
        path = args.kb_dir / f"kb-{n}"
        if not (path / "doc-graph").is_dir():
            raise SystemExit(f"{path}: no knowledge base with a document graph; run bench/graph.py --kb {n} first")
        print(f"{path.name}:", flush=True)
        out[n] = measure(path)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
