"""The competitors of the store benchmark: one class per vector store, all with the same interface."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from store_common import DIM, SELECTIVITIES, K, build_threads, dir_bytes, perf, trim_memory
from store_data import Dataset

#
# Each competitor: build(ds) -> dict of build timings; query(q, thr) -> native result;
# batch(Q, thr) -> list of native results (or None: no batch API -> loop);
# rows(result) -> list of row numbers; optional reopen() / disk_bytes() / close().
# thr is None (no filter) or the bucket threshold (filter: bucket < thr).


class FromScratchStore:
    """The classic tutorial vector store (about 30 lines)."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.ids: list[str] = []
        self.embeddings: list[np.ndarray] = []

    def add(self, ids, embeddings, metadatas) -> None:
        for node_id, emb, meta in zip(ids, embeddings, metadatas):
            self.nodes[node_id] = {"id": node_id, "metadata": meta}
            self.ids.append(node_id)
            self.embeddings.append(np.array(emb, dtype=np.float32))  # a copy, as from an embedding API

    @staticmethod
    def _matches(meta: dict[str, Any], filters: dict[str, Any]) -> bool:
        for key, want in filters.items():
            value = meta.get(key)
            if isinstance(want, dict):  # {"$lt": x}: the one operator the selectivity test needs
                if value is None or not value < want["$lt"]:
                    return False
            elif value != want:
                return False
        return True

    def query(self, q: np.ndarray, k: int = 4, filters: dict[str, Any] | None = None) -> list[tuple[float, str]]:
        q_norm = np.linalg.norm(q)
        scored = []
        for node_id, emb in zip(self.ids, self.embeddings):
            if filters and not self._matches(self.nodes[node_id]["metadata"], filters):
                continue
            sim = float(np.dot(q, emb) / (q_norm * np.linalg.norm(emb)))
            scored.append((sim, node_id))
        scored.sort(key=lambda t: t[0], reverse=True)
        return scored[:k]


class Competitor:
    name = "?"
    has_batch = False
    note = ""

    def build(self, ds: Dataset) -> dict[str, float]:
        raise NotImplementedError

    def query(self, q: np.ndarray, thr: int | None):
        raise NotImplementedError

    def batch(self, Q: np.ndarray, thr: int | None):
        return [self.query(q, thr) for q in Q]

    def rows(self, res) -> list[int]:
        raise NotImplementedError

    def reopen(self) -> dict[str, float] | None:
        return None

    def disk_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class FromScratch(Competitor):
    name = "from-scratch"
    note = "dict + list of per-node arrays; cosine per node in a Python loop (np.dot), full sort"

    def build(self, ds):
        self.s = FromScratchStore()
        t0 = perf()
        self.s.add(ds.ids(), ds.X, ds.metadatas())
        return {"add_s": perf() - t0}

    def query(self, q, thr):
        return self.s.query(q, K, None if thr is None else {"bucket": {"$lt": thr}})

    def rows(self, res):
        return [int(i) for _, i in res]

    def close(self):
        del self.s


class LlamaIndexSimple(Competitor):
    name = "llamaindex"
    note = "SimpleVectorStore; add time includes building the TextNode objects"

    def build(self, ds):
        from llama_index.core.schema import TextNode
        from llama_index.core.vector_stores import SimpleVectorStore
        from llama_index.core.vector_stores.types import (
            FilterOperator,
            MetadataFilter,
            MetadataFilters,
            VectorStoreQuery,
        )

        self.VSQ = VectorStoreQuery
        self.filters = {
            thr: MetadataFilters(filters=[MetadataFilter(key="bucket", value=thr, operator=FilterOperator.LT)])
            for thr, _ in SELECTIVITIES
        }
        self.s = SimpleVectorStore()
        t0 = perf()
        step = 20_000
        ids = ds.ids()
        for lo in range(0, ds.n, step):
            hi = min(ds.n, lo + step)
            metas = ds.metadatas(lo, hi)
            embs = ds.X[lo:hi].tolist()
            nodes = [TextNode(id_=ids[lo + i], text="", embedding=embs[i], metadata=metas[i]) for i in range(hi - lo)]
            self.s.add(nodes)
            del nodes, embs
        self._tmp = None
        return {"add_s": perf() - t0}

    def query(self, q, thr):
        return self.s.query(
            self.VSQ(query_embedding=q.tolist(), similarity_top_k=K, filters=None if thr is None else self.filters[thr])
        )

    def rows(self, res):
        return [int(i) for i in res.ids]

    def persist_and_reload(self, tmp: Path) -> dict[str, float]:
        from llama_index.core.vector_stores import SimpleVectorStore

        path = tmp / "llamaindex.json"
        t0 = perf()
        self.s.persist(str(path))
        t1 = perf()
        s2 = SimpleVectorStore.from_persist_path(str(path))
        t2 = perf()
        s2.query(self.VSQ(query_embedding=[1.0] + [0.0] * (DIM - 1), similarity_top_k=K))
        t3 = perf()
        self._disk = path.stat().st_size
        path.unlink()
        return {"persist_s": t1 - t0, "open_s": t2 - t1, "first_query_s": t3 - t2}

    def disk_bytes(self):
        return getattr(self, "_disk", None)

    def close(self):
        del self.s


