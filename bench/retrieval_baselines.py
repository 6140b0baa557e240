#!/usr/bin/env python
"""kvgraph against plain retrieval baselines on the dev sets we have, every row in one run per dataset.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_baselines.py                      # llama2, hotpotqa, squad
    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_baselines.py --datasets llama2 --folds 5 --seed 0
    .venv/bin/python bench/retrieval_baselines.py --vs-default    # rows minus the default, from the saved JSON

Datasets (passages as kvgraph ingests them; the plain baselines see the same text):

- ``llama2``: the hand-written dev set ``bench/data/llama2_dev_questions.json`` (gold = pages of the
  shared paper text); kvgraph ingests one Markdown file per page through the normal ingest path.
- ``hotpotqa``: HippoRAG's 100-question subset (994 passages, title + text).
- ``squad``: SQuAD v1.1 dev, the first ``--squad-articles`` articles (question -> its paragraph).

Rows, all scored by ``kvgraph.eval.runner.run_retrieval`` on the same questions and gold:

- plain BM25 (``bm25s`` from PyPI: Lucene BM25, k1 1.5, b 0.75, English stop words, no stemming)
  over 200-word windows (50-word overlap) of every passage; a passage ranks by its best window;
- plain dense: all-MiniLM-L6-v2 (kvgraph's ONNX int8 embedder used as a plain encoder) over the same
  windows, exact cosine in numpy;
- plain RRF of the two window rankings (k = 60, top 100 windows of each);
- kvgraph as a user runs it (:data:`KVGRAPH_ROWS`): ``kvgraph`` (the defaults: hybrid search with
  confidence fusion, the first five hits reordered by token vectors), then one setting changed per
  row (``rerank=none``, the token reranker over the top 20, ``mode=dense``, equal-weight RRF, other
  ``fusion_alpha``, ``rerank=sentences``, ``query_feedback``, ``context_headers=false``,
  ``references=both``) and ``graph`` (``kvgraph graph build`` + ``--mode graph``).

The plain baselines share nothing with kvgraph's store, splitter or BM25. kvgraph's hybrid defaults
were chosen on these three dev sets (``bench/retrieval_tuning.py``) and the graph walk's on
HotpotQA, so no row here is held out for the defaults. Every table also has "kvgraph,
configuration chosen by CV": the kvgraph rows as a grid, one chosen per fold on the other folds
(``kvgraph.eval.crossval``), pooled held-out scores, and paired bootstrap intervals against the
best plain baseline. Output: markdown on stdout and in ``--md``, JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kvgraph.eval import crossval  # noqa: E402
from kvgraph.eval.datasets import (  # noqa: E402
    EvalDataset,
    read_hotpotqa_subset,
    read_page_questions,
    read_squad_dev,
)
from kvgraph.eval.metrics import RetrievalReport  # noqa: E402
from kvgraph.eval.runner import run_retrieval  # noqa: E402

WINDOW = 200  # words
OVERLAP = 50  # words shared by consecutive windows
RRF_K = 60
RRF_DEPTH = 100  # windows taken from each ranking before fusion
KS = (1, 2, 5, 10)
KVGRAPH_ROWS = {
    "kvgraph (default: hybrid, confidence fusion, token rerank of the top 5)": "kvgraph",
    "kvgraph rerank=none (the first stage alone)": "kvgraph:rerank=none",
    "kvgraph token rerank of the top 20": "kvgraph:rerank_fetch_k=20",
    "kvgraph --mode dense": "kvgraph:mode=dense",
    "kvgraph, equal-weight RRF": "kvgraph:fusion=rrf,fusion_alpha=0.5",
    "kvgraph fusion_alpha=0.3": "kvgraph:fusion_alpha=0.3",
    "kvgraph fusion_alpha=0.5": "kvgraph:fusion_alpha=0.5",
    "kvgraph rerank=sentences": "kvgraph:rerank=sentences",
    "kvgraph query_feedback=rocchio": "kvgraph:query_feedback=rocchio",
    "kvgraph query_feedback=rm3": "kvgraph:query_feedback=rm3",
    "kvgraph context_headers=false": "kvgraph:context_headers=false",
    "kvgraph --references both": "kvgraph:references=both",
    "kvgraph graph mode": "graph",
}
PLAIN_ROWS = ("plain BM25 (bm25s)", "plain dense (MiniLM, numpy)", "plain RRF (BM25 + dense)")
CV_ROW = "kvgraph, configuration chosen by CV"
DEV_SET = ROOT / "bench" / "data" / "llama2_dev_questions.json"

# Per dataset: the columns shown (report key -> header) and the CV objective (metrics summed per question).
COLUMNS: dict[str, dict[str, str]] = {
    "llama2": {
        "hit_rate@1": "hit@1",
        "hit_rate@5": "hit@5",
        "mrr@10": "MRR@10",
        "paraphrase:hit_rate@5": "paraphrase hit@5",
    },
    "hotpotqa": {
        "recall@2": "R@2",
        "recall@5": "R@5",
        "hit_rate@1": "hit@1",
        "hit_rate@5": "hit@5",
        "mrr@10": "MRR@10",
    },
    "squad": {"hit_rate@1": "hit@1", "hit_rate@10": "hit@10", "mrr@10": "MRR@10"},
}
OBJECTIVE = {
    "llama2": ("hit_rate@5", "mrr@10"),
    "hotpotqa": ("recall@2", "recall@5"),
    "squad": ("hit_rate@1", "mrr@10"),
}
HEADLINE = {"llama2": "hit_rate@5", "hotpotqa": "recall@5", "squad": "hit_rate@1"}
TUNED_ON = {
    "llama2": "a dev set: the hybrid defaults and contextual headers were chosen on it (bench/retrieval_tuning.py)",
    "hotpotqa": "a dev set: the hybrid defaults (bench/retrieval_tuning.py) and graph-walk defaults (bench/kvg_cv.py)",
    "squad": "a dev set: the hybrid defaults were chosen on it with the others (bench/retrieval_tuning.py)",
}


# ---------------------------------------------------------------------------------------------- plain baselines


def windows(dataset: EvalDataset) -> tuple[list[str], list[str]]:
    """200-word windows (50 words shared with the next) of every passage: (window texts, their passage ids)."""
    texts, owners = [], []
    step = WINDOW - OVERLAP
    for p in dataset.passages:
        words = p.full_text.split()
        starts = range(0, max(len(words) - OVERLAP, 1), step)
        for s in starts:
            texts.append(" ".join(words[s : s + WINDOW]))
            owners.append(p.id)
    return texts, owners


def by_passage(window_ids: Sequence[int], owners: Sequence[str], k: int) -> list[str]:
    out: list[str] = []
    for w in window_ids:
        pid = owners[int(w)]
        if pid not in out:
            out.append(pid)
            if len(out) == k:
                break
    return out


class PlainBaselines:
    """BM25, dense and RRF over the same windows, computed once for all questions."""

    def __init__(self, dataset: EvalDataset, cache: Path) -> None:
        import bm25s

        from kvgraph.embed.factory import embedder_from_spec

        self.texts, self.owners = windows(dataset)
        queries = list(dict.fromkeys(q.text for q in dataset.queries))
        n = len(self.texts)
        depth = min(n, RRF_DEPTH)
        t0 = time.perf_counter()
        bm25 = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        bm25.index(bm25s.tokenize(self.texts, stopwords="en", show_progress=False), show_progress=False)
        q_tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
        self.bm25_index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.bm25: dict[str, list[int]] = {}
        for text, toks in zip(queries, q_tokens):
            known = [t for t in toks if t in bm25.vocab_dict]
            if not known:
                self.bm25[text] = []
                continue
            ids, scores = bm25.retrieve([known], k=depth, show_progress=False)
            self.bm25[text] = [int(i) for i, s in zip(ids[0], scores[0]) if s > 0]
        self.bm25_query_s = time.perf_counter() - t0

        embedder = embedder_from_spec("onnx-int8")
        t0 = time.perf_counter()
        key = hashlib.sha256(("\0".join(self.texts) + embedder.model_name).encode()).hexdigest()[:16]
        path = cache / f"windows-{key}.npy"
        if path.exists():
            doc_vecs = np.load(path)
        else:
            doc_vecs = np.asarray(embedder.embed(self.texts), dtype=np.float32)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, doc_vecs)
        doc_vecs /= np.maximum(np.linalg.norm(doc_vecs, axis=1, keepdims=True), 1e-12)
        self.dense_index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        q_vecs = np.asarray(embedder.embed(queries), dtype=np.float32)
        q_vecs /= np.maximum(np.linalg.norm(q_vecs, axis=1, keepdims=True), 1e-12)
        sims = q_vecs @ doc_vecs.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
        self.dense = {text: top[i].tolist() for i, text in enumerate(queries)}
        self.dense_query_s = time.perf_counter() - t0
        self.rrf: dict[str, list[int]] = {}
        for text in queries:
            fused: dict[int, float] = {}
            for ranking in (self.bm25[text], self.dense[text]):
                for rank, w in enumerate(ranking, 1):
                    fused[w] = fused.get(w, 0.0) + 1.0 / (RRF_K + rank)
            self.rrf[text] = sorted(fused, key=lambda w: -fused[w])
        self.n_windows = n

    def rankers(self) -> dict[str, Callable[[str, int], list[str]]]:
        def make(table: dict[str, list[int]]) -> Callable[[str, int], list[str]]:
            return lambda text, k: by_passage(table[text], self.owners, k)

        return dict(zip(PLAIN_ROWS, (make(self.bm25), make(self.dense), make(self.rrf))))


# ---------------------------------------------------------------------------------------------- one dataset


def load(name: str, squad_articles: int) -> EvalDataset:
    if name == "llama2":
        return read_page_questions(DEV_SET)
    if name == "hotpotqa":
        return read_hotpotqa_subset()
    if name == "squad":
        return read_squad_dev(max_articles=squad_articles)
    raise SystemExit(f"unknown dataset {name!r}: use llama2, hotpotqa, squad")


def column(report: RetrievalReport, dataset: EvalDataset, key: str) -> np.ndarray:
    """Per-question values of ``key`` (``tag:metric`` for a tagged subset, NaN elsewhere)."""
    if ":" in key:
        tag, metric = key.split(":", 1)
        tagged = {q.id for q in dataset.queries if tag in q.tags}
        values = report.column(metric)
        return np.where([row.qid in tagged for row in report.rows], values, np.nan)
    return report.column(key)


def mean(values: np.ndarray) -> float:
    return float(np.nanmean(values))


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    dataset = load(name, args.squad_articles)
    work = Path(args.work_dir) / name
    print(f"\n# {name}: {len(dataset.queries)} questions over {len(dataset.passages)} passages", flush=True)
    t0 = time.perf_counter()
    plain = PlainBaselines(dataset, work / "plain")
    plain_s = time.perf_counter() - t0
    extra = plain.rankers()
    specs = list(KVGRAPH_ROWS.values())
    run = run_retrieval(dataset, [*extra, *specs], ks=KS, work_dir=work / "kb", extra=extra, progress=True)
    label = {**{r: r for r in PLAIN_ROWS}, **{spec: row for row, spec in KVGRAPH_ROWS.items()}}
    reports = {label[k]: v for k, v in run.reports.items()}
    cols = COLUMNS[name]
    qids = [row.qid for row in reports[PLAIN_ROWS[0]].rows]
    assert all([row.qid for row in r.rows] == qids for r in reports.values())
    per_q = {row: {key: column(rep, dataset, key) for key in cols} for row, rep in reports.items()}

    # Which kvgraph configuration a user should run, chosen by cross-validation on this dataset.
    grid = list(KVGRAPH_ROWS)
    metrics = {
        key: np.stack([reports[row].column(key) for row in grid]) for key in {*OBJECTIVE[name], *cols} if ":" not in key
    }
    folds = crossval.make_folds(len(qids), args.folds, args.seed)
    cv = crossval.cross_validate(metrics, grid, folds, objective=OBJECTIVE[name])
    per_q[CV_ROW] = {key: cv.held_out[key] if ":" not in key else np.nan for key in cols}
    for key in cols:  # tagged subsets of the held-out scores
        if ":" in key:
            tag, metric = key.split(":", 1)
            tagged = np.array([tag in q.tags for q in dataset.queries])
            per_q[CV_ROW][key] = np.where(tagged, cv.held_out[metric], np.nan)
    repeated = crossval.repeated_cross_validation(
        metrics, grid, args.folds, range(args.seed, args.seed + args.repeats), objective=OBJECTIVE[name]
    )

    # Paired comparisons on the headline metric against the best plain baseline (chosen here, on these
    # questions: a choice that can only favour the baseline).
    head = HEADLINE[name]
    best_plain = max(PLAIN_ROWS, key=lambda r: mean(per_q[r][head]))
    rng = np.random.default_rng(args.seed)
    paired = {
        row: {
            ref: crossval.paired_bootstrap(per_q[row][head], per_q[ref][head], rng, args.resamples).to_dict()
            for ref in PLAIN_ROWS
        }
        for row in [*grid, CV_ROW]
    }

    rows = [*PLAIN_ROWS, *grid, CV_ROW]
    lines = [
        f"## {name}: {len(dataset.queries)} questions, {len(dataset.passages)} passages ({TUNED_ON[name]})",
        "",
        "| retriever | " + " | ".join(cols.values()) + f" | {cols.get(head, head)} vs {best_plain} [95% CI] b/w |",
        "| --- |" + " --- |" * (len(cols) + 1),
    ]
    for row in rows:
        scale = 100.0
        cells = [f"{scale * mean(per_q[row][k]):.1f}" if k.split(":")[-1].startswith(("recall", "hit")) else
                 f"{mean(per_q[row][k]):.3f}" for k in cols]  # fmt: skip
        cmp = ""
        if row in paired:
            c = paired[row][best_plain]
            cmp = f"{c['mean_diff']:+.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] {c['better']}/{c['worse']}"
        name_cell = f"**{row}**" if row == CV_ROW else row
        lines.append(f"| {name_cell} | " + " | ".join(cells) + f" | {cmp} |")
    choices = "; ".join(f"fold {c.fold}: {c.config}" for c in cv.choices)
    insample = cv.in_sample_means()
    lines += [
        "",
        f"CV ({args.folds} folds, seed {args.seed}, objective {' + '.join(OBJECTIVE[name])}): {choices}. "
        f"In-sample best: {cv.in_sample_config} ({', '.join(f'{k} {insample[k]:.3f}' for k in OBJECTIVE[name])}); "
        f"held out: {', '.join(f'{k} {cv.held_out_means()[k]:.3f}' for k in OBJECTIVE[name])}; "
        f"over {args.repeats} fold splits: "
        + ", ".join(
            f"{k} {repeated[k]['mean']:.3f} [{repeated[k]['min']:.3f}, {repeated[k]['max']:.3f}]"
            for k in OBJECTIVE[name]
        )
        + ".",
        f"Timings: plain baselines {plain_s:.1f} s ({plain.n_windows} windows); kvgraph index "
        + ", ".join(f"{label[k]} {run.index_seconds.get(k, 0.0):.1f} s" for k in specs)
        + "; ms/query "
        + ", ".join(f"{label[k]} {1000 * run.seconds[k] / len(qids):.1f}" for k in specs)
        + ".",
    ]
    md = "\n".join(lines)
    print(md, flush=True)
    return {
        "dataset": dataset.name,
        "meta": {k: v for k, v in dataset.meta.items() if k != "path"},
        "questions": len(qids),
        "passages": len(dataset.passages),
        "windows": plain.n_windows,
        "tuned_on": TUNED_ON[name],
        "means": {row: {k: mean(per_q[row][k]) for k in cols} for row in rows},
        "all_means": {label[k]: v.means for k, v in run.reports.items()},
        "cv": {**cv.to_dict(), "objective": list(OBJECTIVE[name]), "repeated": repeated},
        "headline": head,
        "best_plain": best_plain,
        "paired": paired,
        "index_seconds": {label[k]: v for k, v in run.index_seconds.items()},
        "query_seconds": {label[k]: v for k, v in run.seconds.items()},
        "per_question": {
            "qids": qids,
            **{
                row: {k: [None if np.isnan(x) else float(x) for x in v] for k, v in d.items()}
                for row, d in per_q.items()
            },
        },
        "markdown": md,
    }


def vs_default(path: Path, seed: int, resamples: int) -> str:
    """Each kvgraph row minus the default, paired per question, from a saved run (no retrieval is run)."""
    saved = json.loads(path.read_text())["datasets"]
    default = next(iter(KVGRAPH_ROWS))
    lines = [f"Paired differences against `{default}` (x100; from {path.name}; seed {seed})", ""]
    for name, result in saved.items():
        per_q = result["per_question"]
        keys = [k for k in COLUMNS[name] if ":" not in k]
        lines += [f"## {name}", "", "| row | " + " | ".join(COLUMNS[name][k] for k in keys) + " |"]
        lines.append("| --- |" + " --- |" * len(keys))
        rng = np.random.default_rng(seed)
        for row in [*KVGRAPH_ROWS, CV_ROW][1:]:
            cells = []
            for k in keys:
                a, b = np.asarray(per_q[row][k], dtype=float), np.asarray(per_q[default][k], dtype=float)
                c = crossval.paired_bootstrap(a, b, rng, resamples).to_dict()
                cells.append(
                    f"{c['mean_diff']:+.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] {c['better']}/{c['worse']}"
                )
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="llama2,hotpotqa,squad")
    ap.add_argument("--squad-articles", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="fold split and bootstrap seed")
    ap.add_argument("--repeats", type=int, default=10, help="fold splits averaged in the CV summary line")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--work-dir", default=str(ROOT / "bench" / ".cache" / "baselines"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "retrieval_baselines.json"))
    ap.add_argument("--md", default=str(ROOT / "bench" / "out" / "retrieval_baselines.md"))
    ap.add_argument(
        "--vs-default", action="store_true", help="print every kvgraph row minus the default from --out, then exit"
    )
    args = ap.parse_args()
    if args.vs_default:
        print(vs_default(Path(args.out), args.seed, args.resamples))
        return
    t0 = time.perf_counter()
    results = {name: run_dataset(name, args) for name in args.datasets.split(",") if name}
    total = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["bench/retrieval_baselines.py", *sys.argv[1:]])
    out.write_text(json.dumps({"command": command, "seconds": round(total, 1), "datasets": results}, indent=1))
    Path(args.md).write_text(
        f"`{command}` ({total:.0f} s)\n\n" + "\n\n".join(r["markdown"] for r in results.values()) + "\n"
    )
    print(f"\nwrote {out} and {args.md} ({total:.0f} s)")


if __name__ == "__main__":
    main()
