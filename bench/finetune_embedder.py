#!/usr/bin/env python
"""Fine-tuned embedder vs the stock all-MiniLM-L6-v2, measured with kvgraph's evaluation harness.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune_embedder.py squad      # labelled questions, split by article
    HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune_embedder.py hotpotqa   # offline pairs only (no question)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune_embedder.py llama2     # offline pairs only, two leak guards
    HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune_embedder.py speed --model DIR   # embedding speed vs stock

Every task trains in a child process (so its peak RSS is the training's own), then scores the
stock model and each fine-tuned model with ``kvgraph.eval.runner.run_retrieval``'s ``dense``
retriever over one knowledge base per model (the passages ingested with that model's ONNX int8
export: exactly what ``kvgraph search`` runs). Differences are paired per query with a bootstrap
95% interval. Results: a Markdown report on stdout and JSON in ``bench/out/finetune_<task>.json``.
Work folders (KBs, models) are kept in ``bench/.cache/finetune/`` and reused; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _tables import table  # noqa: E402
from kvgraph.eval.datasets import EvalDataset, read_hotpotqa_subset, read_squad_dev  # noqa: E402
from kvgraph.eval.metrics import RetrievalReport  # noqa: E402
from kvgraph.eval.runner import run_retrieval  # noqa: E402
from kvgraph.finetune.offline import (  # noqa: E402
    Excluded,
    heading_pairs,
    inverse_cloze_pairs,
    labelled_pairs,
    link_pairs,
)
from kvgraph.finetune.pairs import TrainingPair, load_pairs, pair_stats, save_pairs  # noqa: E402
from kvgraph.finetune.split import leaks, split_pairs  # noqa: E402
from kvgraph.kb import KnowledgeBase  # noqa: E402
from kvgraph.schema import Node  # noqa: E402

WORK = ROOT / "bench" / ".cache" / "finetune"
OUT = ROOT / "bench" / "out"
STOCK = "onnx-int8"


# ---------------------------------------------------------------------- harness


def kb_for(work: Path, tag: str, spec: str) -> Path:
    """A knowledge-base folder whose settings name ``spec`` (created now, so run_retrieval opens it with them)."""
    path = work / f"kb-{tag}"
    with KnowledgeBase.open(path, embedder=spec, expand_neighbors=False):
        pass
    return path


def evaluate(dataset: EvalDataset, work: Path, tag: str, spec: str, ks: Sequence[int]) -> RetrievalReport:
    t0 = time.perf_counter()
    run = run_retrieval(dataset, ["dense"], ks, work_dir=kb_for(work, tag, spec))
    print(f"  scored {tag} on {dataset.name}: {len(dataset.queries)} queries in {time.perf_counter() - t0:.0f} s")
    return run.reports["dense"]


def chunks_of(kb_dir: Path) -> list[Node]:
    """The stored chunks of a knowledge base (what search returns), the input of the offline pair sources."""
    with KnowledgeBase.open(kb_dir, read_only=True) as kb:
        return [n for n in kb.store.get(kb.store.ids()) if n is not None]


def paired(a: RetrievalReport, b: RetrievalReport, key: str, rounds: int = 2000) -> dict[str, float]:
    """b - a per query: mean, bootstrap 95% interval, questions better / worse."""
    qa = {r.qid: r.scores[key] for r in a.rows}
    diff = np.array([r.scores[key] - qa[r.qid] for r in b.rows if r.qid in qa])
    rng = np.random.default_rng(0)
    means = rng.choice(diff, (rounds, len(diff))).mean(axis=1)
    return {
        "diff": float(diff.mean()),
        "lo": float(np.percentile(means, 2.5)),
        "hi": float(np.percentile(means, 97.5)),
        "better": int((diff > 0).sum()),
        "worse": int((diff < 0).sum()),
    }


def train(pairs: list[TrainingPair], out: Path, config: dict[str, Any], fresh: bool) -> dict[str, Any]:
    """Fine-tune in a child process (its peak RSS is the training's); reuse a finished model of the same data."""
    card = out / "kvgraph_finetune.json"
    data = out.with_name(out.name + ".pairs.jsonl")
    loads = out.with_name(out.name + ".load.json")  # the machine's load while it trained
    if card.is_file() and not fresh and data.is_file() and load_pairs(data) == pairs:
        print(f"  reusing {out.name} (same pairs; --fresh retrains)")
        return {**json.loads(card.read_text()), **(json.loads(loads.read_text()) if loads.is_file() else {})}
    save_pairs(pairs, data)
    print(f"  training {out.name} on {len(pairs)} pairs {pair_stats(pairs)['by_source']} ...", flush=True)
    load0 = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "_train", str(data), str(out), json.dumps(config)]
    subprocess.run(cmd, check=True)
    load = {"load_average_at_start": load0, "load_average_at_end": os.getloadavg()[0]}
    loads.write_text(json.dumps(load))
    return {**json.loads(card.read_text()), **load}


