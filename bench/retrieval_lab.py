#!/usr/bin/env python
"""A fast in-memory lab for retrieval experiments on the dev sets (not a product path).

Chunks are made with kvgraph's own loaders and splitter, embedded through a shared on-disk
embedding cache, and every retrieval variant is computed in numpy over the same chunk matrix,
so a grid of variants costs seconds once the chunks are embedded. Final figures are always
re-measured through the product (``kvgraph.eval.runner``); this module only explores.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kvgraph.eval.datasets import EvalDataset  # noqa: E402
from kvgraph.eval.metrics import evaluate_retrieval  # noqa: E402
from kvgraph.schema import Document, Node  # noqa: E402

LAB = ROOT / "bench" / ".cache" / "lab"
KS = (1, 2, 5, 10)


def embedder(spec: str = "onnx-int8") -> Any:
    from kvgraph.embed.cache import CachedEmbedder, EmbeddingCache
    from kvgraph.embed.factory import embedder_from_spec

    LAB.mkdir(parents=True, exist_ok=True)
    key = (spec, os.getpid())
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = CachedEmbedder(embedder_from_spec(spec), EmbeddingCache(LAB / "embed-cache.sqlite"))
    return _EMBEDDERS[key]


_EMBEDDERS: dict[Any, Any] = {}


def load(name: str, squad_articles: int = 10) -> EvalDataset:
    from kvgraph.eval.datasets import read_hotpotqa_subset, read_page_questions, read_squad_dev

    if name == "llama2":
        return read_page_questions(ROOT / "bench" / "data" / "llama2_dev_questions.json")
    if name == "hotpotqa":
        return read_hotpotqa_subset()
    if name == "squad":
        return read_squad_dev(max_articles=squad_articles)
    raise SystemExit(name)


def documents(ds: EvalDataset, loader: Callable[[Path], list[Document]] | None = None) -> list[Document]:
    """The documents a user's ingest would produce: page files through the Markdown loader, or passages."""
    if ds.ingest != "files":
        return [Document(id=p.id, text=p.full_text, metadata={"title": p.title}) for p in ds.passages]
    from kvgraph.ingest.loaders import load_file

    folder = LAB / "files" / ds.name
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Document] = []
    for p in ds.passages:
        path = folder / f"{p.id}.md"
        if not path.exists() or path.read_text(encoding="utf-8") != p.full_text:
            path.write_text(p.full_text, encoding="utf-8")
        out += (loader or load_file)(path)
    return out


def passage_of(ds: EvalDataset, node: Node) -> str:
    if ds.ingest == "files":
        page = node.metadata.get("page")
        if isinstance(page, int):
            return f"page-{page:03d}"
        return Path(str(node.metadata.get("file_name"))).stem
    return node.ref_doc_id or node.id


@dataclass
class Corpus:
    ds: EvalDataset
    nodes: list[Node]
    embed_texts: list[str]
    passages: list[str]
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), np.float32))
    name: str = ""

    @property
    def texts(self) -> list[str]:
        return [n.text for n in self.nodes]


def make_corpus(
    ds: EvalDataset,
    docs: Sequence[Document],
    splitter: Any,
    embed_text: Callable[[Node], str] | None = None,
    spec: str = "onnx-int8",
    name: str = "",
) -> Corpus:
    nodes = splitter.split_many(list(docs))
    texts = [embed_text(n) if embed_text else n.text for n in nodes]
    t0 = time.perf_counter()
    vecs = np.asarray(embedder(spec).embed(texts), dtype=np.float32)
    dt = time.perf_counter() - t0
    if dt > 5:
        print(f"  [{name}] embedded {len(texts)} chunks in {dt:.0f} s", file=sys.stderr)
    return Corpus(ds, nodes, texts, [passage_of(ds, n) for n in nodes], vecs, name)


def query_vectors(ds: EvalDataset, spec: str = "onnx-int8") -> np.ndarray:
    return np.asarray(embedder(spec).embed([q.text for q in ds.queries]), dtype=np.float32)


# ------------------------------------------------------------------------------------------ scoring


def passages_from_chunks(c: Corpus, order: np.ndarray, k: int = 10) -> list[str]:
    out: list[str] = []
    for i in order:
        pid = c.passages[int(i)]
        if pid not in out:
            out.append(pid)
            if len(out) == k:
                break
    return out


def evaluate(c: Corpus, rankings: Sequence[np.ndarray] | Sequence[list[str]], ks: Sequence[int] = KS) -> Any:
    ds = c.ds
    results = {}
    for q, r in zip(ds.queries, rankings):
        results[q.id] = r if (len(r) and isinstance(r[0], str)) else passages_from_chunks(c, np.asarray(r), max(ks))
    return evaluate_retrieval(results, ds.gold(), ks=ks)


def summary(c: Corpus, report: Any, keys: Sequence[str] = ()) -> dict[str, float]:
    ds = c.ds
    keys = keys or default_keys(ds)
    out = {}
    for key in keys:
        if ":" in key:
            tag, m = key.split(":")
            ids = [q.id for q in ds.queries if tag in q.tags]
            out[key] = report.subset(ids).means[m]
        else:
            out[key] = report.means[key]
    return out


