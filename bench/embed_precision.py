#!/usr/bin/env python
"""What the int8 embedder costs in retrieval and buys in speed, against fp32, on the dev sets.

    HF_HUB_OFFLINE=1 nice .venv/bin/python bench/embed_precision.py                 # llama2, hotpotqa, squad
    HF_HUB_OFFLINE=1 nice .venv/bin/python bench/embed_precision.py --datasets llama2 --rounds 3

Both embedders are kvgraph's own (``kvgraph.embed.factory``): ``onnx-int8`` (the default:
int8 MatMul and Attention weights, one text per run) and ``onnx-fp32`` (the same graph,
written by ``embed/onnx_build.py`` from the same weights, full precision). Per dev set
(the datasets of ``bench/retrieval_baselines.py``, same knowledge bases in
``bench/.cache/baselines/NAME/kb``; the fp32 ones are variants beside them):

- retrieval through the product, ``kvgraph`` and ``kvgraph:mode=dense`` with each embedder,
  scored by ``kvgraph.eval.runner.run_retrieval``; paired bootstrap of fp32 minus int8 on the
  dataset's two headline metrics (mean, 95% interval, questions better/worse);
- the ingest time of the fp32 knowledge base when it is built here (the int8 one is cached).

Speed, in one process, same texts, embedders alternating for ``--rounds`` rounds (median):
Llama 2 passages cut into 200-word windows (truncated to the model's 256 tokens, as chunks
are) and short questions (the dev sets' own), texts per second with the default threads.
Output: markdown on stdout and in ``--md``, JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kvgraph.eval import crossval
from kvgraph.eval.runner import run_retrieval
from retrieval_baselines import COLUMNS, HEADLINE, OBJECTIVE, ROOT, column, load, mean, windows

PRECISIONS = ("onnx-int8", "onnx-fp32")
ROWS = {  # label -> spec
    "hybrid (default), int8": "kvgraph",
    "hybrid (default), fp32": "kvgraph:embedder=onnx-fp32",
    "dense, int8": "kvgraph:mode=dense",
    "dense, fp32": "kvgraph:mode=dense,embedder=onnx-fp32",
}
PAIRS = (("hybrid (default), fp32", "hybrid (default), int8"), ("dense, fp32", "dense, int8"))


def retrieval(name: str, args: argparse.Namespace) -> dict[str, Any]:
    dataset = load(name, args.squad_articles)
    print(f"\n# {name}: {len(dataset.queries)} questions over {len(dataset.passages)} passages", flush=True)
    work = Path(args.work_dir) / name / "kb"
    run = run_retrieval(dataset, list(ROWS.values()), ks=(1, 2, 5, 10), work_dir=work, progress=True)
    label = {spec: row for row, spec in ROWS.items()}
    reports = {label[k]: v for k, v in run.reports.items()}
    cols = COLUMNS[name]
    per_q = {row: {key: column(rep, dataset, key) for key in cols} for row, rep in reports.items()}
    rng = np.random.default_rng(args.seed)
    paired = {
        f"{a} - {b}": {
            key: crossval.paired_bootstrap(
                reports[a].column(key), reports[b].column(key), rng, args.resamples
            ).to_dict()
            for key in OBJECTIVE[name]
        }
        for a, b in PAIRS
    }
    lines = [
        f"## {name}: {len(dataset.queries)} questions, {len(dataset.passages)} passages",
        "",
        "| retriever | " + " | ".join(cols.values()) + " | ms/query |",
        "| --- |" + " --- |" * (len(cols) + 1),
    ]
    for row, spec in ROWS.items():
        cells = [
            f"{100 * mean(per_q[row][k]):.1f}" if k.split(":")[-1].startswith(("recall", "hit")) else
            f"{mean(per_q[row][k]):.3f}" for k in cols
        ]  # fmt: skip
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {1000 * run.seconds[spec] / len(dataset.queries):.1f} |")
    lines.append("")
    for pair, by_key in paired.items():
        parts = [
            f"{k} {c['mean_diff']:+.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] {c['better']}/{c['worse']}"
            for k, c in by_key.items()
        ]
        lines.append(f"- {pair}: " + "; ".join(parts))
    built = {label[k]: round(v, 1) for k, v in run.index_seconds.items() if run.index_built.get(k)}
    if built:
        lines.append(f"- built in this run (s): {built}")
    md = "\n".join(lines)
    print(md, flush=True)
    return {
        "means": {row: {k: mean(per_q[row][k]) for k in cols} for row in ROWS},
        "headline": HEADLINE[name],
        "paired": paired,
        "index_seconds": {label[k]: v for k, v in run.index_seconds.items()},
        "index_built": {label[k]: v for k, v in run.index_built.items()},
        "query_seconds": {label[k]: v for k, v in run.seconds.items()},
        "markdown": md,
    }


def speed(args: argparse.Namespace) -> dict[str, Any]:
    from kvgraph.embed.factory import embedder_from_spec

    llama = load("llama2", args.squad_articles)
    chunks = windows(llama)[0][: args.chunks]
    questions = [q.text for q in load("squad", args.squad_articles).queries][: args.questions]
    embedders = {p: embedder_from_spec(p) for p in PRECISIONS}
    for e in embedders.values():  # load and warm up outside the timings
        e.embed(chunks[:4] + questions[:4])
    rates: dict[str, dict[str, list[float]]] = {p: {"chunks": [], "questions": []} for p in PRECISIONS}
    for r in range(args.rounds):
        order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
        for p in order:
            for kind, texts in (("chunks", chunks), ("questions", questions)):
                t0 = time.perf_counter()
                embedders[p].embed(texts)
                rates[p][kind].append(len(texts) / (time.perf_counter() - t0))
    medians = {p: {k: statistics.median(v) for k, v in d.items()} for p, d in rates.items()}
    vec = {p: np.asarray(embedders[p].embed(questions[:200]), dtype=np.float32) for p in PRECISIONS}
    cos = np.sum(vec["onnx-int8"] * vec["onnx-fp32"], axis=1) / (
        np.linalg.norm(vec["onnx-int8"], axis=1) * np.linalg.norm(vec["onnx-fp32"], axis=1)
    )
    lines = [
        f"## speed: {len(chunks)} Llama 2 windows, {len(questions)} SQuAD questions, median of {args.rounds} rounds",
        "",
        "| embedder | chunks/s | questions/s |",
        "| --- | --- | --- |",
        *[f"| {p} | {m['chunks']:.1f} | {m['questions']:.1f} |" for p, m in medians.items()],
        "",
        f"- int8 / fp32: chunks {medians['onnx-int8']['chunks'] / medians['onnx-fp32']['chunks']:.2f}x, "
        f"questions {medians['onnx-int8']['questions'] / medians['onnx-fp32']['questions']:.2f}x; "
        f"cosine int8 vs fp32 over 200 questions: mean {float(cos.mean()):.4f}, min {float(cos.min()):.4f}",
    ]
    md = "\n".join(lines)
    print(md, flush=True)
    return {
        "rates": rates,
        "medians": medians,
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "markdown": md,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="llama2,hotpotqa,squad")
    ap.add_argument("--squad-articles", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=96)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--no-speed", action="store_true", help="retrieval only")
    ap.add_argument("--work-dir", default=str(ROOT / "bench" / ".cache" / "baselines"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "embed_precision.json"))
    ap.add_argument("--md", default=str(ROOT / "bench" / "out" / "embed_precision.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    results: dict[str, Any] = {name: retrieval(name, args) for name in args.datasets.split(",") if name}
    if not args.no_speed:
        results["speed"] = speed(args)
    total = time.perf_counter() - t0
    command = " ".join(["bench/embed_precision.py", *sys.argv[1:]])
    Path(args.out).write_text(
        json.dumps({"command": command, "seconds": round(total, 1), "results": results}, indent=1)
    )
    Path(args.md).write_text(
        f"`{command}` ({total:.0f} s)\n\n" + "\n\n".join(r["markdown"] for r in results.values()) + "\n"
    )
    print(f"\nwrote {args.out} and {args.md} ({total:.0f} s)")


if __name__ == "__main__":
    main()