def _train_child(data: str, out: str, config: str) -> None:
    from kvgraph.finetune.embedder import EmbedderTrainConfig, TrainProgress, finetune_embedder

    def show(p: TrainProgress) -> None:
        if p.validation_mrr is not None or p.step == p.total_steps:
            mrr = f"{p.validation_mrr:.4f}" if p.validation_mrr is not None else "-"
            line = f"    step {p.step}/{p.total_steps} loss {p.loss:.4f} val MRR@10 {mrr} ({p.seconds:.0f} s)"
            print(line, flush=True)

    cfg = EmbedderTrainConfig(**json.loads(config))
    report = finetune_embedder(load_pairs(data), out, config=cfg, progress=show, overwrite=True)
    print(
        f"    done: {report.steps} steps in {report.seconds:.0f} s, best step {report.best_step}, "
        f"val MRR@10 {report.validation_before.get('mrr@10')} -> {report.validation_after.get('mrr@10')}, "
        f"peak RSS {report.peak_rss_mb:.0f} MB",
        flush=True,
    )


def model_row(name: str, rep: RetrievalReport, keys: Sequence[str]) -> list[str]:
    return [name, *(f"{100 * rep.means[k]:.1f}" for k in keys)]


def diff_cell(d: dict[str, float]) -> str:
    return f"{100 * d['diff']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] {d['better']}/{d['worse']}"


def report_tables(
    title: str, reports: dict[str, RetrievalReport], keys: Sequence[str], diff_keys: Sequence[str]
) -> str:
    lines = [f"### {title}", "", table(["model", *keys], [model_row(n, r, keys) for n, r in reports.items()]), ""]
    base = reports["stock"]
    rows = [[n, *(diff_cell(paired(base, r, k)) for k in diff_keys)] for n, r in reports.items() if n != "stock"]
    if rows:
        lines += [table(["vs stock (paired)", *diff_keys], rows), ""]
    return "\n".join(lines)