def default_keys(ds: EvalDataset) -> list[str]:
    if ds.ingest == "files":
        return ["hit_rate@1", "hit_rate@5", "mrr@10", "paraphrase:hit_rate@5"]
    if "hotpot" in ds.name:
        return ["recall@2", "recall@5", "hit_rate@1", "mrr@10"]
    return ["hit_rate@1", "hit_rate@5", "mrr@10"]


def fmt(d: dict[str, float]) -> str:
    return "  ".join(f"{k.replace('hit_rate', 'h').replace('paraphrase:', 'para:')} {v:.3f}" for k, v in d.items())


def digest(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------------ first stages


def bm25_rankings(c: Corpus, analyzer_name: str = "plain", depth: int = 200, texts: Sequence[str] | None = None):
    """(order, scores) per query over the chunks: BM25 with the given analyzer."""
    from kvgraph.store.bm25 import BM25Index

    idx = BM25Index(analyzer_name=analyzer_name)
    idx.append(list(texts if texts is not None else c.texts))
    live = np.ones(len(c.nodes), dtype=bool)
    out = []
    for q in c.ds.queries:
        slots, scores = idx.scores(q.text, live)
        order = np.argsort(-scores, kind="stable")[:depth]
        out.append((slots[order], scores[order]))
    return out


def dense_rankings(c: Corpus, qv: np.ndarray, depth: int = 200):
    sims = qv @ c.vectors.T
    out = []
    for s in sims:
        order = np.argsort(-s, kind="stable")[:depth]
        out.append((order, s[order]))
    return out


def _norm(scores: np.ndarray, how: str) -> np.ndarray:
    if not len(scores):
        return scores
    if how == "minmax":
        lo, hi = scores.min(), scores.max()
        return (scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores)
    if how == "z":
        sd = scores.std()
        return (scores - scores.mean()) / sd if sd > 0 else np.zeros_like(scores)
    if how == "max":
        return scores / scores.max() if scores.max() > 0 else scores
    raise ValueError(how)


def fuse(lists, weights, how: str = "rrf", k: int = 60, depth: int | None = None) -> np.ndarray:
    """Fused chunk order from several (ids, scores) lists with per-list weights."""
    total: dict[int, float] = {}
    for (ids, scores), w in zip(lists, weights):
        if depth:
            ids, scores = ids[:depth], scores[:depth]
        if how == "rrf":
            contrib = w / (k + np.arange(1, len(ids) + 1))
        else:
            contrib = w * _norm(np.asarray(scores, dtype=np.float64), how)
        floor = 0.0 if how in ("rrf", "minmax", "max") else (contrib.min() if len(contrib) else 0.0)
        for i, v in zip(ids, contrib):
            total[int(i)] = total.get(int(i), floor * 0) + float(v)
    return np.array(sorted(total, key=lambda i: -total[i]), dtype=np.int64)


def confidence_fusion(D, B, M: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """alpha * minmax(dense) + (1 - alpha) * conf * bm25 / top_bm25, conf = min(1, top_bm25 / M)."""
    total: dict[int, float] = {}
    d_ids, d = D
    if len(d):
        span = max(float(d.max() - d.min()), 1e-9)
        for i, v in zip(d_ids, alpha * (d - d.min()) / span):
            total[int(i)] = total.get(int(i), 0.0) + float(v)
    b_ids, b = B
    if len(b) and b.max() > 0:
        conf = min(1.0, float(b.max()) / max(M, 1e-9))
        for i, v in zip(b_ids, (1 - alpha) * conf * b / b.max()):
            total[int(i)] = total.get(int(i), 0.0) + float(v)
    ids = np.array(sorted(total, key=lambda i: -total[i]), dtype=np.int64)
    return ids, np.array([total[int(i)] for i in ids])


class Lexical:
    """BM25 over a corpus with an analyzer, plus the query's attainable score M (sum of idf, OOV at max)."""

    def __init__(self, texts: Sequence[str], analyzer_name: str = "stem") -> None:
        from kvgraph.store.analyzers import analyzer
        from kvgraph.store.bm25 import BM25Index

        self.an = analyzer(analyzer_name)
        self.idx = BM25Index(analyzer_name=analyzer_name)
        self.idx.append(list(texts))
        self.n = len(texts)
        self.df: dict[str, int] = {}
        for t in texts:
            for w in set(self.an(t)):
                self.df[w] = self.df.get(w, 0) + 1
        self.live = np.ones(self.n, dtype=bool)

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return float(np.log1p((self.n - df + 0.5) / (df + 0.5)))

    def attainable(self, query: str) -> float:
        return sum(self.idf(t) for t in set(self.an(query)))

    def search(self, query: str, depth: int = 50):
        slots, scores = self.idx.scores(query, self.live)
        o = np.argsort(-scores, kind="stable")[:depth]
        return slots[o], scores[o]


def save_report(out: Path, result: Any, md: str) -> None:
    """Print a bench's markdown, and write it beside its JSON (``out``, ``out`` with ``.md``)."""
    print(md)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(md)
