"""The Postgres + pgvector competitor of the store benchmark (``--competitors ...,postgres``).

kvgraph's own :class:`~kvgraph.store.postgres.PostgresVectorStore` on a real PostgreSQL 16 with
pgvector, started from Python by the ``pgserver`` package in the benchmark's scratch directory
(Unix socket only). The same vectors, metadata and queries as every other competitor; loaded
without the index (COPY in batches of 10,000 nodes), then the HNSW index is built once, timed on
its own (``index_s``: the figure docs/scale.md scales up). Filtered queries go through the store's
planner: exact for selective filters, HNSW with a raised ef_search for broad ones (pgvector 0.6
has no iterative scan), which is what the recall column checks.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from store_common import DIM, SELECTIVITIES, K, perf
from store_competitors import Competitor
from store_data import Dataset

LOAD_BATCH = 10_000
SCHEMA = "bench"


class PgVector(Competitor):
    name = "postgres"
    has_batch = True

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.note = (
            "kvgraph PostgresVectorStore on PostgreSQL 16 + pgvector (pgserver, Unix socket): HNSW m=16, "
            "ef_construction=64, ef_search=40, vector_ip_ops on unit vectors; planner: exact below "
            "exact_limit=10,000 allowed rows, else HNSW with ef raised to 4k/selectivity (max 1000)"
        )

    def _start(self) -> str:
        import pgserver

        self.data = self.tmp / "pg"
        shutil.rmtree(self.data, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server = pgserver.get_server(self.data, cleanup_mode="stop")
        uri = self.server.get_uri()
        # a bulk index build needs room: pgvector builds HNSW in memory up to maintenance_work_mem
        import psycopg

        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET maintenance_work_mem = '1GB'")
            conn.execute("SELECT pg_reload_conf()")
        return f"{uri}&schema={SCHEMA}"

    def build(self, ds: Dataset) -> dict[str, float]:
        from kvgraph.schema import Node
        from kvgraph.store import VectorStoreQuery
        from kvgraph.store.postgres import PostgresVectorStore

        self.VSQ = VectorStoreQuery
        self.uri = self._start()
        self.filters = {thr: {"bucket": {"$lt": thr}} for thr, _ in SELECTIVITIES}
        self.s = PostgresVectorStore.open(self.uri, dim=DIM, metric="cosine", build_index=False)
        ids = ds.ids()
        t0 = perf()
        for lo in range(0, ds.n, LOAD_BATCH):
            hi = min(ds.n, lo + LOAD_BATCH)
            metas = ds.metadatas(lo, hi)
            texts = ds.texts[lo:hi] if ds.texts else [""] * (hi - lo)
            nodes = [
                Node(id=ids[lo + i], text=texts[i], metadata=metas[i], embedding=ds.X[lo + i]) for i in range(hi - lo)
            ]
            self.s.add(nodes)
        t1 = perf()
        self.s.build_index()
        t2 = perf()
        self.s.vacuum()  # VACUUM ANALYZE: planner statistics and the visibility map
        t3 = perf()
        return {"add_s": t1 - t0, "index_s": t2 - t1, "analyze_s": t3 - t2}

    def q(self, q: np.ndarray, thr: int | None, **kw: Any) -> Any:
        return self.VSQ(query_embedding=q, similarity_top_k=K, filters=None if thr is None else self.filters[thr], **kw)

    def query(self, q: np.ndarray, thr: int | None, ef: int | None = None, **kw: Any) -> Any:
        if ef is not None:
            kw["ef_search"] = ef
        return self.s.query(self.q(q, thr, **kw))

    def batch(self, Q: np.ndarray, thr: int | None, ef: int | None = None) -> Any:
        return self.s.query_batch(
            Q, similarity_top_k=K, filters=None if thr is None else self.filters[thr], ef_search=ef
        )

    def rows(self, res: Any) -> list[int]:
        return [int(i) for i in res.ids]

    def reopen(self) -> dict[str, Any]:
        from kvgraph.store.postgres import PostgresVectorStore

        self.s.close()
        t0 = perf()
        self.s = PostgresVectorStore.open(self.uri)
        t1 = perf()
        r = self.s.query(self.q(np.ones(DIM, np.float32), None))
        t2 = perf()
        return {"open_s": t1 - t0, "first_query_s": t2 - t1, "first_plan": r.plan}

    def disk_bytes(self) -> int:
        return int(self.s.stats()["disk_bytes"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.s.close()
        with contextlib.suppress(Exception):
            self.server.cleanup()
        shutil.rmtree(self.data, ignore_errors=True)