def training_table(trainings: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, t in trainings.items():
        d = t["data"]["train"]
        rows.append(
            [
                name,
                d["pairs"],
                t["steps"],
                t["best_step"],
                f"{t['validation_before'].get('mrr@10', float('nan')):.3f} -> "
                f"{t['validation_after'].get('mrr@10', float('nan')):.3f}",
                f"{t['seconds']:.0f}",
                f"{t['peak_rss_mb']:.0f}",
                f"{t.get('load_average_at_start', float('nan')):.1f}-{t.get('load_average_at_end', float('nan')):.1f}",
            ]
        )
    head = ["model", "pairs", "steps", "best", "val MRR@10", "train s", "peak RSS MB", "load avg"]
    return table(head, rows)


def save(task: str, data: dict[str, Any], text: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"finetune_{task}.json").write_text(json.dumps(data, indent=1, default=str))
    (OUT / f"finetune_{task}.md").write_text(text)
    print(text)


def reports_json(reports: dict[str, RetrievalReport]) -> dict[str, Any]:
    return {name: rep.means for name, rep in reports.items()}


# ---------------------------------------------------------------------- tasks


def task_squad(args: argparse.Namespace) -> None:
    """SQuAD v1.1 dev: half the articles' questions train, the others' test (every paragraph is searched)."""
    work = WORK / "squad"
    ds = read_squad_dev(args.datasets)
    titles = {p.id: p.title for p in ds.passages}
    passages = {p.id: Node(p.id, p.full_text, {"title": p.title}, ref_doc_id=titles[p.id]) for p in ds.passages}
    pairs = labelled_pairs([(q.text, q.relevant) for q in ds.queries], passages)
    split = split_pairs(pairs, test_ratio=0.5, by="document", seed=args.seed)
    test_titles = {p.doc_id for p in split.test}
    assert not leaks(split.train, split.test)["documents"] and not leaks(split.train, split.test)["questions"]
    test_q = [q for q in ds.queries if titles[q.relevant[0]] in test_titles]
    test = EvalDataset("squad-dev-test-articles", ds.passages, test_q)
    train_pairs = split.train[: args.max_pairs] if args.max_pairs else split.train
    print(
        f"SQuAD dev: {len(ds.passages)} paragraphs; train {len(train_pairs)} questions of "
        f"{len({p.doc_id for p in split.train})} articles; test {len(test_q)} questions of {len(test_titles)} articles"
    )
    config = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    t = train(train_pairs, work / "model-squad", config, args.fresh)
    ks = (1, 5, 10)
    reports = {
        "stock": evaluate(test, work, "stock", STOCK, ks),
        "fine-tuned (SQuAD train articles)": evaluate(test, work, "ft", t["spec"], ks),
    }
    keys = ["hit_rate@1", "hit_rate@10", "mrr@10"]
    text = "\n".join(
        [
            report_tables(
                f"SQuAD v1.1 dev, {len(test_q)} test questions of {len(test_titles)} held-out articles, "
                f"{len(ds.passages)} paragraphs searched",
                reports,
                keys,
                keys,
            ),
            training_table({"fine-tuned (SQuAD train articles)": t}),
        ]
    )
    save("squad", {"reports": reports_json(reports), "training": t, "split": split.stats()}, text)


def offline_sources(chunks: list[Node], exclude: Excluded | None, seed: int) -> dict[str, list[TrainingPair]]:
    ict = inverse_cloze_pairs(chunks, per_chunk=2, seed=seed, exclude=exclude)
    heads = heading_pairs(chunks, exclude=exclude)
    links = link_pairs(chunks, seed=seed, exclude=exclude)
    return {
        "ict": ict,
        "heading": heads,
        "link": links,
        "ict+heading": ict + heads,
        "ict+link": ict + links,
        "ict+heading+link": ict + heads + links,
    }


def task_hotpotqa(args: argparse.Namespace) -> None:
    """HotpotQA (HippoRAG subset): offline pairs from the 994 passages only; the 100 questions only test."""
    work = WORK / "hotpotqa"
    ds = read_hotpotqa_subset(args.datasets)
    ks = (2, 5, 10)
    reports = {"stock": evaluate(ds, work, "stock", STOCK, ks)}
    chunks = chunks_of(work / "kb-stock")
    questions = Excluded(q.text for q in ds.queries)
    trainings: dict[str, dict[str, Any]] = {}
    config = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    for source, pairs in offline_sources(chunks, questions, args.seed).items():
        if args.sources and source not in args.sources.split(","):
            continue
        name = f"fine-tuned: {source}"
        trainings[name] = train(pairs, work / f"model-{source.replace('+', '-')}", config, args.fresh)
        reports[name] = evaluate(ds, work, source.replace("+", "-"), trainings[name]["spec"], ks)
    keys = ["recall@2", "recall@5", "recall@10", "hit_rate@5", "mrr@10"]
    text = "\n".join(
        [
            report_tables(
                f"HotpotQA (HippoRAG subset): {len(ds.queries)} questions, {len(ds.passages)} passages; "
                "training saw no question",
                reports,
                keys,
                ["recall@2", "recall@5"],
            ),
            training_table(trainings),
        ]
    )
    save("hotpotqa", {"reports": reports_json(reports), "training": trainings}, text)


def llama2_sets(datasets: str | None) -> tuple[dict[str, EvalDataset], list[str]]:
    from kvgraph.eval.page_questions import KINDS, default_token_counter, llama2_question_set

    counter = default_token_counter()
    sets: dict[str, EvalDataset] = {}
    sentences: list[str] = []
    for kind in KINDS:
        ds, sources = llama2_question_set(counter, kind, root=datasets)
        sets[kind] = ds
        sentences += [s.text for s in sources]
    dev = ROOT / "bench" / "data" / "llama2_dev_questions.json"
    if dev.is_file():
        from kvgraph.eval.runner import read_dataset

        hand = read_dataset(dev, "pages", datasets=datasets)  # questions with gold pages (bench/data/README.md)
        print(f"  + hand-written questions from {dev} ({len(hand.queries)})")
        sets["hand-written"] = hand
    return sets, sentences


def page_of(passage_id: str) -> str:
    return passage_id.rsplit(":", 1)[0]


def task_llama2(args: argparse.Namespace) -> None:
    """Llama 2 paper: offline pairs from its chunks; page-question sets (and hand-written ones, if present) test.

    Two guards against learning the test by heart: (a) every evaluated source sentence is excluded
    from the inverse-cloze queries (the rest of the corpus is used: domain adaptation on the whole
    paper), (b) stricter, split by page: training sees only the chunks of half the pages, and only
    questions whose gold passages lie on the other half are scored.
    """
    work = WORK / "llama2"
    sets, sentences = llama2_sets(args.datasets)
    ks = (1, 5, 10)
    keys = ["hit_rate@1", "hit_rate@5", "recall@5", "mrr@10"]
    reports: dict[str, dict[str, RetrievalReport]] = {kind: {} for kind in sets}
    for kind, ds in sets.items():
        reports[kind]["stock"] = evaluate(ds, work, "stock" if kind != "hand-written" else "stock-hand", STOCK, ks)
    chunks = chunks_of(work / "kb-stock")
    exclude = Excluded(sentences)
    trainings: dict[str, dict[str, Any]] = {}
    config = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    # (a) whole paper, evaluated sentences excluded
    for source, pairs in offline_sources(chunks, exclude, args.seed).items():
        if args.sources and source not in args.sources.split(","):
            continue
        name = f"fine-tuned: {source}"
        tag = source.replace("+", "-")
        trainings[name] = train(pairs, work / f"model-{tag}", config, args.fresh)
        for kind, ds in sets.items():
            kb_tag = tag if kind != "hand-written" else f"{tag}-hand"
            reports[kind][name] = evaluate(ds, work, kb_tag, trainings[name]["spec"], ks)
    # (b) split by page
    pages = sorted({page_of(n.ref_doc_id or n.id) for n in chunks})
    random.Random(args.seed).shuffle(pages)
    train_pages = set(pages[: len(pages) // 2])
    half = [n for n in chunks if page_of(n.ref_doc_id or n.id) in train_pages]
    pairs = offline_sources(half, exclude, args.seed)[args.page_split_source]
    name = f"fine-tuned on half the pages: {args.page_split_source}"
    tag = "pages-" + args.page_split_source.replace("+", "-")
    trainings[name] = train(pairs, work / f"model-{tag}", config, args.fresh)
    held: dict[str, dict[str, RetrievalReport]] = {}
    for kind, ds in sets.items():
        if kind == "hand-written":
            continue
        qs = [q for q in ds.queries if not any(page_of(r) in train_pages for r in q.relevant)]
        sub = EvalDataset(f"{ds.name}-heldout-pages", ds.passages, qs)
        held[kind] = {
            "stock": evaluate(sub, work, "stock", STOCK, ks),
            name: evaluate(sub, work, tag, trainings[name]["spec"], ks),
        }
    parts = []
    for kind, reps in reports.items():
        n = next(iter(reps.values())).n_queries
        parts.append(
            report_tables(
                f"Llama 2 paper, `{kind}` questions ({n}), whole paper trained, evaluated sentences excluded",
                reps,
                keys,
                ["hit_rate@5", "mrr@10"],
            )
        )
    for kind, reps in held.items():
        n = reps["stock"].n_queries
        parts.append(
            report_tables(
                f"Llama 2 paper, `{kind}` questions on held-out pages ({n}), trained on the other pages",
                reps,
                keys,
                ["hit_rate@5", "mrr@10"],
            )
        )
    parts.append(training_table(trainings))
    text = "\n".join(parts)
    data = {
        "reports": {k: reports_json(v) for k, v in reports.items()},
        "held_out_pages": {k: reports_json(v) for k, v in held.items()},
        "training": trainings,
        "excluded_sentences": len(exclude),
        "train_pages": len(train_pages),
        "pages": len(pages),
    }
    save("llama2", data, text)


def task_speed(args: argparse.Namespace) -> None:
    """Embedding throughput of the fine-tuned ONNX int8 model vs the stock one, interleaved rounds."""
    from kvgraph.embed.onnx import OnnxEmbedder
    from kvgraph.eval.page_questions import default_token_counter, llama2_question_set

    ds, _ = llama2_question_set(default_token_counter(), "sentence", root=args.datasets)
    chunks = [p.text for p in ds.passages][:96]
    questions = [q.text for q in read_squad_dev(args.datasets, max_articles=8).queries][:1000]
    models = {"stock": OnnxEmbedder(), "fine-tuned": OnnxEmbedder(args.model)}
    for m in models.values():
        m.embed(chunks[:4] + questions[:4])  # load, warm up
    times: dict[str, dict[str, list[float]]] = {n: {"chunks": [], "questions": []} for n in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            for what, texts in (("chunks", chunks), ("questions", questions)):
                t0 = time.perf_counter()
                m.embed(texts)
                times[name][what].append(len(texts) / (time.perf_counter() - t0))
    rows = [[name, f"{np.median(t['chunks']):.1f}", f"{np.median(t['questions']):.0f}"] for name, t in times.items()]
    text = "\n".join(
        [
            f"### Embedding speed, ONNX int8, median of {args.rounds} interleaved rounds "
            f"(load average {os.getloadavg()[0]:.1f})",
            "",
            table(["model", f"passages/s (n={len(chunks)})", f"questions/s (n={len(questions)})"], rows),
            "",
        ]
    )
    save("speed", {"throughput": times}, text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_train":
        _train_child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=["squad", "hotpotqa", "llama2", "speed"])
    ap.add_argument("--datasets", default=None, help="shared datasets folder (default $KVGRAPH_DATASETS)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pairs", type=int, default=None, help="squad: cap the training questions")
    ap.add_argument(
        "--sources", default=None, help="hotpotqa/llama2: a subset of ict,heading,link,ict+heading,ict+link,..."
    )
    ap.add_argument("--page-split-source", default="ict+heading", help="llama2: the source of the page-split run")
    ap.add_argument("--model", default=None, help="speed: the fine-tuned model directory")
    ap.add_argument("--rounds", type=int, default=5, help="speed: rounds")
    ap.add_argument("--fresh", action="store_true", help="retrain and rebuild the knowledge bases")
    args = ap.parse_args()
    if args.fresh and (WORK / args.task).exists():
        shutil.rmtree(WORK / args.task)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    t0 = time.perf_counter()
    {"squad": task_squad, "hotpotqa": task_hotpotqa, "llama2": task_llama2, "speed": task_speed}[args.task](args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
