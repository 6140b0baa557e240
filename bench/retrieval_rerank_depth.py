#!/usr/bin/env python
"""How the default reranker was chosen: late interaction over the first D hits, weight w, cross-validated.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_rerank_depth.py           # llama2, hotpotqa, squad
    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_rerank_depth.py --datasets llama2

The first stage is the shipped hybrid search, made as ``bench/retrieval_tuning.py`` makes it (chunks
as ``kvgraph ingest`` makes them, the store's BM25 code with the default analyzer, confidence fusion
at 0.4 over the top 150 of each side). The second stage is the shipped one
(``kvgraph.retrieve.tokens``, its ``maxsim`` and ``mix``): MaxSim between the question's and each
candidate's token vectors from the ONNX int8 model, ``(1 - w) * min_max(first stage) + w *
min_max(MaxSim)`` over the first ``D`` hits, the hits past ``D`` in their order
(``RerankingRetriever``). Token vectors are computed once per
chunk and question, so the grid (D in 2, 3, 5, 10, 20 x w in 0.2-0.7, and no reranking) costs the
scoring only; about a minute for the three sets once the lab's embedding cache is warm.

Reported per dataset, on its objective (Llama 2: hit@5 + MRR@10; HotpotQA: R@2 + R@5; SQuAD:
hit@1 + MRR@10): every configuration in-sample, 5-fold CV within the set (10 fold splits), the
configuration chosen on the *other two* sets (leave one dataset out) and its held-out difference
against no reranking, and the shipped default (D 5, w 0.5) against no reranking on each headline
metric, with paired bootstrap intervals. Output: markdown on stdout and
``bench/out/retrieval_rerank_depth.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kvgraph.embed.factory import embedder_from_spec
from kvgraph.eval import crossval
from kvgraph.retrieve.fusion import Ranked, confidence_fusion, query_coverage
from kvgraph.retrieve.tokens import FETCH_K, maxsim, mix
from kvgraph.store.analyzers import DEFAULT_ANALYZER
from retrieval_lab import ROOT, Lexical, evaluate, save_report
from retrieval_tuning import OBJECTIVE, POOL, dense_side

DEPTHS = (2, 3, 5, 10, 20)
WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.7)
SHIPPED = f"tokens|{FETCH_K}|0.5"
NONE = "none"
METRICS = ("hit_rate@1", "hit_rate@5", "mrr@10", "recall@2", "recall@5")
HEADLINE = {"llama2": ("hit_rate@1", "mrr@10", "hit_rate@5"), "hotpotqa": ("recall@2", "recall@5", "hit_rate@1")}
HEADLINE["squad"] = ("hit_rate@1", "mrr@10")


def grid() -> list[str]:
    return [NONE] + [f"tokens|{d}|{w}" for d in DEPTHS for w in WEIGHTS]


def first_stage(name: str) -> tuple[Any, Any, list[np.ndarray], list[np.ndarray]]:
    """The dataset, its chunks, and each question's fused ranking (chunk indices) with its fused scores."""
    ds, corpus, dense = dense_side(name)
    lex = Lexical(corpus.texts, DEFAULT_ANALYZER)
    ids_out, scores_out = [], []
    for d, q in zip(dense, ds.queries):
        ids, scores = lex.search(q.text, POOL)
        cov = query_coverage(q.text, corpus.texts[int(ids[0])], DEFAULT_ANALYZER) if len(ids) else 0.0
        fused = confidence_fusion(d, Ranked([str(i) for i in ids], scores.tolist()), cov, 0.4)
        ids_out.append(np.asarray([int(i) for i, _ in fused], dtype=np.int64))
        scores_out.append(np.asarray([s for _, s in fused], dtype=np.float64))
    return ds, corpus, ids_out, scores_out


def run_dataset(name: str, embedder: Any) -> dict[str, np.ndarray]:
    """Per-question scores: metric -> (configs, questions), configs in grid() order."""
    ds, corpus, ids, scores = first_stage(name)
    top = max(DEPTHS)
    need = sorted({int(i) for r in ids for i in r[:top]})
    chunk_tokens = dict(zip(need, embedder.token_vectors([corpus.embed_texts[i] for i in need])))
    question_tokens = embedder.token_vectors([q.text for q in ds.queries])
    sims = [
        np.array([maxsim(qt, chunk_tokens[int(i)].astype(np.float16)) for i in r[:top]])
        for qt, r in zip(question_tokens, ids)
    ]
    per: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for config in grid():
        rankings = []
        for r, s, m in zip(ids, scores, sims):
            if config == NONE:
                rankings.append(r)
                continue
            _, d, w = config.split("|")
            depth, weight = int(d), float(w)
            mixed = mix(s[:depth], m[:depth], weight)
            rankings.append(np.concatenate([r[:depth][np.argsort(-mixed, kind="stable")], r[depth:]]))
        report = evaluate(corpus, rankings)
        for metric in METRICS:
            per[metric].append(np.asarray(report.column(metric), dtype=np.float64))
    return {m: np.stack(v) for m, v in per.items()}


