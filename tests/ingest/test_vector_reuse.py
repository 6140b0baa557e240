"""The store is the embedding cache: an ingest embeds only texts whose vectors it does not hold.

Real model, real files, real store: a changed file keeps its unchanged chunks' vectors byte for
byte, a changed context header is embedded again, and a file a sync finds moved is not embedded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document

PARAGRAPHS = [
    "The lighthouse on the northern cape was built in 1874 from granite quarried on the island.",
    "Its lamp burned whale oil until 1902, when a kerosene burner replaced it.",
    "Keepers logged every passing ship by name, flag and heading in a leather-bound book.",
    "A storm in 1931 broke the lantern glass, and the light stayed dark for eleven nights.",
    "Automation came in 1987; the last keeper moved to the mainland that spring.",
]


def _vectors(kb: KnowledgeBase) -> dict[str, tuple[str, np.ndarray]]:
    nodes = kb.store.get(kb.store.ids())
    return {n.id: (n.text, np.asarray(n.embedding)) for n in nodes if n is not None and n.embedding is not None}


def test_a_changed_file_embeds_only_its_changed_chunks(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cape.txt").write_text("\n\n".join(PARAGRAPHS) + "\n")
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=32, chunk_overlap=0) as kb:
        first = kb.ingest([docs])
        assert first.chunks >= 4 and first.embedded == first.chunks
        before = _vectors(kb)
        edited = [*PARAGRAPHS[:2], "Keepers logged ships in a book that is now in the county museum.", *PARAGRAPHS[3:]]
        (docs / "cape.txt").write_text("\n\n".join(edited) + "\n")
        changed = kb.ingest([docs])
        after = _vectors(kb)
    kept = before.keys() & after.keys()
    assert kept and changed.embedded == len(after) - len(kept) < changed.chunks
    for node_id in kept:  # the stored vector itself, not a recomputation
        assert after[node_id][1].tobytes() == before[node_id][1].tobytes()
    assert any("county museum" in text for text, _ in after.values())


def test_a_retitled_document_is_embedded_again(tmp_path: Path) -> None:
    body = "\n\n".join(PARAGRAPHS)
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=48, chunk_overlap=0) as kb:
        kb.add_documents([Document(id="cape", text=body, metadata={"title": "North Light"})])
        before = _vectors(kb)
        kb.add_documents([Document(id="cape", text=body, metadata={"title": "South Light"})])
        after = _vectors(kb)
        headers = {n.metadata.get("context_header") for n in kb.store.get(list(after)) if n is not None}
    # the same texts under another header (embedded with them): new vectors
    old_by_text = {text: vec for text, vec in before.values()}
    assert headers == {"South Light"} and len(after) >= 2
    assert {text for text, _ in after.values()} == old_by_text.keys()
    assert all(vec.tobytes() != old_by_text[text].tobytes() for text, vec in after.values())


def test_a_moved_file_keeps_its_vectors_through_a_sync(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "old").mkdir(parents=True)
    (docs / "old" / "cape.txt").write_text("\n\n".join(PARAGRAPHS) + "\n")
    (docs / "bees.txt").write_text("Honey bees tell each other where flowers are with a waggle dance.\n")
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=32, chunk_overlap=0) as kb:
        kb.ingest([docs])
        before = {text: vec for text, vec in _vectors(kb).values()}
        (docs / "new").mkdir()
        (docs / "old" / "cape.txt").rename(docs / "new" / "lighthouse.txt")
        report = kb.sync()
        after = _vectors(kb)
        moved = [n for n in kb.store.get(list(after)) if n is not None and "lighthouse.txt" in n.ref_doc_id]
    assert (report.files_removed, report.files_ingested, report.embedded) == (1, 1, 0)
    assert moved and len(after) == len(before)
    for text, vec in after.values():
        assert vec.tobytes() == before[text].tobytes()


def test_a_changed_file_read_in_batches_keeps_its_vectors_in_every_batch(tmp_path: Path, embedder: Any) -> None:
    """The first batch of a big file replaces all of its old documents; the later batches still
    find their old vectors (lent before that replace)."""
    from kvgraph.ingest.pipeline import Ingestor
    from kvgraph.ingest.registry import Registry
    from kvgraph.ingest.splitter import SentenceSplitter
    from kvgraph.store import EmbeddedVectorStore

    sections = [
        f"## Part {i}\n\n" + " ".join(p.replace("lighthouse", f"lighthouse {i}") for p in PARAGRAPHS) for i in range(8)
    ]
    path = tmp_path / "big.md"  # a document per section, batched by size
    path.write_text("\n\n".join(sections) + "\n")
    store = EmbeddedVectorStore.open(tmp_path / "store")
    registry = Registry(tmp_path / "documents.sqlite")
    try:
        ing = Ingestor(store, registry, embedder, SentenceSplitter(embedder.token_counter(), 64, 0), part_chars=900)
        first = ing.ingest_paths([path])
        assert first.documents >= 3 and first.embedded == first.chunks  # sections, read in several batches
        before = {n.id: np.asarray(n.embedding).tobytes() for n in store.get(store.ids()) if n is not None}
        sections[-1] = "## Part 7\n\nThe museum keeps the lighthouse logbooks in a climate-controlled room."
        path.write_text("\n\n".join(sections) + "\n")
        again = ing.ingest_paths([path])
        after = {n.id: np.asarray(n.embedding).tobytes() for n in store.get(store.ids()) if n is not None}
    finally:
        store.close()
        registry.close()
    unchanged = before.keys() & after.keys()  # same document, same text: same id
    assert len(unchanged) == first.chunks - 2 and again.embedded == len(after) - len(unchanged) == 1
    assert all(after[i] == before[i] for i in unchanged)


def test_a_section_inserted_at_the_top_renumbers_the_others_without_embedding_them(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    sections = [  # each longer than MIN_SECTION_CHARS: no merging of neighbours to shift
        f"## Keeper {i}\n\n" + " ".join(p.replace("lighthouse", f"lighthouse of cape {i}") for p in PARAGRAPHS)
        for i in range(4)
    ]
    (docs / "keepers.md").write_text("\n\n".join(sections) + "\n")
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=48, chunk_overlap=0) as kb:
        first = kb.ingest([docs])
        before = {n.text: np.asarray(n.embedding).tobytes() for n in kb.store.get(kb.store.ids()) if n is not None}
        new = "## Foreword\n\n" + " ".join(["These notes were collected by the county historical society in 1990."] * 6)
        (docs / "keepers.md").write_text("\n\n".join([new, *sections]) + "\n")
        again = kb.ingest([docs])
        after = {n.text: np.asarray(n.embedding).tobytes() for n in kb.store.get(kb.store.ids()) if n is not None}
    # every section's id changed (#section=N counts from the top); only the new one is embedded
    assert first.chunks >= 3 and again.embedded == len(after.keys() - before.keys()) <= 2
    assert all(after[t] == before[t] for t in after.keys() & before.keys())


def test_damaged_stored_vectors_are_embedded_again_not_a_failed_ingest(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cape.txt").write_text("\n\n".join(PARAGRAPHS) + "\n")
    (docs / "bees.txt").write_text("Honey bees tell each other where flowers are with a waggle dance.\n")
    with KnowledgeBase.open(tmp_path / "kb", chunk_size=32, chunk_overlap=0) as kb:
        kb.ingest([docs])
    vectors = next((tmp_path / "kb" / "store").glob("vectors-*.f32"))
    raw = bytearray(vectors.read_bytes())
    raw[-5] ^= 0xFF  # the last row: the bees' chunk, not the file about to change
    vectors.write_bytes(bytes(raw))
    (docs / "cape.txt").write_text("\n\n".join([*PARAGRAPHS[:4], "The light was automated in 1988."]) + "\n")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = kb.ingest([docs])  # reading stored vectors fails their checksum: embedded instead
        assert report.files_ingested == 1 and report.embedded >= 1
        assert not kb.check().ok  # the damage is still there for check and repair to name
        assert kb.repair().ok and kb.check().ok


def test_node_references_take_unchanged_sentences_from_the_cache_and_count_what_the_model_ran(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    paragraphs = [p.replace("lighthouse", f"lighthouse of cape {i}") for i in range(4) for p in PARAGRAPHS]
    (docs / "cape.txt").write_text("\n\n".join(paragraphs) + "\n")
    with KnowledgeBase.open(tmp_path / "kb", references="metadata", parent_size=128) as kb:
        first = kb.ingest([docs])
        paragraphs[-1] = "The last keeper wrote a memoir about the storms of 1931 and 1953."
        (docs / "cape.txt").write_text("\n\n".join(paragraphs) + "\n")
        again = kb.ingest([docs])
        parents = [n for n in kb.store.get(kb.store.ids()) if n is not None and n.metadata.get("role") == "parent"]
    # the report counts every text the model ran: the parents and the candidate sentences (more than
    # the parents alone); a changed paragraph runs only its parent's new sentences and the parent
    assert first.embedded > len(parents) >= 2
    assert 1 <= again.embedded <= first.embedded // 4
    assert (tmp_path / "kb" / "embed-cache.sqlite").exists()  # sentences the store does not hold