def _faiss_reopen(comp: Any, path: Path) -> dict[str, float]:
    """Write a faiss competitor's index, time reading it back and its first query, then delete it."""
    faiss.write_index(comp.index, str(path))
    comp._disk = path.stat().st_size
    t0 = perf()
    idx = faiss.read_index(str(path))
    t1 = perf()
    idx.search(np.ones((1, DIM), np.float32), K)
    t2 = perf()
    del idx
    path.unlink()
    return {"open_s": t1 - t0, "first_query_s": t2 - t1}


class FaissFlat(Competitor):
    name = "faiss-flat"
    has_batch = True
    note = "IndexFlatIP on unit vectors (exact); filters via a precomputed IDSelectorBitmap"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def build(self, ds):
        t0 = perf()
        self.index = faiss.IndexFlatIP(DIM)
        self.index.add(ds.X)
        t1 = perf()
        self._params = {}
        for thr, _ in SELECTIVITIES:
            bits = np.packbits(ds.bucket < thr, bitorder="little")
            sel = faiss.IDSelectorBitmap(ds.n, faiss.swig_ptr(bits))
            self._params[thr] = (faiss.SearchParameters(sel=sel), sel, bits)
        return {"add_s": t1 - t0}

    def _p(self, thr):
        return None if thr is None else self._params[thr][0]

    def query(self, q, thr):
        return self.index.search(q[None, :], K, params=self._p(thr))[1][0]

    def batch(self, Q, thr):
        return self.index.search(Q, K, params=self._p(thr))[1]

    def rows(self, res):
        return [int(i) for i in res if i >= 0]

    def reopen(self):
        return _faiss_reopen(self, self.tmp / "flat.faiss")

    def disk_bytes(self):
        return getattr(self, "_disk", None)

    def close(self):
        del self.index, self._params


class FaissHNSW(Competitor):
    name = "faiss-hnsw"
    has_batch = True

    def __init__(self, tmp: Path, ef: int = 64) -> None:
        self.tmp = tmp
        self.ef = ef
        self.note = f"IndexHNSWFlat(d, 16), efConstruction=200, efSearch={ef} (sweep below); filters via bitmap"

    def build(self, ds):
        self.n = ds.n
        t0 = perf()
        self.index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 200
        with build_threads():
            self.index.add(ds.X)
        t1 = perf()
        self._bits = {thr: np.packbits(ds.bucket < thr, bitorder="little") for thr, _ in SELECTIVITIES}
        self._sel = {thr: faiss.IDSelectorBitmap(ds.n, faiss.swig_ptr(b)) for thr, b in self._bits.items()}
        self.allowed_frac = {thr: float(np.mean(ds.bucket < thr)) for thr, _ in SELECTIVITIES}
        return {"add_s": t1 - t0}

    def params(self, thr, ef=None):
        ef = ef or self.ef
        if thr is None:
            return faiss.SearchParametersHNSW(efSearch=ef)
        # same depth policy as a planner would use: ef / selectivity, capped
        ef_f = min(4096, math.ceil(max(ef, K) / max(self.allowed_frac[thr], 1e-9)))
        return faiss.SearchParametersHNSW(efSearch=ef_f, sel=self._sel[thr])

    def query(self, q, thr, ef=None):
        return self.index.search(q[None, :], K, params=self.params(thr, ef))[1][0]

    def batch(self, Q, thr, ef=None):
        return self.index.search(Q, K, params=self.params(thr, ef))[1]

    def rows(self, res):
        return [int(i) for i in res if i >= 0]

    def reopen(self):
        return _faiss_reopen(self, self.tmp / "hnsw.faiss")

    def disk_bytes(self):
        return getattr(self, "_disk", None)

    def close(self):
        del self.index, self._sel, self._bits


