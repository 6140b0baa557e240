"""The engine's reader handles: read-only KnowledgeBase handles that refresh after each write."""

from __future__ import annotations

from pathlib import Path

from kvgraph.kb import KnowledgeBase


def test_a_read_only_handle_sees_a_writers_files_after_refresh(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Tea\n\nGreen tea is steeped at 80 degrees.\n")
    with KnowledgeBase.open(tmp_path / "kb") as writer:
        writer.ingest([docs / "a.md"])
        with KnowledgeBase.open(tmp_path / "kb", read_only=True) as reader:
            assert [Path(d["path"]).name for d in reader.documents()] == ["a.md"]
            (docs / "b.md").write_text("# Coffee\n\nEspresso is brewed at nine bars.\n")
            writer.ingest([docs / "b.md"])
            reader.refresh()
            assert sorted(Path(d["path"]).name for d in reader.documents()) == ["a.md", "b.md"]
            assert reader.search("espresso pressure", k=1)[0].node.metadata["file_name"] == "b.md"
            reader.close()
        assert reader.read_only


def test_refresh_after_close_says_the_knowledge_base_is_closed(tmp_path: Path) -> None:
    import pytest

    from kvgraph.errors import KvgraphError

    with KnowledgeBase.open(tmp_path / "kb") as kb:
        pass
    with pytest.raises(KvgraphError, match="closed"):
        kb.refresh()
