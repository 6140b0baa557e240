"""After an ingest or a sync, a new reader process finds the BM25 postings ready (no rebuild from all text)."""

from __future__ import annotations

from pathlib import Path

from kbdocs import make_docs
from kvgraph.fileio import read_arrays
from kvgraph.kb import KnowledgeBase


def bm25_cache_rows(kb_path: Path) -> int:
    """How many chunks the saved BM25 cache covers (0 when there is none)."""
    p = kb_path / "store" / "cache" / "bm25.kvg"
    return int(read_arrays(p)[1]["n"]) if p.exists() else 0


def test_ingest_and_sync_leave_the_bm25_cache_for_readers(tmp_path: Path) -> None:
    docs = make_docs(tmp_path)
    kb_path = tmp_path / "kb"
    with KnowledgeBase.open(kb_path) as kb:
        kb.ingest([docs])
        assert bm25_cache_rows(kb_path) == kb.store.count() > 0  # before any search or close
        (docs / "extra.txt").write_text("Hedgehogs hibernate from November to March.\n")
        kb.sync()
        n = kb.store.count()
        assert bm25_cache_rows(kb_path) == n
    with KnowledgeBase.open(kb_path, read_only=True) as reader:
        hits = reader.search("when do hedgehogs hibernate", k=1, mode="sparse")
        assert hits and "Hedgehogs" in hits[0].node.text
