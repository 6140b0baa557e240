"""The Postgres store's planner on a real server: each path it can take (exact scan, one capped probe,
HNSW with a raised ef, HNSW with an exact retry) returns the exact filtered top-k on this data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from contract.servers import VectorBackend
from kvgraph.schema import Node
from kvgraph.store import VectorStoreQuery


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[VectorBackend]:
    backend = VectorBackend("postgres", tmp_path)
    try:
        yield backend
    finally:
        backend.close()


def test_every_plan_returns_the_exact_filtered_top_k(pg: VectorBackend) -> None:
    rng = np.random.default_rng(11)
    n = 3_000
    vecs = rng.normal(size=(n, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    bucket = rng.integers(0, 1000, size=n)
    store = pg.open(dim=16, exact_limit=200, ef_search=40)
    nodes = [Node(id=f"n{i}", embedding=v, metadata={"bucket": int(b)}) for i, (v, b) in enumerate(zip(vecs, bucket))]
    store.add(nodes)
    assert store.stats()["ann_active"]
    qs = rng.normal(size=(8, 16)).astype(np.float32)
    plans: set[str] = set()
    for thr in (5, 50, 500, 1000):  # 0.5%, 5%, 50%, 100% of the rows allowed
        allowed = np.flatnonzero(bucket < thr)
        for q in qs:
            want = allowed[np.argsort(-(vecs[allowed] @ (q / np.linalg.norm(q))))[:10]]
            spec = {"bucket": {"$lt": thr}}
            res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, filters=spec))
            plans.add(res.plan.split("(")[0])
            hit = len(set(res.ids) & {f"n{i}" for i in want}) / len(want)
            assert hit >= (1.0 if res.plan.startswith("exact") else 0.9), (thr, res.plan)
    # the selective filters were answered by the probe, the broad ones by HNSW
    assert {"exact-subset", "ann-filtered"} <= plans
    batch = store.query_batch(qs, similarity_top_k=10, filters={"bucket": {"$lt": 5}})
    assert all(r.plan == "exact-subset" for r in batch)
    forced = store.query(VectorStoreQuery(query_embedding=qs[0], similarity_top_k=10, strategy="ann"))
    assert forced.plan.startswith("ann(ef=40")
    exact = store.query(VectorStoreQuery(query_embedding=qs[0], similarity_top_k=10, exact=True))
    assert exact.plan == "exact" and len(exact.ids) == 10


def test_migrations_are_versioned_and_a_newer_schema_is_refused(pg: VectorBackend) -> None:
    import psycopg
    from psycopg import sql

    from kvgraph.store.pg_schema import LATEST, SchemaVersionError, applied_versions

    store = pg.open(dim=4)
    store.add([Node(id="a", text="kept", embedding=[1.0, 0.0, 0.0, 0.0])])
    store.close()
    table = sql.Identifier(pg.schema, "kvgraph_migrations")
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        assert applied_versions(conn, pg.schema) == list(range(1, LATEST + 1))
        # a store left by an older kvgraph (the last migration not applied) is upgraded on open
        conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(table), (LATEST,))
    store = pg.open()
    assert store.get(["a"])[0].text == "kept"
    store.close()
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        assert applied_versions(conn, pg.schema) == list(range(1, LATEST + 1))
        future = sql.SQL("INSERT INTO {} (version, description) VALUES (%s, 'future')").format(table)
        conn.execute(future, (LATEST + 1,))
    with pytest.raises(SchemaVersionError, match="newer"):
        pg.open()
    with pytest.raises(SchemaVersionError, match="newer"):  # a reader would misread it as well
        pg.open(read_only=True)
