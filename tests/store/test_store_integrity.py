"""Checksums over node records, scans that name every damaged row, lost records, and a full disk.

Real stores on disk, damaged by flipping bytes in their files; the full disk is a real file-size
limit (RLIMIT_FSIZE) in a child process, so every write path meets a refused write.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kvgraph.errors import CorruptionError, InvalidInputError
from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

DIM = 8


def make_nodes(n: int, prefix: str = "n", seed: int = 0, doc: str = "doc") -> list[Node]:
    vecs = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return [
        Node(
            id=f"{prefix}{i}",
            text=f"chunk {i} of {prefix} word{prefix}{i:03d}x",
            metadata={"i": i, "mark": f"m{prefix}{i:03d}q"},
            embedding=vecs[i],
            ref_doc_id=f"{doc}{i % 4}",
        )
        for i in range(n)
    ]


def flip_text(path: Path, needle: bytes, at: int = 0) -> None:
    """Change one letter of ``needle``, which must appear exactly once in the file."""
    data = bytearray(path.read_bytes())
    assert data.count(needle) == 1, needle
    data[data.find(needle) + at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    with EmbeddedVectorStore.open(path, dim=DIM) as s:
        s.add(make_nodes(40))
    return path


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("what", ["text", "metadata"])
def test_a_flipped_letter_in_a_record_is_refused_and_named(store_path: Path, read_only: bool, what: str) -> None:
    needle = b"wordn017x" if what == "text" else b"mn017q"
    flip_text(store_path / "records.sqlite", needle, at=2)
    nodes = {n.id: n for n in make_nodes(40)}
    with EmbeddedVectorStore.open(store_path, read_only=read_only) as s:
        with pytest.raises(CorruptionError) as e:
            s.get(["n17"])
        assert "records.sqlite" in str(e.value) and "'n17'" in str(e.value) and "repair" in str(e.value)
        hit = s.query(VectorStoreQuery(query_embedding=nodes["n17"].embedding, similarity_top_k=3))
        assert hit.ids[0] == "n17"  # ids and scores come from the vectors, which are intact
        with pytest.raises(CorruptionError, match="n17"):
            hit.nodes  # noqa: B018 - the damaged text is never handed out
        other = s.query(VectorStoreQuery(query_embedding=nodes["n3"].embedding, similarity_top_k=1))
        assert other.nodes[0].text == nodes["n3"].text  # the rest reads as before
        damage = s.scan()
        assert damage.damaged_nodes == {"n17": "doc1"} and damage.documents == {"doc1"}
        assert damage.records == 40 and not damage.unchecked
        with pytest.raises(CorruptionError, match="n17"):
            s.verify()


def test_results_waiting_for_their_nodes_do_not_stop_a_write(store_path: Path) -> None:
    """A writer builds pending results before it commits; a damaged row fails that result, not the write."""
    flip_text(store_path / "records.sqlite", b"wordn005x", at=1)
    q = make_nodes(40)[5].embedding
    with EmbeddedVectorStore.open(store_path) as s:
        pending = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=2))
        s.add(make_nodes(3, prefix="x", seed=4))
        with pytest.raises(CorruptionError, match="n5"):
            pending.nodes  # noqa: B018
        assert s.count() == 43


def test_damaged_vector_rows_name_their_documents_and_repair_purges_them(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with EmbeddedVectorStore.open(path, dim=DIM) as s:
        s.add(make_nodes(20, prefix="a", doc="A"))  # rows 0..19: one checksum segment
        s.add(make_nodes(20, prefix="b", seed=1, doc="B"))  # rows 20..39: another
    vec = next(path.glob("vectors-*.f32"))
    data = bytearray(vec.read_bytes())
    data[5 * DIM * 4 + 1] ^= 0xFF  # a byte of row 5 (node a5)
    vec.write_bytes(bytes(data))
    with EmbeddedVectorStore.open(path) as s:
        damage = s.scan()
        assert damage.vector_segments == [(0, 20)]
        assert damage.documents == {"A0", "A1", "A2", "A3"}  # every node whose row is in the segment
        with pytest.raises(CorruptionError, match=r"rows 0\.\.19"):
            s.verify()
        for doc in sorted(damage.documents):
            s.delete_ref_doc(doc)
        assert s.vacuum() == {"removed_rows": 20, "rows": 20}  # the damaged rows were dead: purged
        assert s.verify()["vector_rows"] == 20 and s.scan().ok
        b = make_nodes(20, prefix="b", seed=1)
        got = s.get(["b7"])[0]
        assert got is not None and np.allclose(got.embedding, b[7].embedding, atol=1e-5)


def test_a_store_from_before_record_checksums_opens_and_is_upgraded(store_path: Path) -> None:
    db = sqlite3.connect(store_path / "records.sqlite")
    db.execute("ALTER TABLE nodes DROP COLUMN crc")
    db.commit()
    db.close()
    with EmbeddedVectorStore.open(store_path, read_only=True) as r:
        assert r.get(["n2"])[0].text == make_nodes(40)[2].text
        assert r.scan().unchecked == 40
    with EmbeddedVectorStore.open(store_path) as s:  # a writer adds the column; new rows are checked
        s.add(make_nodes(5, prefix="new", seed=3))
        damage = s.scan()
        assert damage.ok and damage.records == 45 and damage.unchecked == 40
        assert s.verify()["unchecked_records"] == 40
    flip_text(store_path / "records.sqlite", b"wordnew003x", at=3)
    with EmbeddedVectorStore.open(store_path, read_only=True) as r:
        assert r.scan().damaged_nodes == {"new3": "doc3"}


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_lost_records_beside_vectors_are_an_error_not_an_empty_store(
    store_path: Path, read_only: bool, how: str
) -> None:
    records = store_path / "records.sqlite"
    if how == "emptied":
        records.write_bytes(b"")
    else:
        records.unlink()
    for side in ("records.sqlite-wal", "records.sqlite-shm"):
        (store_path / side).unlink(missing_ok=True)
    with pytest.raises(CorruptionError) as e:
        EmbeddedVectorStore.open(store_path, read_only=read_only)
    assert str(records) in str(e.value) and "lost" in str(e.value) and "repair" in str(e.value)
    assert next(store_path.glob("vectors-*.f32")).stat().st_size == 40 * DIM * 4  # nothing was cut


def test_an_empty_records_file_without_vectors_is_just_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.mkdir()
    (path / "records.sqlite").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="no kvgraph store"):
        EmbeddedVectorStore.open(path, read_only=True)
    with EmbeddedVectorStore.open(path, dim=DIM) as s:
        s.add(make_nodes(2))
        assert s.count() == 2


# ----------------------------------------------------------------------------- a full disk

CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import numpy as np
    from kvgraph.errors import KvgraphError
    from kvgraph.store import EmbeddedVectorStore
    path, limit, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    s = EmbeddedVectorStore.open(path)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    vecs = np.random.default_rng(7).normal(size=(n, s.dim)).astype(np.float32)
    out = {}
    try:
        s.add_arrays([f"f{i}" for i in range(n)], vecs, texts=[f"full {i}" for i in range(n)])
        out["added"] = True
    except KvgraphError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    try:
        s.close()  # caches may not fit either: closing must still succeed
        out["closed"] = True
    except KvgraphError as e:
        out["close_error"] = str(e)
    print(json.dumps(out))
    """
)


