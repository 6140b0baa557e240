"""Llama 2 paper: base vs chunk references vs metadata references (extractive, offline).

Builds the LLM-free question sets of kvgraph.eval.page_questions (one per kind) from the shared
page-separated paper text, runs every retriever through kvgraph.eval.runner.run_retrieval, and
writes a Markdown report with bias diagnostics:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llama2_refs.py [--fresh] [--kinds sentence,keywords,masked]

Outputs: bench/out/llama2_refs.md and .json; the indexes are kept in bench/.cache/llama2-refs
(--fresh deletes them first, so that the index times are build times).

The CLI equivalent for one kind:

    kvgraph eval page-questions --kind sentence --out bench/.cache/llama2-sentence
    kvgraph eval retrieval --dataset bench/.cache/llama2-sentence --format beir \\
        --retrievers base,chunk_refs,metadata_refs,bm25,hybrid -k 1,3,5,10 --metrics hit_rate,mrr
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _tables import table  # noqa: E402
from kvgraph.eval.page_questions import KINDS, SourceSentence, llama2_question_set  # noqa: E402
from kvgraph.eval.runner import run_retrieval  # noqa: E402

RETRIEVERS = [
    "base",
    "chunk_refs",
    "metadata_refs",
    "base_bm25",
    "base_hybrid",
    "chunk_refs_hybrid",
    "metadata_refs_hybrid",
    "chunk_refs_with_parents",
    "metadata_refs_with_parents",
    "dense",
    "bm25",
    "hybrid",
]
KS = (1, 3, 5, 10)
WINDOW = 254  # all-MiniLM-L6-v2 reads 256 tokens, [CLS] and [SEP] included
STUDY = {"base": (0.778, 0.563), "chunk_refs": (0.897, 0.691), "metadata_refs": (0.892, 0.718)}


def metadata_sentences(work: Path) -> dict[str, set[str]]:
    """Passage id -> the whitespace-normalised sentences of its extractive summary and key sentences."""
    from kvgraph.eval.page_questions import normalize_ws
    from kvgraph.store import EmbeddedVectorStore
    from kvgraph.text import split_sentences

    out: dict[str, set[str]] = {}
    with EmbeddedVectorStore.open(work / "refs" / "metadata_refs", read_only=True) as store:
        ids = store.ids(filters={"role": {"$in": ["summary", "question"]}})
        for node in store.get(ids):
            if node is None:
                continue
            found = out.setdefault(str(node.ref_doc_id), set())
            found.update(normalize_ws(node.text[a:b]) for a, b in split_sentences(node.text))
            found.add(normalize_ws(node.text))
    return out


def beyond_window(dataset: Any, sources: list[SourceSentence], counter: Any) -> list[bool]:
    """Per query: whether its source sentence starts after the first WINDOW tokens of its gold passage."""
    from kvgraph.eval.sources import llama2_pages

    texts = {p.id: p.text for p in dataset.passages}
    pages = {p.id: p for p in llama2_pages()}
    out = []
    for q, src in zip(dataset.queries, sources):
        passage = texts[q.relevant[0]]
        page = pages[src.page_id].text
        offset = page.index(passage) if passage in page else 0
        out.append(counter.count([passage[: max(src.start - offset, 0)]])[0] > WINDOW)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--retrievers", default=",".join(RETRIEVERS))
    ap.add_argument("--per-parent", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(BENCH_DIR / ".cache" / "llama2-refs"))
    ap.add_argument("--out", default=str(BENCH_DIR / "out" / "llama2_refs"))
    ap.add_argument("--fresh", action="store_true", help="delete the indexes first (index times = build times)")
    args = ap.parse_args()

    from kvgraph.embed.factory import embedder_from_spec

    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    counter = embedder_from_spec("onnx-int8").token_counter()  # type: ignore[attr-defined]
    names = [r for r in args.retrievers.split(",") if r]
    report: dict[str, Any] = {"retrievers": names, "ks": KS, "kinds": {}}
    lines = ["# Llama 2: base vs chunk references vs metadata references", ""]
    for kind in [k for k in args.kinds.split(",") if k]:
        dataset, sources = llama2_question_set(counter, kind, args.per_parent, args.seed)
        t0 = time.perf_counter()
        run = run_retrieval(dataset, names, KS, work_dir=work, progress=True)
        wall = time.perf_counter() - t0
        meta_sents = metadata_sentences(work) if (work / "refs" / "metadata_refs").exists() else {}
        in_meta = [src.text in meta_sents.get(q.relevant[0], set()) for q, src in zip(dataset.queries, sources)]
        far = beyond_window(dataset, sources, counter)
        rows = []
        kind_report: dict[str, Any] = {"meta": dataset.meta, "wall_s": round(wall, 1), "retrievers": {}}
        for name, rep in run.reports.items():
            per_row = [row.scores["hit_rate@10"] for row in rep.rows]  # rows are in query order
            near_hits = [h for h, f in zip(per_row, far) if not f]
            far_hits = [h for h, f in zip(per_row, far) if f]
            meta_hits = [h for h, m in zip(per_row, in_meta) if m]
            rest_hits = [h for h, m in zip(per_row, in_meta) if not m]

            def mean(xs: list[Any]) -> float:
                return sum(xs) / len(xs) if xs else float("nan")

            m = rep.means
            rows.append(
                [name, *(f"{m[f'hit_rate@{k}']:.3f}" for k in KS), f"{m['mrr@10']:.3f}",
                 f"{mean(near_hits):.3f}", f"{mean(far_hits):.3f}", f"{mean(meta_hits):.3f}", f"{mean(rest_hits):.3f}",
                 f"{run.index_seconds.get(name, 0.0):.1f}" + ("" if run.index_built.get(name) else " (reused)"),
                 f"{len(dataset.queries) / max(run.seconds[name], 1e-9):.0f}"]
            )  # fmt: skip
            kind_report["retrievers"][name] = {
                "means": {k: round(v, 4) for k, v in m.items()},
                "hit@10_source_in_first_window": round(mean(near_hits), 4),
                "hit@10_source_beyond_window": round(mean(far_hits), 4),
                "hit@10_source_is_metadata_sentence": round(mean(meta_hits), 4),
                "hit@10_source_not_metadata_sentence": round(mean(rest_hits), 4),
                "index_seconds": round(run.index_seconds.get(name, 0.0), 2),
                "index_built": run.index_built.get(name, False),
                "query_seconds": round(run.seconds[name], 2),
            }
        kind_report["queries_beyond_window"] = sum(far)
        kind_report["queries_source_is_metadata_sentence"] = sum(in_meta)
        report["kinds"][kind] = kind_report
        headers = ["retriever", *(f"hit@{k}" for k in KS), "MRR@10", "hit@10 src<254 tok", "hit@10 src>254 tok",
                   "hit@10 src=meta", "hit@10 src≠meta", "index s", "queries/s"]  # fmt: skip
        lines += [
            f"## {kind}: {len(dataset.queries)} queries over {len(dataset.passages)} passages",
            "",
            f"Source sentence beyond the first {WINDOW} tokens of its parent: {sum(far)} queries; "
            f"source sentence is one of the parent's extractive metadata sentences: {sum(in_meta)}.",
            "",
            table(headers, rows),
            "",
        ]
        print("\n".join(lines[-6:]))
    lines += ["Study (OpenAI ada-002, 194 LLM questions, top-10 base hits): "
              + ", ".join(f"{k} hit {h} / MRR {r}" for k, (h, r) in STUDY.items()), ""]  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
