"""Nothing lost silently: the registry and the store cross-checked, damage named by check, fixed by repair.

Real knowledge bases on disk with real files, damaged the way disks and people damage them
(a deleted folder, an emptied or garbled database, a flipped letter). Plumbing tests use the
hashing embedder (``KVGRAPH_EMBEDDER=hashing``: instant, deterministic).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kbdocs import make_docs
from kvgraph.embed.cache import CachedEmbedder, EmbeddingCache, text_key
from kvgraph.embed.hashing import HashingEmbedder
from kvgraph.errors import CorruptionError, InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document


@pytest.fixture(autouse=True)
def hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVGRAPH_EMBEDDER", "hashing")


@pytest.fixture
def kb_path(tmp_path: Path) -> Path:
    """A knowledge base holding the four kbdocs files and one document added through the API."""
    docs = make_docs(tmp_path)
    path = tmp_path / "kb"
    with KnowledgeBase.open(path) as kb:
        report = kb.ingest([docs])
        assert report.files_ingested == 4 and not report.warnings
        kb.add_documents([Document(id="api-note", text="The lighthouse keeper logs every passing ship by name.")])
    return path


def flip_letter(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    assert data.count(needle) == 1, needle
    data[data.find(needle) + 1] ^= 0x01
    path.write_bytes(bytes(data))


def texts(kb: KnowledgeBase) -> set[str]:
    return {n.text for n in kb.store.get(kb.store.ids()) if n is not None}


def test_a_deleted_store_is_ingested_again_with_a_warning(kb_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        before = texts(kb)
    shutil.rmtree(kb_path / "store")
    with pytest.raises(CorruptionError, match="registry lists ingested files: run kvgraph sync"):
        KnowledgeBase.open(kb_path, read_only=True)  # a search says what happened, not "nothing ingested"
    with caplog.at_level(logging.WARNING), KnowledgeBase.open(kb_path) as kb:
        assert not kb.check().ok
        report = kb.ingest([kb_path.parent / "docs"])
        assert report.files_restored == 4 and report.files_ingested == 4
        assert any("missing" in w and "compost.md" in w for w in report.warnings)
        assert any("api-note" in w and "again" in w for w in report.warnings)  # cannot come back: said so
        assert texts(kb) == {t for t in before if "lighthouse" not in t}
        assert kb.check().ok  # the lost API document was forgotten, so nothing is missing any more
    assert any("missing" in r.getMessage() for r in caplog.records)


def test_a_reader_is_warned_when_chunks_are_missing(kb_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with KnowledgeBase.open(kb_path) as kb:
        doc = next(d for d in kb.store.doc_counts() if d.endswith("tower.txt"))
        kb.store.delete_ref_doc(doc)  # behind the registry's back, as a damaged store would lose it
    with caplog.at_level(logging.WARNING), KnowledgeBase.open(kb_path, read_only=True) as kb:
        kb.search("Eiffel", k=1, mode="sparse")
    assert any("tower.txt" in r.getMessage() and "missing" in r.getMessage() for r in caplog.records)
    with KnowledgeBase.open(kb_path) as kb:
        report = kb.sync()
        assert report.files_restored == 1 and kb.search("Eiffel", k=1, mode="sparse")


def test_emptied_records_are_refused_named_and_repaired(kb_path: Path) -> None:
    (kb_path / "store" / "records.sqlite").write_bytes(b"")
    with KnowledgeBase.open(kb_path) as kb:  # opens: check and repair must be reachable
        with pytest.raises(CorruptionError) as e:
            kb.ingest([kb_path.parent / "docs"])
        assert "records.sqlite" in str(e.value) and "repair" in str(e.value)
        check = kb.check()
        assert not check.ok and any("records.sqlite" in p and "lost" in p for p in check.problems())
        repair = kb.repair()
        assert repair.ok, repair.remaining
        assert any("set aside" in a for a in repair.actions)
        assert any("api-note" in a for a in repair.actions)  # the API document could not come back
        hits = kb.search("How tall is the Eiffel Tower?", k=1, mode="sparse")
        assert "330 metres" in hits[0].node.text
    assert list(kb_path.glob("store.damaged-*"))  # kept, not deleted


def test_a_flipped_letter_is_named_by_check_and_repaired(kb_path: Path) -> None:
    flip_letter(kb_path / "store" / "records.sqlite", b"waggle dance")
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        with pytest.raises(CorruptionError, match="checksum"):
            [h.node for h in kb.search("waggle dance", k=1, mode="sparse")]
        problems = kb.check().problems()
    assert len(problems) == 1 and "node(s) damaged" in problems[0]
    with KnowledgeBase.open(kb_path) as kb:
        repair = kb.repair()
        assert repair.ok, repair.remaining
        assert any("bees.html" in a for a in repair.actions)
        assert "waggle dance" in kb.search("waggle dance", k=1, mode="sparse")[0].node.text
        assert kb.store.scan().ok and kb.check().ok


def test_sync_deletes_orphans_and_keeps_documents_added_through_the_api(kb_path: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text("Orphaned chunks float around like driftwood after a storm.\n")
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([extra])
        # a kill between the store's commit and the registry's: the store has the chunks, the registry not
        kb.registry.remove(str(extra.resolve()))
        kb.registry.remove_root(str(extra.resolve()))
    extra.unlink()  # and the file is gone before the next sync
    with KnowledgeBase.open(kb_path) as kb:
        assert any("orphan" in n for p in kb.check().parts for n in p.notes)
        report = kb.sync()
        assert report.orphans_removed == 1 and any("orphan" in w for w in report.warnings)
        assert not any("driftwood" in t for t in texts(kb))
        assert any("lighthouse" in t for t in texts(kb))  # an API document is no orphan
        assert kb.sync().orphans_removed == 0 and kb.check().ok


def test_a_document_deleted_by_id_stays_deleted(kb_path: Path) -> None:
    with KnowledgeBase.open(kb_path) as kb:
        # the registry's count covers files and API documents: what the cheap check on open compares
        assert kb.registry.documents() and kb.registry.node_total() == kb.store.count()
        section = next(d for d in kb.store.doc_counts() if "compost.md#section" in d)
        assert kb.delete(section) > 0
        assert kb.ingest([kb_path.parent / "docs"]).files_restored == 0
        assert kb.sync().files_restored == 0
        assert section not in kb.store.doc_counts() and kb.check().ok
        assert kb.delete("api-note") == 1 and "api-note" not in kb.registry.documents()


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_registry_is_rebuilt_from_the_store(kb_path: Path, how: str) -> None:
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        before = texts(kb)
    for name in ("documents.sqlite", "documents.sqlite-wal", "documents.sqlite-shm"):
        (kb_path / name).unlink(missing_ok=True)
    if how == "emptied":  # an empty file is no registry either: nothing may look like an orphan
        (kb_path / "documents.sqlite").write_bytes(b"")
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        assert any("documents.sqlite: missing or empty" in p for p in kb.check().problems())
    with KnowledgeBase.open(kb_path) as kb:
        assert len(kb.registry.all()) == 4 and "api-note" in kb.registry.documents()
        assert kb.check().ok
        report = kb.sync()  # each file is hashed again (its hash was lost); chunks come from the cache
        assert report.files_ingested == 4 and report.embedded == 0 and not report.orphans_removed
        assert texts(kb) == before


def test_a_registry_from_before_api_documents_adopts_them(kb_path: Path) -> None:
    db = sqlite3.connect(kb_path / "documents.sqlite")
    db.execute("DROP TABLE documents")
    db.commit()
    db.close()
    with KnowledgeBase.open(kb_path) as kb:
        assert kb.registry.documents() == {"api-note": 1}
        assert kb.sync().orphans_removed == 0 and any("lighthouse" in t for t in texts(kb))


def test_a_damaged_registry_is_one_error_and_repair_rebuilds_it(kb_path: Path) -> None:
    registry = kb_path / "documents.sqlite"
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        before = texts(kb)
    data = bytearray(registry.read_bytes())
    data[:100] = b"\x00" * 100  # the header: no longer a database
    registry.write_bytes(bytes(data))
    with KnowledgeBase.open(kb_path) as kb:
        with pytest.raises(CorruptionError) as e:
            kb.sync()
        assert str(registry) in str(e.value) and "repair" in str(e.value)
        assert any(p.part == "registry" and not p.ok for p in kb.check().parts)
        repair = kb.repair()
        assert repair.ok, repair.remaining
        assert len(kb.registry.all()) == 4 and texts(kb) == before
    assert list(kb_path.glob("documents.sqlite.damaged-*"))


def test_check_of_no_knowledge_base_is_an_error(tmp_path: Path) -> None:
    from kvgraph.kb.integrity import check_kb

    with pytest.raises(InvalidInputError, match="no knowledge base"):
        check_kb(tmp_path / "nothing")


# ----------------------------------------------------------------------------- the embedding cache


def test_a_rotten_cached_embedding_is_never_reused(tmp_path: Path) -> None:
    inner = HashingEmbedder(64)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    texts_ = ["harbor lights at dusk", "copper kettles", "violet meadow signals"]
    CachedEmbedder(inner, cache).embed(texts_)
    cache.close()
    good = inner.embed(texts_)
    # a bit flips inside the middle vector's bytes on disk
    path = tmp_path / "cache.sqlite"
    data = bytearray(path.read_bytes())
    at = data.find(good[1].tobytes())
    assert at >= 0
    data[at + 17] ^= 0x40
    path.write_bytes(bytes(data))
    cache = EmbeddingCache(path)
    emb = CachedEmbedder(inner, cache)
    out = emb.embed(texts_)
    np.testing.assert_array_equal(out, good)  # recomputed, not the damaged copy
    assert (emb.hits, emb.misses, cache.rejected) == (2, 1, 1)
    assert cache.check()["damaged"] == 0  # the row was replaced by the recomputed vector


def test_cached_embeddings_without_checksums_are_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path)
    db.execute(  # the table as versions before checksums made it
        "CREATE TABLE embeddings (model TEXT NOT NULL, key BLOB NOT NULL, vec BLOB NOT NULL,"
        " PRIMARY KEY (model, key)) WITHOUT ROWID"
    )
    wrong = np.ones(64, np.float32)
    db.execute("INSERT INTO embeddings VALUES (?, ?, ?)", ("hashing-64", text_key("old text"), wrong.tobytes()))
    db.commit()
    db.close()
    cache = EmbeddingCache(path)
    assert cache.check()["unchecked"] == 1
    out = CachedEmbedder(HashingEmbedder(64), cache).embed(["old text"])
    np.testing.assert_array_equal(out[0], HashingEmbedder(64).embed(["old text"])[0])
    assert cache.check() == {"rows": 1, "damaged": 0, "unchecked": 0, "sqlite": [], "dropped": 0}


def test_an_unreadable_cache_is_reported_and_set_aside(kb_path: Path) -> None:
    (kb_path / "embed-cache.sqlite").write_bytes(b"this is not a database" * 100)  # as a cut-short re-embed may leave
    for side in ("embed-cache.sqlite-wal", "embed-cache.sqlite-shm"):
        (kb_path / side).unlink(missing_ok=True)
    with KnowledgeBase.open(kb_path) as kb:
        check = kb.check()
        assert [p.part for p in check.parts if not p.ok] == ["embedding cache"]
        repair = kb.repair()
        assert repair.ok and any("embed-cache.sqlite" in a and "set aside" in a for a in repair.actions)
        assert kb.check().ok


def test_an_ingest_removes_an_older_versions_embedding_cache_and_keeps_this_versions(kb_path: Path) -> None:
    legacy = kb_path / "embed-cache.sqlite"
    db = sqlite3.connect(legacy)  # as versions before 2026-12 made it: every chunk's vector, no user_version
    db.execute(
        "CREATE TABLE embeddings (model TEXT NOT NULL, key BLOB NOT NULL, vec BLOB NOT NULL, crc INTEGER,"
        " PRIMARY KEY (model, key)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO embeddings VALUES ('m', x'00', x'0000803f', 0)")
    db.commit()
    db.close()
    (kb_path.parent / "docs" / "tower.txt").write_text("The Eiffel Tower is repainted every seven years.\n")
    with KnowledgeBase.open(kb_path) as kb:
        report = kb.ingest([kb_path.parent / "docs"])
        assert (report.files_ingested, report.embedded) == (1, 1)
        assert "Eiffel" in kb.search("When is the Eiffel Tower repainted?", k=1)[0].node.text
        assert kb.check().ok
    assert not legacy.exists()  # the store serves unchanged chunks now
    # this version's cache (a re-embed cut short, node references' sentences) stays
    cache = EmbeddingCache(legacy)
    CachedEmbedder(HashingEmbedder(16), cache).embed(["a sentence a re-embed computed"])
    cache.close()
    (kb_path.parent / "docs" / "tower.txt").write_text("The Eiffel Tower is repainted every seven years by hand.\n")
    with KnowledgeBase.open(kb_path) as kb:
        assert kb.ingest([kb_path.parent / "docs"]).files_ingested == 1
    assert EmbeddingCache(legacy, read_only=True).count() == 1


def test_an_unreadable_cache_never_fails_an_ingest(kb_path: Path) -> None:
    (kb_path / "embed-cache.sqlite").write_bytes(b"this is not a database" * 100)
    (kb_path.parent / "docs" / "tower.txt").write_text("The Eiffel Tower is repainted every seven years.\n")
    with KnowledgeBase.open(kb_path) as kb:
        assert kb.ingest([kb_path.parent / "docs"]).files_ingested == 1
        assert [p.part for p in kb.check().parts if not p.ok] == ["embedding cache"]  # kept, and reported
        assert kb.repair().ok and kb.check().ok


# ----------------------------------------------------------------------------- the document graph


def middle_of_largest_member(npz: Path) -> int:
    """The file offset of the middle byte of the largest array stored in an .npz."""
    with zipfile.ZipFile(npz) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(npz, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len + info.compress_size // 2


def test_a_damaged_document_graph_is_one_error_and_repair_rebuilds_it(kb_path: Path) -> None:
    with KnowledgeBase.open(kb_path) as kb:
        kb.graph.build()
        want = [h.node.id for h in kb.search("Eiffel Tower height", k=2, mode="graph")]
    npz = kb_path / "doc-graph" / "graph.npz"
    data = bytearray(npz.read_bytes())
    data[middle_of_largest_member(npz)] ^= 0xFF  # a byte of stored data, not of a zip header's padding
    npz.write_bytes(bytes(data))
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        with pytest.raises(InvalidInputError) as e:
            kb.search("Eiffel Tower height", k=2, mode="graph")
        assert "doc-graph" in str(e.value) and "damaged" in str(e.value) and "repair" in str(e.value)
        assert [p.part for p in kb.check().parts if not p.ok] == ["document graph"]
    with KnowledgeBase.open(kb_path) as kb:
        repair = kb.repair()
        assert repair.ok, repair.remaining
        assert [h.node.id for h in kb.search("Eiffel Tower height", k=2, mode="graph")] == want


def test_a_damaged_registry_record_is_named_and_repaired(kb_path: Path) -> None:
    db = sqlite3.connect(kb_path / "documents.sqlite")
    db.execute("UPDATE files SET doc_ids = '[\"' WHERE path LIKE '%tower.txt'")  # a record that no longer decodes
    db.commit()
    db.close()
    with KnowledgeBase.open(kb_path) as kb:
        with pytest.raises(CorruptionError, match="repair"):
            kb.sync()
        assert any(p.part == "registry" and not p.ok for p in kb.check().parts)
        repair = kb.repair()
        assert repair.ok, repair.remaining
        assert len(kb.registry.all()) == 4 and kb.sync().files_removed == 0
