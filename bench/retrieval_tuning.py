#!/usr/bin/env python
"""How the hybrid defaults were chosen: BM25 analyzer x fusion x dense weight, cross-validated.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_tuning.py            # llama2, hotpotqa, squad
    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_tuning.py --datasets llama2 --folds 5

Chunks are made as ``kvgraph ingest`` makes them (the Markdown loader, merged sections, 254-token
chunks with contextual headers) and searched in memory (``bench/retrieval_lab.py``): the store's
BM25 code with each analyzer, exact cosine, and ``kvgraph.retrieve.fusion``'s fusions over the top
150 of each side (the shipped pool; 50 and 100 are in the grid as ``...|50``, ``...|100``). For every
dataset and every configuration of the grid it keeps per-question scores,
then reports:

- in-sample: the best configuration on the dataset's own questions (optimistic);
- 5-fold CV within the dataset (``kvgraph.eval.crossval``): chosen on four folds, scored on the fifth;
- leave-one-dataset-out: chosen on the *other* dev sets (mean objective), scored on this one, with
  a paired bootstrap interval against the shipped default and against equal-weight RRF.

The objective per dataset is its headline pair (Llama 2: hit@5 + MRR@10; HotpotQA: R@2 + R@5;
SQuAD: hit@1 + MRR@10). Output: markdown on stdout and ``bench/out/retrieval_tuning.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kvgraph.eval import crossval
from kvgraph.ingest.context import embedding_text
from kvgraph.ingest.loaders.markdown import MIN_SECTION_CHARS
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.retrieve.fusion import Ranked, confidence_fusion, minmax_fusion, query_coverage, rrf_fusion
from kvgraph.store.analyzers import DEFAULT_ANALYZER
from retrieval_lab import ROOT, Lexical, documents, embedder, evaluate, load, make_corpus, query_vectors, save_report

ANALYZERS = ("plain", "stem", DEFAULT_ANALYZER)
FUSIONS = ("confidence", "minmax", "rrf")
ALPHAS = (0.3, 0.4, 0.5, 0.6)
DEFAULT = f"{DEFAULT_ANALYZER}|confidence|0.4"
RRF_EQUAL = "plain|rrf|0.5"
OBJECTIVE = {
    "llama2": ("hit_rate@5", "mrr@10"),
    "hotpotqa": ("recall@2", "recall@5"),
    "squad": ("hit_rate@1", "mrr@10"),
}
METRICS = ("hit_rate@1", "hit_rate@5", "mrr@10", "recall@2", "recall@5")
POOLS = (150, 50, 100)  # candidates fused from each side; the first is the shipped default (DEFAULT_POOL)
POOL = max(POOLS)


def grid() -> list[str]:
    """Configurations ``analyzer|fusion|dense weight[|pool]``; the pool is given only where it is not the default."""
    out = [f"{a}|{f}|{w}" for a in ANALYZERS for f in FUSIONS for w in ALPHAS]
    out += [f"{DEFAULT_ANALYZER}|{f}|{w}|{p}" for f in FUSIONS for w in ALPHAS for p in POOLS[1:]]
    return out + [f"{a}|dense|1.0" for a in ANALYZERS[:1]] + [f"{a}|sparse|0.0" for a in ANALYZERS]


def dense_side(name: str, pool: int = POOL) -> tuple[Any, Any, list[Ranked]]:
    """The dataset, its chunks as ``kvgraph ingest`` makes them (embedded), and each question's
    ``pool`` best chunks by exact cosine."""
    ds = load(name)
    counter = embedder().inner.token_counter()
    splitter = SentenceSplitter(counter, 254, 32, context_headers=True, min_section_chars=MIN_SECTION_CHARS)
    corpus = make_corpus(ds, documents(ds), splitter, embed_text=embedding_text, name=name)
    sims = query_vectors(ds) @ corpus.vectors.T
    dense = []
    for s in sims:
        order = np.argsort(-s, kind="stable")[:pool]
        dense.append(Ranked([str(i) for i in order], s[order].tolist()))
    return ds, corpus, dense


def run_dataset(name: str) -> dict[str, np.ndarray]:
    """Per-question scores: metric -> (configs, questions) array, configs in grid() order."""
    ds, corpus, dense = dense_side(name)
    sparse: dict[str, list[tuple[Ranked, float]]] = {}
    for a in ANALYZERS:
        lex = Lexical(corpus.texts, a)
        rows = []
        for q in ds.queries:
            ids, scores = lex.search(q.text, POOL)
            cov = query_coverage(q.text, corpus.texts[int(ids[0])], a) if len(ids) else 0.0
            rows.append((Ranked([str(i) for i in ids], scores.tolist()), cov))
        sparse[a] = rows
    per: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for config in grid():
        a, fusion, w, *rest = config.split("|")
        alpha = float(w)
        pool = int(rest[0]) if rest else POOLS[0]
        rankings = []
        for d_all, (s_all, cov) in zip(dense, sparse[a]):
            d = Ranked(d_all.ids[:pool], d_all.scores[:pool])
            s = Ranked(s_all.ids[:pool], s_all.scores[:pool])
            if fusion == "dense":
                ids = list(d.ids)
            elif fusion == "sparse":
                ids = list(s.ids)
            elif fusion == "confidence":
                ids = [i for i, _ in confidence_fusion(d, s, cov, alpha)]
            elif fusion == "minmax":
                ids = [i for i, _ in minmax_fusion(d, s, alpha)]
            else:
                ids = [i for i, _ in rrf_fusion([d, s], [alpha, 1 - alpha])]
            rankings.append(np.asarray([int(i) for i in ids], dtype=np.int64))
        report = evaluate(corpus, rankings)
        for m in METRICS:
            per[m].append(report.column(m))
    return {m: np.stack(v) for m, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="llama2,hotpotqa,squad")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "retrieval_tuning.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = [n for n in args.datasets.split(",") if n]
    configs = grid()
    scores = {n: run_dataset(n) for n in names}
    rng = np.random.default_rng(args.seed)
    lines = [
        "| dataset | objective | default (in-sample) | best in-sample | 5-fold CV | chosen on the other sets "
        "| other-sets choice vs default [95% CI] b/w | vs equal-weight RRF [95% CI] b/w |",
        "| --- |" * 1 + " --- |" * 7,
    ]
    result: dict[str, Any] = {"grid": configs, "datasets": {}}
    for n in names:
        obj = OBJECTIVE[n]
        target = np.sum([scores[n][m] for m in obj], axis=0)  # (configs, questions)
        means = target.mean(axis=1)
        d_idx, r_idx = configs.index(DEFAULT), configs.index(RRF_EQUAL)
        best = int(np.argmax(means))
        folds = crossval.make_folds(target.shape[1], args.folds, args.seed)
        cv = crossval.cross_validate({m: scores[n][m] for m in METRICS}, configs, folds, objective=obj)
        cv_obj = float(np.sum([cv.held_out[m] for m in obj], axis=0).mean())
        others = [o for o in names if o != n]
        if others:  # the configuration with the best mean objective over the other datasets
            other_means = np.mean(
                [np.sum([scores[o][m] for m in OBJECTIVE[o]], axis=0).mean(axis=1) / len(OBJECTIVE[o]) for o in others],
                axis=0,
            )
            pick = int(np.argmax(other_means))
        else:
            pick = best
        vs_default = crossval.paired_bootstrap(target[pick] / len(obj), target[d_idx] / len(obj), rng).to_dict()
        vs_rrf = crossval.paired_bootstrap(target[pick] / len(obj), target[r_idx] / len(obj), rng).to_dict()

        def cell(c: dict[str, Any]) -> str:
            return f"{c['mean_diff']:+.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] {c['better']}/{c['worse']}"

        k = len(obj)
        lines.append(
            f"| {n} | {' + '.join(obj)} (mean) | {means[d_idx] / k:.3f} | {means[best] / k:.3f} ({configs[best]}) "
            f"| {cv_obj / k:.3f} | {means[pick] / k:.3f} ({configs[pick]}) | {cell(vs_default)} | {cell(vs_rrf)} |"
        )
        result["datasets"][n] = {
            "objective": list(obj),
            "means": {c: float(means[i] / k) for i, c in enumerate(configs)},
            "metric_means": {m: {c: float(scores[n][m][i].mean()) for i, c in enumerate(configs)} for m in METRICS},
            "best_in_sample": configs[best],
            "cv": cv.to_dict(),
            "chosen_on_other_sets": configs[pick],
            "vs_default": vs_default,
            "vs_equal_rrf": vs_rrf,
        }
    md = "\n".join(lines)
    detail = [
        "",
        "| configuration (analyzer, fusion, dense weight) | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for i, c in enumerate(configs):
        detail.append(
            f"| {c} | "
            + " | ".join(
                f"{np.sum([scores[n][m][i] for m in OBJECTIVE[n]], axis=0).mean() / len(OBJECTIVE[n]):.3f}"
                for n in names
            )
            + " |"
        )
    md += "\n" + "\n".join(detail) + f"\n\n({time.perf_counter() - t0:.0f} s)\n"
    save_report(Path(args.out), result, md)


if __name__ == "__main__":
    main()
