"""Data sets of the store benchmark: clustered synthetic vectors and SQuAD dev, with ground truth."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from store_common import BENCH_DIR, DIM, SELECTIVITIES, K, log, perf


@dataclass
class Dataset:
    name: str
    X: np.ndarray  # (n, d) float32, unit norm
    Q: np.ndarray  # (nq, d) float32, unit norm
    bucket: np.ndarray  # (n,) int
    cat: list[str]
    gold: np.ndarray | None = None  # SQuAD: gold row per query
    texts: list[str] | None = None
    gt: np.ndarray | None = None  # exact top-k rows for Q
    gt_filtered: dict[int, np.ndarray] = field(default_factory=dict)
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.X)

    def ids(self) -> list[str]:
        return [str(i) for i in range(self.n)]

    def metadatas(self, lo: int = 0, hi: int | None = None) -> list[dict[str, Any]]:
        hi = self.n if hi is None else hi
        b = self.bucket[lo:hi].tolist()
        return [{"bucket": b[i], "cat": self.cat[lo + i]} for i in range(hi - lo)]

    def metadata_bytes(self) -> int:
        """JSON size of all metadata plus the id strings: the 'metadata' part of the memory budget."""
        sample = self.metadatas(0, min(self.n, 10_000))
        per = sum(len(json.dumps(m, separators=(",", ":"))) for m in sample) / max(len(sample), 1)
        ids = sum(len(str(i)) for i in range(self.n))
        return int(per * self.n + ids)


@dataclass
class DsInfo:
    """What the report needs to know about a data set (saved in the JSON, so --report-from works)."""

    name: str
    n: int
    nq: int
    note: str
    has_gold: bool
    metadata_bytes: int

    @classmethod
    def of(cls, ds: Dataset) -> DsInfo:
        return cls(ds.name, ds.n, len(ds.Q), ds.note, ds.gold is not None, ds.metadata_bytes())


def make_clustered(
    n: int,
    n_queries: int,
    seed: int,
    n_clusters: int = 1000,
    intrinsic: int = 64,
    spread: float = 1.5,
    noise: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters with a low-rank (``intrinsic``-dim) spread each, plus isotropic noise; unit norm.

    Database and queries come from the same distribution (different draws).
    """
    model = np.random.default_rng(1234 + seed)
    centers = model.standard_normal((n_clusters, DIM)).astype(np.float32)
    bases = (model.standard_normal((n_clusters, intrinsic, DIM)) / math.sqrt(intrinsic)).astype(np.float32)

    def draw(m: int, rng: np.random.Generator) -> np.ndarray:
        lab = rng.integers(0, n_clusters, m)
        out = np.empty((m, DIM), dtype=np.float32)
        for s in range(0, m, 100_000):
            lb = lab[s : s + 100_000]
            blk = centers[lb] + noise * rng.standard_normal((len(lb), DIM), dtype=np.float32)
            z = rng.standard_normal((len(lb), intrinsic), dtype=np.float32) * spread
            order = np.argsort(lb, kind="stable")
            bounds = np.searchsorted(lb[order], np.arange(n_clusters + 1))
            for c in range(n_clusters):
                idx = order[bounds[c] : bounds[c + 1]]
                if len(idx):
                    blk[idx] += z[idx] @ bases[c]
            blk /= np.linalg.norm(blk, axis=1, keepdims=True)
            out[s : s + len(lb)] = blk
        return out

    X = draw(n, np.random.default_rng(10_000 + seed))
    Q = draw(n_queries, np.random.default_rng(20_000 + seed))
    return X, Q


def synthetic_dataset(n: int, n_queries: int, seed: int) -> Dataset:
    cache = BENCH_DIR / ".cache" / f"synth_{n}_{n_queries}_{seed}_v1.npz"
    if cache.exists():
        z = np.load(cache)
        X, Q = z["X"], z["Q"]
    else:
        X, Q = make_clustered(n, n_queries, seed)
        if n >= 100_000:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, X=X, Q=Q)
    rng = np.random.default_rng(seed + 7)
    bucket = rng.integers(0, 1000, n).astype(np.int64)
    cats = ["news", "docs", "code", "chat", "mail", "wiki", "blog", "faq"]
    cat = [cats[i] for i in rng.integers(0, len(cats), n)]
    label = f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
    return Dataset(
        f"synthetic-{label}", X, Q, bucket, cat, note="1000 gaussian clusters, 64-d spread + noise, 384-d, unit norm"
    )


def squad_dataset(datasets_dir: str | None, n_questions: int, seed: int) -> Dataset:
    from squad_embed import squad_embeddings

    d = squad_embeddings(Path(datasets_dir) if datasets_dir else None, n_questions, verbose=False)
    n = len(d["P"])
    rng = np.random.default_rng(seed + 11)
    bucket = rng.integers(0, 1000, n).astype(np.int64)
    return Dataset(
        "squad-dev",
        d["P"],
        d["Q"],
        bucket,
        list(d["para_titles"]),
        gold=np.asarray(d["q_gold"]),
        texts=d["para_texts"],
        note=f"{n} SQuAD v1.1 dev paragraphs, {len(d['Q'])} questions, all-MiniLM-L6-v2",
    )


def compute_ground_truth(ds: Dataset) -> None:
    t0 = perf()
    flat = faiss.IndexFlatIP(DIM)
    flat.add(ds.X)
    _, ds.gt = flat.search(ds.Q, K)
    for thr, _ in SELECTIVITIES:
        sub = np.flatnonzero(ds.bucket < thr)
        f = faiss.IndexFlatIP(DIM)
        f.add(np.ascontiguousarray(ds.X[sub]))
        _, found = f.search(ds.Q, K)
        ds.gt_filtered[thr] = np.where(found >= 0, sub[np.maximum(found, 0)], -1)
    log(f"{ds.name}: ground truth in {perf() - t0:.1f}s")
