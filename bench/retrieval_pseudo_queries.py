#!/usr/bin/env python
"""Can a knowledge base choose its own fusion weight from pseudo-questions made from its chunks?

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval_pseudo_queries.py     # llama2, hotpotqa, squad

For each dev set, chunks are made as ``kvgraph ingest`` makes them (``bench/retrieval_lab.py``) and
``--n`` chunks are drawn (seed 0). Each gives one pseudo-question of each kind:

- ``masked``: one of its sentences (6-40 words, not a table row or heading) without its 3 rarest words;
- ``keywords``: 5 content words of that sentence, in order;
- ``ict`` (inverse cloze): the sentence, searched for in a corpus where its chunk has the sentence
  cut out (BM25 over the cut text, the chunk re-embedded without it), so the exact words are gone.

The dense weight of min-max and confidence fusion that maximises MRR@10 of finding the source
chunk's document is what a per-knowledge-base tuner would pick; it is printed beside the weight the
real dev questions prefer (same grid, same fusion, their own objective). Output:
``bench/out/retrieval_pseudo_queries.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kvgraph.ingest.context import embedding_text
from kvgraph.ingest.loaders.markdown import MIN_SECTION_CHARS
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.retrieve.fusion import Ranked, confidence_fusion, minmax_fusion, query_coverage
from kvgraph.store.analyzers import DEFAULT_ANALYZER, STOPWORDS
from kvgraph.text import split_sentences
from retrieval_lab import (
    ROOT,
    Corpus,
    Lexical,
    documents,
    embedder,
    evaluate,
    load,
    make_corpus,
    query_vectors,
    save_report,
)

GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
KINDS = ("masked", "keywords", "ict")
OBJECTIVE = {
    "llama2": ("hit_rate@5", "mrr@10"),
    "hotpotqa": ("recall@2", "recall@5"),
    "squad": ("hit_rate@1", "mrr@10"),
}
_WORD = re.compile(r"\w+")


def pseudo_questions(c: Corpus, n: int, seed: int) -> list[tuple[int, str, str]]:
    """(chunk index, sentence, the chunk's text without it) for up to ``n`` drawn chunks."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(c.nodes)):
        text = c.texts[int(i)]
        spans = [
            (s, e)
            for s, e in split_sentences(text)
            if 6 <= len(text[s:e].split()) <= 40 and not text[s:e].lstrip().startswith(("|", "#"))
        ]
        if len(spans) < 2:
            continue
        s, e = spans[int(rng.integers(len(spans)))]
        out.append((int(i), text[s:e], text[:s] + text[e:]))
        if len(out) == n:
            break
    return out


def rewrite(kind: str, sentence: str, df: dict[str, int], rng: np.random.Generator) -> str:
    words = sentence.split()
    content = [j for j, w in enumerate(words) if (m := _WORD.findall(w.lower())) and m[0] not in STOPWORDS]
    if kind == "masked":
        rare = set(sorted(content, key=lambda j: df.get(_WORD.findall(words[j].lower())[0], 0))[:3])
        return " ".join(w for j, w in enumerate(words) if j not in rare)
    if kind == "keywords":
        pick = sorted(rng.choice(content, size=min(5, len(content)), replace=False)) if content else []
        return " ".join(words[j] for j in pick)
    return sentence


def best_weight(c: Corpus, kind: str, picks: list[tuple[int, str, str]], fusion: str, seed: int) -> dict[float, float]:
    """MRR@10 per dense weight of finding each pseudo-question's source document."""
    rng = np.random.default_rng(seed)
    df: dict[str, int] = {}
    for t in c.texts:
        for w in set(_WORD.findall(t.lower())):
            df[w] = df.get(w, 0) + 1
    texts, vectors = list(c.texts), c.vectors
    if kind == "ict":  # the source chunk loses the sentence, in BM25 and in its vector
        vectors = vectors.copy()
        for i, _, rest in picks:
            texts[i] = rest
        redo = [embedding_text(dataclasses.replace(c.nodes[i], text=rest)) for i, _, rest in picks]
        for (i, _, _), v in zip(picks, np.asarray(embedder().embed(redo), dtype=np.float32)):
            vectors[i] = v
    queries = [rewrite(kind, s, df, rng) for _, s, _ in picks]
    qv = np.asarray(embedder().embed(queries), dtype=np.float32)
    lex = Lexical(texts, DEFAULT_ANALYZER)
    docs = [n.ref_doc_id for n in c.nodes]
    mrr = {w: 0.0 for w in GRID}
    for (i, _, _), q, v in zip(picks, queries, qv):
        s = vectors @ v
        order = np.argsort(-s)[:50]
        dense = Ranked([str(j) for j in order], s[order].tolist())
        ids, scores = lex.search(q, 50)
        sparse = Ranked([str(j) for j in ids], scores.tolist())
        cov = query_coverage(q, texts[int(ids[0])]) if len(ids) else 0.0
        for w in GRID:
            fused = (
                confidence_fusion(dense, sparse, cov, w) if fusion == "confidence" else minmax_fusion(dense, sparse, w)
            )
            for rank, (j, _) in enumerate(fused[:10]):
                if docs[int(j)] == docs[i]:
                    mrr[w] += 1.0 / (rank + 1)
                    break
    return {w: m / len(picks) for w, m in mrr.items()}


def real_weights(c: Corpus, name: str, fusion: str) -> dict[float, float]:
    """The dev questions' own objective per dense weight."""
    sims = query_vectors(c.ds) @ c.vectors.T
    lex = Lexical(c.texts, DEFAULT_ANALYZER)
    rows = []
    for q, s in zip(c.ds.queries, sims):
        order = np.argsort(-s)[:50]
        ids, scores = lex.search(q.text, 50)
        cov = query_coverage(q.text, c.texts[int(ids[0])]) if len(ids) else 0.0
        rows.append(
            (Ranked([str(j) for j in order], s[order].tolist()), Ranked([str(j) for j in ids], scores.tolist()), cov)
        )
    out = {}
    for w in GRID:
        rankings = []
        for d, b, cov in rows:
            fused = confidence_fusion(d, b, cov, w) if fusion == "confidence" else minmax_fusion(d, b, w)
            rankings.append(np.asarray([int(j) for j, _ in fused], dtype=np.int64))
        report = evaluate(c, rankings)
        out[w] = float(np.mean([report.means[m] for m in OBJECTIVE[name]]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="llama2,hotpotqa,squad")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counter = embedder().inner.token_counter()
    result: dict[str, dict[str, dict[str, dict[float, float]]]] = {}
    lines = ["| dev set | fusion | real questions' best weight | " + " | ".join(f"{k} picks" for k in KINDS) + " |"]
    lines.append("| --- |" + " --- |" * (2 + len(KINDS)))
    for name in [n for n in args.datasets.split(",") if n]:
        ds = load(name)
        splitter = SentenceSplitter(counter, 254, 32, context_headers=True, min_section_chars=MIN_SECTION_CHARS)
        c = make_corpus(ds, documents(ds), splitter, embed_text=embedding_text, name=name)
        picks = pseudo_questions(c, args.n, args.seed)
        result[name] = {}
        for fusion in ("confidence", "minmax"):
            real = real_weights(c, name, fusion)
            per_kind = {k: best_weight(c, k, picks, fusion, args.seed) for k in KINDS}
            result[name][fusion] = {"real": real, **per_kind}
            cells = [f"{max(v, key=v.get)} (MRR {max(v.values()):.3f})" for v in per_kind.values()]
            lines.append(
                f"| {name} | {fusion} | {max(real, key=real.get)} ({max(real.values()):.3f}) | "
                + " | ".join(cells)
                + " |"
            )
            print(lines[-1], flush=True)
    md = "\n".join(lines) + "\n"
    result_out = {
        n: {f: {k: {str(w): m for w, m in v.items()} for k, v in d.items()} for f, d in r.items()}
        for n, r in result.items()
    }
    save_report(ROOT / "bench" / "out" / "retrieval_pseudo_queries.json", result_out, md)


if __name__ == "__main__":
    main()
