#!/usr/bin/env python
"""BM25's k1 and b under the default hybrid search, chosen leaving one dev set out (issue 13).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_bm25_params.py   # ~2 minutes with bench/.cache/lab warm

The setting of ``bench/retrieval_tuning.py`` (chunks as ``kvgraph ingest`` makes them, searched in
memory; the default analyzer, confidence fusion at dense weight 0.4, pools of 150) with the BM25
index's ``k1`` and ``b`` over a grid. Per dev set the objective of retrieval_tuning.py (the mean of
its two headline metrics); then, for each set, the grid point with the best mean objective on the
*other two* sets, scored on it, against the shipped k1 = 1.5, b = 0.75. Output: a table on stdout
and ``bench/out/retrieval_bm25_params.json``.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kvgraph.retrieve.fusion import Ranked, confidence_fusion, query_coverage
from kvgraph.store.analyzers import DEFAULT_ANALYZER
from retrieval_lab import ROOT, Lexical, evaluate
from retrieval_tuning import OBJECTIVE, dense_side

K1 = (0.5, 0.7, 0.9, 1.2, 1.5, 2.0)
B = (0.4, 0.6, 0.75, 0.9, 1.0)
SHIPPED = (1.5, 0.75)
POOL = 150


def objectives(name: str) -> dict[tuple[float, float], float]:
    """The dataset's objective (x 100) for every (k1, b) of the grid."""
    ds, corpus, dense = dense_side(name, POOL)
    lex = Lexical(corpus.texts, DEFAULT_ANALYZER)
    out = {}
    for k1, b in itertools.product(K1, B):
        lex.idx.k1, lex.idx.b = k1, b
        rankings = []
        for d, q in zip(dense, ds.queries):
            ids, scores = lex.search(q.text, POOL)
            coverage = query_coverage(q.text, corpus.texts[int(ids[0])], DEFAULT_ANALYZER) if len(ids) else 0.0
            fused = confidence_fusion(d, Ranked([str(i) for i in ids], scores.tolist()), coverage, 0.4)
            rankings.append(np.asarray([int(i) for i, _ in fused], dtype=np.int64))
        report = evaluate(corpus, rankings)
        out[(k1, b)] = 100 * float(np.mean([np.mean(report.column(m)) for m in OBJECTIVE[name]]))
    return out


def main() -> None:
    per = {name: objectives(name) for name in OBJECTIVE}
    names = list(per)
    print("| k1, b | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for point in itertools.product(K1, B):
        mark = " (shipped)" if point == SHIPPED else ""
        print(f"| {point[0]}, {point[1]}{mark} | " + " | ".join(f"{per[n][point]:.2f}" for n in names) + " |")
    print("\n| held-out set | chosen on the other two | its objective | shipped | difference |")
    print("| --- | --- | --- | --- | --- |")
    held: dict[str, object] = {}
    for name in names:
        others = [n for n in names if n != name]
        chosen = max(per[name], key=lambda p: (np.mean([per[o][p] for o in others]), p == SHIPPED))
        diff = per[name][chosen] - per[name][SHIPPED]
        held[name] = {"chosen": chosen, "objective": per[name][chosen], "shipped": per[name][SHIPPED]}
        scores = f"{per[name][chosen]:.2f} | {per[name][SHIPPED]:.2f} | {diff:+.2f}"
        print(f"| {name} | k1 {chosen[0]}, b {chosen[1]} | {scores} |")
    out = ROOT / "bench" / "out" / "retrieval_bm25_params.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = {n: {f"{k},{b}": v for (k, b), v in per[n].items()} for n in names}
    out.write_text(json.dumps({"objectives": grid, "leave_one_out": held}, indent=1))


if __name__ == "__main__":
    main()