class LanceDB(Competitor):
    name = "lancedb"
    has_batch = True

    def __init__(self, tmp: Path, index: bool = False) -> None:
        self.tmp = tmp
        self.index = index
        self.name = "lancedb-ivfhnsw" if index else "lancedb"
        self.note = (
            "IVF_HNSW_SQ index (cosine, m=16, ef_construction=200), default search params"
            if index
            else "embedded table, brute force (no index), prefilter where-clause"
        )

    def build(self, ds):
        import lancedb
        import pyarrow as pa

        self.path = self.tmp / ("lance_idx" if self.index else "lance")
        self.db = lancedb.connect(str(self.path))
        t0 = perf()
        table = pa.table(
            {
                "id": pa.array(ds.ids()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(ds.X.ravel()), DIM),
                "bucket": pa.array(ds.bucket, type=pa.int64()),
                "cat": pa.array(ds.cat),
            }
        )
        self.tbl = self.db.create_table("bench", table)
        del table
        t1 = perf()
        out = {"add_s": t1 - t0}
        if self.index:
            parts = max(1, int(math.sqrt(ds.n) / 4))
            from lancedb.index import IvfHnswSq

            cfg = IvfHnswSq(distance_type="cosine", num_partitions=parts, m=16, ef_construction=200)
            self.tbl.create_index("vector", config=cfg)  # new API: column first, then config
            out["index_s"] = perf() - t1
        return out

    def _search(self, q, thr, tbl=None):
        s = (tbl or self.tbl).search(q, vector_column_name="vector").distance_type("cosine").limit(K)
        if thr is not None:
            s = s.where(f"bucket < {thr}", prefilter=True)
        return s.select(["id", "_distance"])

    def query(self, q, thr):
        return self._search(q, thr).to_arrow()

    def batch(self, Q, thr):
        t = self._search(Q, thr).to_arrow()
        qi = np.asarray(t["query_index"].to_numpy())
        ids = np.asarray([int(x) for x in t["id"].to_pylist()])
        out: list[list[int]] = [[] for _ in range(len(Q))]
        for a, b in zip(qi, ids):
            out[a].append(b)
        return out

    def rows(self, res):
        if isinstance(res, list):
            return res
        return [int(x) for x in res["id"].to_pylist()]

    def reopen(self):
        import lancedb

        t0 = perf()
        db = lancedb.connect(str(self.path))
        tbl = db.open_table("bench")
        t1 = perf()
        self._search(np.ones(DIM, np.float32), None, tbl).to_arrow()
        t2 = perf()
        return {"open_s": t1 - t0, "first_query_s": t2 - t1}

    def disk_bytes(self):
        return dir_bytes(self.path)

    def close(self):
        del self.tbl, self.db
        shutil.rmtree(self.path, ignore_errors=True)


class KVGraph(Competitor):
    name = "kvgraph"
    has_batch = True

    def __init__(self, tmp: Path, ann_threshold: int) -> None:
        self.tmp = tmp
        self.ann_threshold = ann_threshold
        self.note = (
            f"EmbeddedVectorStore(metric=cosine, ann_threshold={ann_threshold}), add_arrays, planner's choice; "
            "HNSW M=16, efConstruction=200 over the store's own float32 file (ann_storage='vectors')"
        )

    def _open(self):
        from kvgraph.store import EmbeddedVectorStore

        return EmbeddedVectorStore.open(self.path)

    def build(self, ds):
        from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

        self.VSQ = VectorStoreQuery
        self.path = self.tmp / "kvgraph"
        shutil.rmtree(self.path, ignore_errors=True)
        self.filters = {thr: {"bucket": {"$lt": thr}} for thr, _ in SELECTIVITIES}
        self.s = EmbeddedVectorStore.open(self.path, dim=DIM, metric="cosine", ann_threshold=self.ann_threshold)
        ids = ds.ids()
        with build_threads():  # the background indexer runs faiss while we add and wait
            t0 = perf()
            step = 100_000
            for lo in range(0, ds.n, step):
                hi = min(ds.n, lo + step)
                self.s.add_arrays(ids[lo:hi], ds.X[lo:hi], ds.metadatas(lo, hi), ds.texts[lo:hi] if ds.texts else None)
            t1 = perf()
            if hasattr(self.s, "wait_for_index"):
                self.s.wait_for_index()
            t2 = perf()
        self.s.checkpoint()
        t3 = perf()
        return {"add_s": t1 - t0, "index_s": t2 - t1, "checkpoint_s": t3 - t2}

    def q(self, q, thr, **kw):
        return self.VSQ(query_embedding=q, similarity_top_k=K, filters=None if thr is None else self.filters[thr], **kw)

    def query(self, q, thr, **kw):
        return self.s.query(self.q(q, thr, **kw))

    def batch(self, Q, thr):
        return self.s.query_batch(Q, similarity_top_k=K, filters=None if thr is None else self.filters[thr])

    def rows(self, res):
        return [int(i) for i in res.ids]

    def reopen(self):
        self.s.close()
        trim_memory()
        t0 = perf()
        self.s = self._open()
        t1 = perf()
        r = self.s.query(self.q(np.ones(DIM, np.float32), None))
        t2 = perf()
        r2 = self.s.query(self.q(np.ones(DIM, np.float32) * -1, None))
        t3 = perf()
        # the planner searches exactly while the background thread loads the HNSW index:
        # time from open() until queries run on the index
        t_ann = None
        qv = np.ones(DIM, np.float32)
        thr_after = getattr(self.s, "ann_threshold", None)  # open(path) without ann_threshold=...
        while self.s.count() >= (thr_after or self.ann_threshold) and perf() - t0 < 20:
            if self.s.query(self.q(qv, None)).plan.startswith("ann"):
                t_ann = perf() - t0
                break
            time.sleep(0.005)
        return {
            "open_s": t1 - t0,
            "first_query_s": t2 - t1,
            "second_query_s": t3 - t2,
            "first_plan": r.plan,
            "second_plan": r2.plan,
            "ann_ready_s": t_ann,
            "ann_threshold_after_reopen": thr_after,
        }

    def disk_bytes(self):
        return int(self.s.stats()["disk_bytes"])

    def close(self):
        with contextlib.suppress(Exception):
            self.s.close()
        del self.s
        shutil.rmtree(self.path, ignore_errors=True)
