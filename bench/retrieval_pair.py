#!/usr/bin/env python
"""Two retrievers of one ``kvgraph eval retrieval --out DIR`` run, compared question by question.

    kvgraph eval retrieval --dataset ../shared/datasets/squad/dev-v1.1.from-explorer.json --format squad \\
        --retrievers hybrid_alpha,kvgraph -k 1,5,10 --metrics hit_rate,mrr --work-dir bench/.cache/squad-full --out OUT
    .venv/bin/python bench/retrieval_pair.py OUT/retrieval.json kvgraph hybrid_alpha --squad-split 10

Prints A minus B (x100) with a paired bootstrap 95% interval and the questions better/worse, for
each metric; ``--squad-split N`` also splits a SQuAD run into the first N articles (the
questions ``bench/retrieval_baselines.py`` tunes on) and the rest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kvgraph.eval.crossval import paired_bootstrap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="retrieval.json written by kvgraph eval retrieval --out")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--metrics", default="hit_rate@1,mrr@10")
    ap.add_argument("--squad-split", type=int, default=0, help="also split by the first N SQuAD articles")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reports = json.loads(args.run.read_text())["reports"]
    rows_a = {r["qid"]: r for r in reports[args.a]["rows"]}
    rows_b = {r["qid"]: r for r in reports[args.b]["rows"]}
    qids = [q for q in rows_a if q in rows_b]
    groups = {"all": qids}
    if args.squad_split:
        from kvgraph.eval.datasets import read_squad_dev

        first = {q.id for q in read_squad_dev(max_articles=args.squad_split).queries}
        groups[f"first {args.squad_split} articles"] = [q for q in qids if q in first]
        groups["other articles"] = [q for q in qids if q not in first]
    print(f"| questions | metric | {args.a} | {args.b} | difference x100 [95% CI] better/worse |")
    print("| --- | --- | --- | --- | --- |")
    for name, group in groups.items():
        for metric in args.metrics.split(","):
            a = np.array([rows_a[q][metric] for q in group], dtype=float)
            b = np.array([rows_b[q][metric] for q in group], dtype=float)
            c = paired_bootstrap(a, b, args.seed).to_dict()
            diff = f"{c['mean_diff']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] {c['better']}/{c['worse']}"
            print(f"| {name} ({len(group)}) | {metric} | {a.mean():.3f} | {b.mean():.3f} | {diff} |")


if __name__ == "__main__":
    main()