def objective(scores: dict[str, np.ndarray], name: str) -> np.ndarray:
    """(configs, questions): the mean of the dataset's two headline metrics."""
    return np.mean([scores[m] for m in OBJECTIVE[name]], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="llama2,hotpotqa,squad")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "retrieval_rerank_depth.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = [n for n in args.datasets.split(",") if n]
    configs = grid()
    embedder = embedder_from_spec("onnx-int8")
    scores = {n: run_dataset(n, embedder) for n in names}
    rng = np.random.default_rng(args.seed)
    i_none, i_ship = configs.index(NONE), configs.index(SHIPPED)
    result: dict[str, Any] = {"grid": configs, "shipped": SHIPPED, "datasets": {}}
    lines = [
        "Objective x 100 (mean of the set's two headline metrics); differences against no reranking, "
        "paired per question [95% bootstrap interval] better/worse.",
        "",
        "| dev set | no reranking | shipped (D 5, w 0.5) | best in-sample | 5-fold CV within the set (10 splits) "
        "| chosen on the other sets | that choice held out vs none |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in names:
        obj = objective(scores[n], n)
        means = obj.mean(axis=1)
        best = int(np.argmax(means))
        metrics = {m: scores[n][m] for m in METRICS}
        repeated = crossval.repeated_cross_validation(metrics, configs, 5, range(10), OBJECTIVE[n])
        cv_obj = float(np.mean([repeated[m]["mean"] for m in OBJECTIVE[n]]))
        first_split = crossval.cross_validate(
            metrics, configs, crossval.make_folds(obj.shape[1], 5, args.seed), OBJECTIVE[n]
        )
        fold_choices = [c.config for c in first_split.choices]
        others = [o for o in names if o != n]
        if others:
            gain = np.mean(
                [objective(scores[o], o).mean(axis=1) - objective(scores[o], o)[i_none].mean() for o in others], axis=0
            )
            pick = int(np.argmax(gain))  # first (no reranking) on a tie
        else:
            pick = best
        held = crossval.paired_bootstrap(obj[pick], obj[i_none], rng)
        lines.append(
            f"| {n} | {100 * means[i_none]:.2f} | {100 * means[i_ship]:.2f} "
            f"| {100 * means[best]:.2f} ({configs[best]}) "
            f"| {100 * cv_obj:.2f} (first split's folds: {', '.join(fold_choices)}) "
            f"| {configs[pick]} | {held.format(2)} |"
        )
        result["datasets"][n] = {
            "objective": list(OBJECTIVE[n]),
            "means": {c: float(means[i]) for i, c in enumerate(configs)},
            "metric_means": {m: {c: float(scores[n][m][i].mean()) for i, c in enumerate(configs)} for m in METRICS},
            "best_in_sample": configs[best],
            "cv_held_out_objective": cv_obj,
            "cv_first_split_choices": fold_choices,
            "cv_held_out_means": {m: repeated[m]["mean"] for m in METRICS},
            "chosen_on_other_sets": configs[pick],
            "chosen_on_other_sets_vs_none": held.to_dict(),
            "shipped_vs_none": {
                m: crossval.paired_bootstrap(scores[n][m][i_ship], scores[n][m][i_none], rng).to_dict()
                for m in HEADLINE[n]
            },
        }
    lines += ["", "5-fold CV within each set (10 fold splits), held-out means (x 100):", ""]
    lines += ["| dev set | " + " | ".join(METRICS) + " |", "| --- |" + " --- |" * len(METRICS)]
    for n in names:
        held_out = result["datasets"][n]["cv_held_out_means"]
        lines.append(f"| {n} | " + " | ".join(f"{100 * held_out[m]:.1f}" for m in METRICS) + " |")
    lines += ["", "The shipped default against no reranking (x 100):", ""]
    lines += ["| dev set | metric | none | shipped | difference [95% CI] b/w |", "| --- | --- | --- | --- | --- |"]
    for n in names:
        for m in HEADLINE[n]:
            d = crossval.paired_bootstrap(scores[n][m][i_ship], scores[n][m][i_none], np.random.default_rng(args.seed))
            lines.append(
                f"| {n} | {m} | {100 * scores[n][m][i_none].mean():.1f} | {100 * scores[n][m][i_ship].mean():.1f} "
                f"| {d.format(1)} |"
            )
    lines += [
        "",
        "Every configuration's objective (x 100):",
        "",
        "| configuration (depth, weight) | " + " | ".join(names) + " |",
    ]
    lines.append("| --- |" + " --- |" * len(names))
    for i, c in enumerate(configs):
        lines.append(f"| {c} | " + " | ".join(f"{100 * objective(scores[n], n)[i].mean():.2f}" for n in names) + " |")
    md = "\n".join(lines) + f"\n\n({time.perf_counter() - t0:.0f} s)\n"
    save_report(Path(args.out), result, md)


if __name__ == "__main__":
    main()