def test_a_full_disk_fails_the_write_with_one_error_and_loses_nothing(tmp_path: Path) -> None:
    """The limit lands inside the vector append (a short write, then EFBIG), the records commit, or the caches."""
    dim, n = 64, 2000
    base = tmp_path / "base"
    with EmbeddedVectorStore.open(base, dim=dim) as s:
        vecs = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
        s.add_arrays([f"n{i}" for i in range(n)], vecs, texts=[f"chunk {i}" for i in range(n)])
        s.checkpoint()
    vector_bytes = next(base.glob("vectors-*.f32")).stat().st_size
    assert vector_bytes == max(p.stat().st_size for p in base.rglob("*") if p.is_file())
    outcomes = set()
    for extra in (0, 1_000, 100_000, 300_000, 600_000, 2_000_000):  # the append needs 512,000 bytes
        path = tmp_path / f"s{extra}"
        subprocess.run(["cp", "-a", str(base), str(path)], check=True)
        run = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(vector_bytes + extra), str(n)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        out = json.loads(run.stdout)
        assert out.get("closed"), out
        with EmbeddedVectorStore.open(path, read_only=True) as r:
            assert r.verify()["vector_rows"] >= n  # intact, whatever happened
            count = r.count()
        if "error" in out:
            assert out["error"].startswith("DiskFullError:") and "no space left" in out["error"], out
            assert count == n  # all or nothing
            outcomes.add(out["error"].split(":")[1].strip().rsplit("/", 1)[-1])
        else:
            assert count == 2 * n
            outcomes.add("added")
        with EmbeddedVectorStore.open(path) as s:  # with room again, the same write goes through
            s.add_arrays(["after"], np.ones((1, dim), np.float32))
            assert s.count() == count + 1
    assert {"vectors-0.f32", "added"} <= outcomes, outcomes


def test_unparsable_metadata_in_an_unchecked_row_is_named_not_a_traceback(store_path: Path) -> None:
    db = sqlite3.connect(store_path / "records.sqlite")
    db.execute("ALTER TABLE nodes DROP COLUMN crc")  # rows from before checksums: nothing to check them with
    db.commit()
    db.close()
    flip_text(store_path / "records.sqlite", b'"mn021q"}', at=8)  # the closing brace: no longer JSON
    with EmbeddedVectorStore.open(store_path, read_only=True) as r:
        hits = r.query(VectorStoreQuery(query_str="wordn021x", mode="sparse", similarity_top_k=1))
        assert hits.ids == ["n21"]  # the text index still finds it
        with pytest.raises(CorruptionError, match="n21"):
            hits.nodes  # noqa: B018
        ok = r.query(VectorStoreQuery(query_embedding=make_nodes(40)[2].embedding, filters={"i": 2}))
        assert [n.id for n in ok.nodes] == ["n2"]  # filters over the other rows still work
