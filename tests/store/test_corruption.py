"""Damaged files are reported (CorruptionError naming the file), never read as wrong results;
damaged caches are rebuilt; and rejected input leaves the store exactly as it was."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from kvgraph.errors import CorruptionError, DimensionMismatchError, InvalidInputError, KvgraphError
from kvgraph.fileio import read_arrays
from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

DIM = 8


def make_nodes(n: int, dim: int = DIM, seed: int = 0, prefix: str = "n") -> list[Node]:
    vecs = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return [
        Node(
            id=f"{prefix}{i}",
            text=f"chunk {i} about {'cats' if i % 3 else 'dogs'} tok{prefix}{i}",
            metadata={"i": i, "par": i % 2, "tag": f"g{i % 5}"},
            embedding=vecs[i],
            ref_doc_id=f"doc{i % 4}",
        )
        for i in range(n)
    ]


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def built(tmp_path):
    """A closed store of 300 nodes (with a deletion and an upsert) and its nodes by id."""
    path = tmp_path / "kb"
    nodes = make_nodes(300)
    with EmbeddedVectorStore.open(path, dim=DIM) as s:
        s.add(nodes[:150])
        s.add(nodes[150:])
        s.delete(["n7"])
    live = {n.id: n for n in nodes if n.id != "n7"}
    return path, live


# ----------------------------------------------------------------------------- damaged vectors


def _vector_reads(s: EmbeddedVectorStore, live: dict[str, Node]) -> dict:
    q = live["n42"].embedding
    return {
        "get": lambda: s.get(["n42"]),
        "dense": lambda: s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3)),
        "dense-exact-filtered": lambda: s.query(
            VectorStoreQuery(query_embedding=q, similarity_top_k=3, exact=True, filters={"par": 0})
        ),
        "query_batch": lambda: s.query_batch(np.stack([q, q]), similarity_top_k=2),
        "hybrid": lambda: s.query(VectorStoreQuery(query_embedding=q, query_str="cats", mode="hybrid")),
        "mmr": lambda: s.query(VectorStoreQuery(query_embedding=q, mode="mmr")),
    }


@pytest.mark.parametrize("where", ["first-byte", "middle", "last-byte"])
@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("call", ["get", "dense", "dense-exact-filtered", "query_batch", "hybrid", "mmr"])
def test_flipped_vector_bytes_raise_corruption_error_naming_the_file(built, where, read_only, call):
    path, live = built
    vec = path / "vectors-0.f32"
    committed = 300 * DIM * 4
    assert vec.stat().st_size == committed
    flip(vec, {"first-byte": 0, "middle": committed // 2 + 1, "last-byte": committed - 1}[where])
    s = EmbeddedVectorStore.open(path, read_only=read_only)  # opening is allowed
    try:
        assert s.count() == 299
        do = _vector_reads(s, live)[call]
        for _ in range(2):  # and it keeps refusing; no silent fallback the second time
            with pytest.raises(CorruptionError) as e:
                do()
            assert str(vec) in str(e.value)
            assert "checksum" in str(e.value)
    finally:
        s.close()


def test_corruption_stays_detected_after_more_writes(built):
    path, live = built
    vec = path / "vectors-0.f32"
    flip(vec, 10 * DIM * 4 + 3)  # row 10
    with EmbeddedVectorStore.open(path) as s:
        s.add(make_nodes(5, seed=9, prefix="x"))  # appending does not read old rows
        with pytest.raises(CorruptionError):
            s.get(["x1"])
        with pytest.raises(CorruptionError):
            s.query(VectorStoreQuery(query_embedding=live["n1"].embedding, exact=True))
    with EmbeddedVectorStore.open(path, read_only=True) as r, pytest.raises(CorruptionError):
        r.get(["n10"])


def test_damage_in_a_later_segment_names_its_rows(tmp_path):
    path = tmp_path / "kb"
    n, dim = 70_000, 2  # more than one 65,536-row checksum segment
    vecs = np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32)
    with EmbeddedVectorStore.open(path, dim=dim) as s:
        s.add_arrays([f"v{i}" for i in range(n)], vecs)
    vec = path / "vectors-0.f32"
    flip(vec, 68_000 * dim * 4)
    with EmbeddedVectorStore.open(path, read_only=True) as r:
        with pytest.raises(CorruptionError) as e:
            r.get(["v5"])  # any use of the vectors verifies all of them first
        assert str(vec) in str(e.value) and "65536" in str(e.value)


@pytest.mark.parametrize("damage", ["half", "one-byte-short", "empty", "deleted"])
@pytest.mark.parametrize("read_only", [False, True])
def test_truncated_vector_file_raises_corruption_error_naming_the_file(built, damage, read_only):
    path, live = built
    vec = path / "vectors-0.f32"
    size = vec.stat().st_size
    if damage == "deleted":
        vec.unlink()
    else:
        with open(vec, "r+b") as f:
            f.truncate({"half": size // 2, "one-byte-short": size - 1, "empty": 0}[damage])
    with pytest.raises(CorruptionError) as e:
        s = EmbeddedVectorStore.open(path, read_only=read_only)
        try:
            s.get(["n1"])
        finally:
            s.close()
    assert str(vec) in str(e.value)
    with pytest.raises(CorruptionError):
        s = EmbeddedVectorStore.open(path, read_only=read_only)
        try:
            s.query(VectorStoreQuery(query_embedding=live["n1"].embedding, similarity_top_k=2))
        finally:
            s.close()


def test_truncated_vector_file_is_not_papered_over_by_a_later_add(built):
    """An append re-extends the file (with zeros where rows are missing): reads must still fail."""
    path, live = built
    vec = path / "vectors-0.f32"
    with open(vec, "r+b") as f:
        f.truncate(vec.stat().st_size // 2)
    with EmbeddedVectorStore.open(path) as s:
        with contextlib.suppress(CorruptionError):  # refusing the write is fine too
            s.add(make_nodes(3, seed=5, prefix="x"))
        with pytest.raises(CorruptionError):
            s.get(["n200"])
    with EmbeddedVectorStore.open(path, read_only=True) as r, pytest.raises(CorruptionError):
        r.query(VectorStoreQuery(query_embedding=live["n200"].embedding, exact=True))


# ----------------------------------------------------------------------------- damaged caches


def _answers(s: EmbeddedVectorStore, live: dict[str, Node]) -> tuple:
    """Everything the caches feed: filters (metadata columns), BM25, and the ANN index."""
    ids = sorted(live)
    out = [s.count()]
    for k in ids[::37]:
        q = live[k].embedding
        r = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, exact=True))
        out.append((r.ids, np.round(r.similarities, 5).tolist()))
        r = s.query(
            VectorStoreQuery(
                query_embedding=q,
                similarity_top_k=400,
                exact=True,
                filters={"$or": [{"par": 1}, {"tag": {"$in": ["g2", "g3"]}}]},
            )
        )
        out.append(sorted(r.ids))
        r = s.query(VectorStoreQuery(query_str=f"tok{k} dogs", mode="sparse", similarity_top_k=5))
        out.append((r.ids, np.round(r.similarities, 4).tolist()))
        r = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=1))  # through the ANN index
        out.append(r.ids)
    return tuple(map(str, out))


CACHE_DAMAGE = {
    "header-byte": lambda p: flip(p, 24),
    "middle-byte": lambda p: flip(p, p.stat().st_size // 2),
    "last-byte": lambda p: flip(p, p.stat().st_size - 1),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(np.random.default_rng(3).bytes(p.stat().st_size)),
}


@pytest.fixture(scope="module")
def cached_store(tmp_path_factory):
    """A closed store whose cache/ holds columns, bm25 and hnsw files, and its correct answers."""
    path = tmp_path_factory.mktemp("cache") / "kb"
    nodes = make_nodes(600, seed=2)
    with EmbeddedVectorStore.open(path, dim=DIM, ann_threshold=300) as s:
        s.add(nodes[:400])
        s.delete(["n3", "n4"])
        s.add(nodes[400:])
        s.add(
            [
                Node(
                    id="n5",
                    text="replaced tokn5 dogs",
                    metadata={"i": 5, "par": 1, "tag": "g2"},
                    embedding=nodes[5].embedding * -1,
                )
            ]
        )
        s.build_index()
        live = {n.id: n for n in nodes if n.id not in ("n3", "n4", "n5")}
        live["n5"] = s.get(["n5"])[0]
        answers = _answers(s, live)
        s.checkpoint()
    assert sorted(p.name for p in (path / "cache").glob("*.kvg")) == ["bm25.kvg", "columns.kvg", "hnsw.kvg", "ids.kvg"]
    with EmbeddedVectorStore.open(path, read_only=True, ann_threshold=300) as r:
        assert _answers(r, live) == answers  # the caches as written give the same answers
    return path, live, answers


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
@pytest.mark.parametrize("cache", ["columns", "bm25", "hnsw", "ids"])
def test_damaged_cache_is_rebuilt_and_answers_stay_correct(cached_store, tmp_path, cache, damage):
    src, live, answers = cached_store
    path = tmp_path / "kb"
    shutil.copytree(src, path)
    target = path / "cache" / f"{cache}.kvg"
    CACHE_DAMAGE[damage](target)
    with pytest.raises(CorruptionError):
        read_arrays(target)  # really damaged
    with EmbeddedVectorStore.open(path, read_only=True, ann_threshold=300) as r:
        assert _answers(r, live) == answers
    with EmbeddedVectorStore.open(path, ann_threshold=300) as w:
        assert _answers(w, live) == answers
        w.wait_for_index(120)
    # the writer's close rewrote the cache, valid and complete again
    _, meta = read_arrays(target)
    assert meta["n"] == 601 and meta["epoch"] == "vectors-0.f32"
    with EmbeddedVectorStore.open(path, read_only=True, ann_threshold=300) as r:
        assert _answers(r, live) == answers


def test_stale_and_foreign_caches_are_not_trusted(cached_store, tmp_path):
    src, live, answers = cached_store
    # caches written when the store held fewer rows are valid for those rows: the rest is added
    old = tmp_path / "old"
    with EmbeddedVectorStore.open(old, dim=DIM) as s:
        s.add(make_nodes(600, seed=2)[:400])
        s.delete(["n3", "n4"])
        s.query(VectorStoreQuery(query_embedding=np.ones(DIM), filters={"par": 1}))
        s.query(VectorStoreQuery(query_str="cats", mode="sparse"))
        s.checkpoint()
    path = tmp_path / "kb"
    shutil.copytree(src, path)
    for name in ("columns", "bm25"):
        shutil.copy(old / "cache" / f"{name}.kvg", path / "cache" / f"{name}.kvg")
    with EmbeddedVectorStore.open(path, read_only=True, ann_threshold=300) as r:
        assert _answers(r, live) == answers
    # caches of a different vector-file epoch (after a vacuum) are ignored
    vac = tmp_path / "vac"
    shutil.copytree(src, vac)
    with EmbeddedVectorStore.open(vac, ann_threshold=300) as s:
        s.vacuum()
        s.build_index()
        s.query(VectorStoreQuery(query_embedding=np.ones(DIM), filters={"par": 1}))
        s.query(VectorStoreQuery(query_str="cats", mode="sparse"))
        s.checkpoint()
    path2 = tmp_path / "kb2"
    shutil.copytree(src, path2)
    for name in ("columns", "bm25", "hnsw", "ids"):
        shutil.copy(vac / "cache" / f"{name}.kvg", path2 / "cache" / f"{name}.kvg")
    with EmbeddedVectorStore.open(path2, read_only=True, ann_threshold=300) as r:
        assert _answers(r, live) == answers


# ----------------------------------------------------------------------------- damaged records


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(1).bytes(p.stat().st_size))


def _zeros(p: Path) -> None:
    p.write_bytes(bytes(p.stat().st_size))


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _pages(p: Path) -> None:
    """Header and first page intact, every later page overwritten."""
    b = bytearray(p.read_bytes())
    b[8192:] = np.random.default_rng(2).bytes(len(b) - 8192)
    p.write_bytes(bytes(b))


def _rows(p: Path) -> None:
    """A stretch of 0xFF in every third page from the third on (b-tree cells damaged)."""
    b = bytearray(p.read_bytes())
    for page in range(2, len(b) // 4096, 3):
        b[page * 4096 + 100 : page * 4096 + 200] = b"\xff" * 100
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_garbage, id="garbage"),
        pytest.param(_zeros, id="zeros"),
        pytest.param(_truncated, id="truncated"),
        pytest.param(_pages, id="pages"),
        pytest.param(_rows, id="rows"),
    ],
)
def test_damaged_records_raise_corruption_error_naming_records_sqlite(tmp_path, damage, read_only):
    path = tmp_path / "kb"
    nodes = make_nodes(3000, dim=4)
    with EmbeddedVectorStore.open(path, dim=4) as s:
        s.add(nodes)
    records = path / "records.sqlite"
    assert not Path(f"{records}-wal").exists() or Path(f"{records}-wal").stat().st_size == 0
    damage(records)
    failures = []
    open_failed = False
    try:
        s = EmbeddedVectorStore.open(path, read_only=read_only)
    except Exception as e:
        failures.append(e)
        open_failed = True
    else:
        try:
            q = nodes[9].embedding
            for call in (
                lambda: s.get([n.id for n in nodes[::7]]),
                lambda: s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3)),
                lambda: s.query(VectorStoreQuery(query_embedding=q, filters={"par": 1})),
                lambda: s.query(VectorStoreQuery(query_str="cats", mode="sparse")),
            ):
                try:
                    call()
                except Exception as e:
                    failures.append(e)
        finally:
            try:
                s.close()
            except Exception as e:
                failures.append(e)
    assert failures, "a damaged records database was read without any error"
    for e in failures:
        assert isinstance(e, KvgraphError), f"{type(e).__module__}.{type(e).__name__}: {e}"
        assert "records.sqlite" in str(e), str(e)
    # a failed writer open must not keep the lock: trying again gives the same error, not StoreLockedError
    if open_failed and not read_only:
        with pytest.raises(KvgraphError) as again:
            EmbeddedVectorStore.open(path).close()
        assert "records.sqlite" in str(again.value)


# ----------------------------------------------------------------------------- rejected input


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "kb"
    s = EmbeddedVectorStore.open(path, dim=12)
    s.add(make_nodes(20, dim=12, prefix="e"))
    yield s, path
    s.close()


def _state(s: EmbeddedVectorStore, path: Path) -> tuple:
    ids = [f"e{i}" for i in range(20)] + ["g1", "g2", "bad", "zzz"]
    got = s.get(ids)
    return (
        s.count(),
        s.stats()["generation"],
        (path / "vectors-0.f32").stat().st_size,
        [
            None if n is None else (n.id, n.text, n.metadata, n.ref_doc_id, np.round(n.embedding, 5).tolist())
            for n in got
        ],
        s.query(VectorStoreQuery(query_embedding=np.ones(12), similarity_top_k=30, filters={"par": 1})).ids,
    )


def _good(i: str, dim: int = 12) -> Node:
    return Node(
        id=i,
        text=f"good {i}",
        metadata={"par": 1},
        embedding=np.random.default_rng(len(i)).normal(size=dim).astype(np.float32),
    )


def _bad(**kw) -> Node:
    base = {
        "id": "bad",
        "text": "bad node",
        "metadata": {"par": 1},
        "embedding": np.random.default_rng(99).normal(size=12).astype(np.float32),
    }
    base.update(kw)
    return Node(**base)


def _vec(*vals: float) -> np.ndarray:
    v = np.random.default_rng(5).normal(size=12).astype(np.float32)
    v[: len(vals)] = vals
    return v


BAD_NODES = {
    "nan": _bad(embedding=_vec(math.nan)),
    "inf": _bad(embedding=_vec(math.inf)),
    "-inf": _bad(embedding=_vec(1.0, -math.inf)),
    "zero-vector": _bad(embedding=np.zeros(12, np.float32)),
    "ragged-dim": _bad(embedding=np.ones(7, np.float32)),
    "2d-embedding": _bad(embedding=np.ones((2, 12), np.float32)),
    "no-embedding": _bad(embedding=None),
    "text-embedding": _bad(embedding=["a"] * 12),
    "empty-id": _bad(id=""),
    "int-id": _bad(id=123),
    "none-id": _bad(id=None),
    "bytes-id": _bad(id=b"bad"),
    "duplicate-id": _bad(id="g1"),
    "metadata-set": _bad(metadata={"k": {1, 2}}),
    "metadata-nested-dict": _bad(metadata={"k": {"a": 1}}),
    "metadata-datetime": _bad(metadata={"k": dt.datetime(2024, 1, 1)}),
    "metadata-nan": _bad(metadata={"k": float("nan")}),
    "metadata-inf": _bad(metadata={"k": float("inf")}),
    "metadata-list-of-dicts": _bad(metadata={"k": [{"a": 1}]}),
    "metadata-int-key": _bad(metadata={1: "a"}),
    "metadata-not-a-dict": _bad(metadata=[("k", 1)]),
    "metadata-bytes": _bad(metadata={"k": b"x"}),
    "text-bytes": _bad(text=b"bytes"),
    "ref-doc-int": _bad(ref_doc_id=7),
    "relationships-set": _bad(relationships={"next": {"a", "b"}}),
}


@pytest.mark.parametrize("case", sorted(BAD_NODES))
def test_rejected_node_leaves_the_store_unchanged(small, case):
    s, path = small
    before = _state(s, path)
    changed = Node(id="e0", text="changed", metadata={"par": 1}, embedding=np.ones(12, np.float32))
    with pytest.raises(InvalidInputError):
        s.add([_good("g1"), changed, BAD_NODES[case]])  # good new node, upsert, then the bad one
    assert _state(s, path) == before
    # a following valid add works
    s.add([_good("g1"), changed])
    assert s.count() == 21
    g1, e0 = s.get(["g1", "e0"])
    assert g1.text == "good g1" and e0.text == "changed"
    assert np.allclose(e0.embedding, np.ones(12), atol=1e-5)


def test_wrong_dimension_names_expected_and_got(small):
    s, path = small
    before = _state(s, path)
    batch = [_good("g1", dim=7), _good("g2", dim=7)]
    with pytest.raises(DimensionMismatchError) as e:
        s.add(batch)
    msg = str(e.value)
    assert re.search(r"\b12\b", msg) and re.search(r"\b7\b", msg), msg
    assert (e.value.expected, e.value.got) == (12, 7)
    with pytest.raises(DimensionMismatchError) as e:
        s.add_arrays(["g1"], np.ones((1, 13), np.float32))
    assert re.search(r"\b12\b", str(e.value)) and re.search(r"\b13\b", str(e.value))
    with pytest.raises(DimensionMismatchError) as e:
        s.query(VectorStoreQuery(query_embedding=np.ones(5)))
    assert re.search(r"\b12\b", str(e.value)) and re.search(r"\b5\b", str(e.value))
    assert _state(s, path) == before
    s.add([_good("g1")])
    assert s.count() == 21


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"texts": ["a"]}, id="texts-too-short"),
        pytest.param({"metadatas": [{}] * 5}, id="metadatas-too-long"),
        pytest.param({"embeddings": np.ones((3, 12), np.float32)}, id="too-many-rows"),
        pytest.param({"embeddings": np.ones((2, 12), np.complex64)}, id="complex"),
        pytest.param({"embeddings": np.array([["x"] * 12] * 2)}, id="strings"),
        pytest.param({"ids": ["g1", "g1"]}, id="duplicate"),
        pytest.param({"ids": ["g1", 5]}, id="int-id"),
        pytest.param({"ref_doc_ids": ["d", 3]}, id="ref-doc-int"),
    ],
)
def test_rejected_add_arrays_leaves_the_store_unchanged(small, kwargs):
    s, path = small
    before = _state(s, path)
    args = {"ids": ["g1", "g2"], "embeddings": np.random.default_rng(1).normal(size=(2, 12)).astype(np.float32)}
    args.update(kwargs)
    with pytest.raises(InvalidInputError):
        s.add_arrays(**args)
    assert _state(s, path) == before
    s.add_arrays(["g1", "g2"], np.ones((2, 12), np.float32))
    assert s.count() == 22


@pytest.mark.parametrize("k", [0, -1, -100, 1.5, 2.0, "3", None, True, False])
@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid", "mmr"])
def test_bad_top_k_raises_invalid_input(small, k, mode):
    s, _ = small
    q = VectorStoreQuery(query_embedding=np.ones(12), query_str="good", mode=mode, similarity_top_k=k)
    with pytest.raises(InvalidInputError):
        s.query(q)


@pytest.mark.parametrize("k", [0, -1, 1.5, "3", None])
def test_bad_top_k_raises_invalid_input_in_query_batch(small, k):
    s, _ = small
    with pytest.raises(InvalidInputError):
        s.query_batch(np.ones((2, 12), np.float32), similarity_top_k=k)


def test_bool_top_k_is_rejected_by_query_batch_too(small):
    s, _ = small
    with pytest.raises(InvalidInputError):
        s.query_batch(np.ones((2, 12), np.float32), similarity_top_k=True)
