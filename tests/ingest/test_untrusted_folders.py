"""Ingesting a folder that holds anything: pipes, devices, sockets, symlink loops, huge files, odd names.

Every entry here is real: FIFOs from os.mkfifo, a Unix socket bound in the folder, a symlink to
/dev/zero, file names made of bytes that are not UTF-8. Anything that could hang runs in a
thread with a deadline, so a regression fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kvgraph.config import load_settings
from kvgraph.embed.hashing import HashingEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.ingest.loaders import (
    SkippedFile,
    UnreadableFileError,
    check_file,
    display_path,
    load_file,
    load_paths,
    path_from_display,
    walk,
)
from kvgraph.ingest.pipeline import Ingestor, IngestReport
from kvgraph.ingest.registry import Registry
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.kb import KnowledgeBase
from kvgraph.store import EmbeddedVectorStore

DEADLINE_S = 60


def within_deadline(fn: Callable[[], Any]) -> Any:
    """fn() run in a daemon thread; fail (instead of hanging forever) if it does not return in time."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), f"still running after {DEADLINE_S} s: it blocked on a file"
    if "error" in box:
        raise box["error"]
    return box["value"]


def bytes_name(folder: Path, name: bytes) -> Path:
    """The path of ``name`` (raw bytes) in ``folder``, as Python shows it (surrogate escapes)."""
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Path]:
    """A folder with two good files and one of everything that must be skipped."""
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "good.txt").write_text("An ordinary file about lighthouses and their keepers.\n")
    bytes_name(root, b"caf\xe9-latin1-name.md").write_text("# Caf\u00e9\n\nA file whose name is Latin-1, not UTF-8.\n")
    os.mkfifo(root / "pipe.txt")
    os.mkfifo(bytes_name(root, b"pipe-\xff.txt"))
    os.symlink("/dev/zero", root / "zeros.txt")
    os.symlink("loop-b.txt", root / "loop-a.txt")
    os.symlink("loop-a.txt", root / "loop-b.txt")
    os.symlink("missing.txt", root / "dangling.txt")
    os.symlink(".", root / "self-dir.md")  # a symlinked directory: not entered, not a file
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "socket.txt"))
    try:
        yield root
    finally:
        sock.close()


EXPECTED_SKIPS = {
    "dangling.txt": "broken symlink",
    "loop-a.txt": "symlink loop",
    "loop-b.txt": "symlink loop",
    "pipe-\\xff.txt": "named pipe (FIFO)",
    "pipe.txt": "named pipe (FIFO)",
    "socket.txt": "socket",
    "zeros.txt": "symlink to /dev/zero: a character device",
}


def skip_reasons(skipped: list[SkippedFile]) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in skipped}


def test_walk_lists_regular_files_and_reports_the_rest_without_opening_them(hostile: Path) -> None:
    skipped: list[SkippedFile] = []
    files = within_deadline(lambda: walk(hostile, skipped=skipped))
    assert sorted(display_path(f.name) for f in files) == ["caf\\xe9-latin1-name.md", "good.txt"]
    reasons = skip_reasons(skipped)
    assert set(reasons) == set(EXPECTED_SKIPS)
    for name, words in EXPECTED_SKIPS.items():
        assert words in reasons[name], (name, reasons[name])
    # every reported name is printable, valid UTF-8
    for s in skipped:
        s.path.encode("utf-8")
        assert s.path.isprintable()


def test_load_paths_and_load_file_skip_with_reasons(hostile: Path) -> None:
    result = within_deadline(lambda: load_paths(hostile))
    assert sorted(d.metadata["file_name"] for d in result.documents) == ["caf\\xe9-latin1-name.md", "good.txt"]
    assert set(skip_reasons(result.skipped)) == set(EXPECTED_SKIPS)
    # a special file named directly is refused, not opened
    for name in ("pipe.txt", "zeros.txt", "socket.txt", "loop-a.txt"):
        with pytest.raises(UnreadableFileError) as info:
            within_deadline(lambda name=name: load_file(hostile / name))
        assert EXPECTED_SKIPS[name] in info.value.reason
        assert str(hostile / name) in str(info.value)
    # named directly to walk, a pipe is reported the same way (not an error about the arguments)
    skipped: list[SkippedFile] = []
    assert within_deadline(lambda: walk(hostile / "pipe.txt", skipped=skipped)) == []
    assert "named pipe" in skipped[0].reason


def test_non_utf8_names_are_loaded_under_a_readable_reversible_name(hostile: Path) -> None:
    real = bytes_name(hostile, b"caf\xe9-latin1-name.md")
    [doc] = load_file(real)
    assert doc.id == display_path(real.resolve()) + "#section=1"
    assert doc.metadata["file_path"].endswith("/caf\\xe9-latin1-name.md")
    doc.id.encode("utf-8")  # storable in SQLite and JSON
    assert path_from_display(doc.metadata["file_path"]) == real.resolve()
    assert path_from_display(str(hostile / "good.txt")) == hostile / "good.txt"
    # control characters in names are escaped too (a name cannot rewrite the terminal)
    assert display_path("/x/a\x1b[31mred\nb.txt") == "/x/a\\x1b[31mred\\x0ab.txt"


def test_deep_directory_tree_is_walked_without_recursion(tmp_path: Path) -> None:
    # Deeper than the recursion limit the walk runs under (os.walk on 3.11 recurses once per
    # level). The tree stays shallow enough for pytest's own (recursive) cleanup of tmp_path.
    levels = [tmp_path / "deep"]
    for _ in range(300):
        levels.append(levels[-1] / "d")
    levels[-1].mkdir(parents=True)
    (levels[-1] / "bottom.txt").write_text("found at the bottom")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        found = walk(tmp_path / "deep")
    finally:
        sys.setrecursionlimit(limit)
    assert [f.name for f in found] == ["bottom.txt"]


def test_unreadable_directory_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every directory")
    locked = tmp_path / "root" / "locked"
    locked.mkdir(parents=True)
    (locked / "a.txt").write_text("secret")
    locked.chmod(0)
    try:
        skipped: list[SkippedFile] = []
        assert walk(tmp_path / "root", skipped=skipped) == []
        assert "cannot read directory" in skipped[0].reason
    finally:
        locked.chmod(0o755)


# --- the size limit -------------------------------------------------------------------------------


def test_size_limit_skips_before_reading(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("x " * 50)
    big = tmp_path / "big.txt"
    big.write_text("y " * 5000)  # 10,000 bytes
    assert check_file(small, max_file_bytes=1000).st_size == 100
    with pytest.raises(UnreadableFileError) as info:
        check_file(big, max_file_bytes=1000)
    assert "over the per-file limit" in info.value.reason and "max_file_mb" in info.value.reason
    skipped: list[SkippedFile] = []
    assert walk(tmp_path, skipped=skipped, max_file_bytes=1000) == [small]
    assert [Path(s.path).name for s in skipped] == ["big.txt"]
    with pytest.raises(UnreadableFileError, match="max_file_mb"):
        load_file(big, max_file_bytes=1000)
    assert load_file(big, max_file_bytes=None)[0].text.startswith("y y")


def test_max_file_mb_setting_is_validated(tmp_path: Path) -> None:
    assert load_settings(tmp_path).max_file_mb == 200
    assert load_settings(tmp_path, {"max_file_mb": 3}).max_file_mb == 3
    assert load_settings(tmp_path, env={"KVGRAPH_MAX_FILE_MB": "7"}).max_file_mb == 7
    for bad in (0, -1, "lots"):
        with pytest.raises(InvalidInputError, match="max_file_mb"):
            load_settings(tmp_path, {"max_file_mb": bad})


# --- through the ingest pipeline ------------------------------------------------------------------


def ingestor(tmp_path: Path, **kwargs: Any) -> tuple[Ingestor, EmbeddedVectorStore, Registry]:
    embedder = HashingEmbedder(dim=32)
    store = EmbeddedVectorStore.open(tmp_path / "kb-store")
    registry = Registry(tmp_path / "kb-documents.sqlite")
    return (
        Ingestor(store, registry, embedder, SentenceSplitter(embedder.token_counter(), 200, 20), **kwargs),
        store,
        registry,
    )


def test_pipeline_reports_every_skip_and_syncs_odd_names(hostile: Path, tmp_path: Path) -> None:
    ing, store, registry = ingestor(tmp_path, max_file_bytes=1 << 20)
    try:
        report: IngestReport = within_deadline(lambda: ing.ingest_paths([hostile]))
        assert report.files_ingested == 2
        assert set(skip_reasons(report.skipped)) == set(EXPECTED_SKIPS)
        assert report.to_dict()["skipped"]  # JSON-ready for the CLI
        keys = sorted(r.path for r in registry.all())
        assert keys[0].endswith("caf\\xe9-latin1-name.md")
        # a second run sees both files unchanged, including the one with the Latin-1 name
        again = within_deadline(ing.sync)
        assert again.files_unchanged == 2 and again.files_removed == 0 and again.files_ingested == 0
        # deleting the oddly named file is noticed by sync
        bytes_name(hostile, b"caf\xe9-latin1-name.md").unlink()
        gone = within_deadline(ing.sync)
        assert gone.files_removed == 1
        assert [Path(r.path).name for r in registry.all()] == ["good.txt"]
    finally:
        store.close()
        registry.close()


def test_pipeline_skips_files_over_the_limit(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "fits.txt").write_text("short enough " * 10)
    (folder / "too-big.txt").write_text("long " * 1000)
    ing, store, registry = ingestor(tmp_path, max_file_bytes=1000)
    try:
        report = ing.ingest_paths([folder])
        assert report.files_ingested == 1
        assert skip_reasons(report.skipped).keys() == {"too-big.txt"}
        assert "max_file_mb" in report.skipped[0].reason
        assert [Path(r.path).name for r in registry.all()] == ["fits.txt"]
    finally:
        store.close()
        registry.close()


def test_file_that_changes_mid_ingest_is_dropped_whole_and_retried(tmp_path: Path) -> None:
    """A big file is stored part by part; if a later part turns out unreadable, the parts
    already stored go again and the next run ingests the file from scratch."""
    folder = tmp_path / "docs"
    folder.mkdir()
    big = folder / "big.txt"
    paragraph = "Lighthouse keepers kept logs of every ship. " * 20 + "\n\n"
    big.write_text(paragraph * 3000)  # ~2.7 MB: three parts
    good_bytes = big.read_bytes()

    class CorruptOnFirstBatch:
        """A progress display that, while the first part is embedded, breaks the file's tail."""

        done = False

        def start(self, total_files: int) -> None: ...
        def file_done(self, path: str, chunks: int) -> None: ...
        def finish(self) -> None: ...

        def chunks_embedded(self, n: int) -> None:
            if not self.done:
                self.done = True
                with open(big, "r+b") as f:
                    f.seek(len(good_bytes) - 10)
                    f.write(b"\xff\xfe\xfd")

    ing, store, registry = ingestor(tmp_path, progress=CorruptOnFirstBatch())
    try:
        report = ing.ingest_paths([folder])
        assert report.files_ingested == 0
        assert "changed while it was read" in report.skipped[0].reason
        assert store.count() == 0 and registry.all() == []  # no half file left behind
        big.write_bytes(good_bytes)
        ing.progress = CorruptOnFirstBatch()
        ing.progress.done = True  # type: ignore[attr-defined]
        report = ing.ingest_paths([folder])
        assert report.files_ingested == 1 and report.documents == 3
        [rec] = registry.all()
        assert rec.doc_ids == [f"{big}#part={k}" for k in (1, 2, 3)]
        assert store.count() == report.chunks
    finally:
        store.close()
        registry.close()


def test_knowledge_base_ingest_survives_the_hostile_folder(hostile: Path, tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = within_deadline(lambda: kb.ingest(hostile))
        assert report.files_ingested == 2
        assert set(skip_reasons(report.skipped)) == set(EXPECTED_SKIPS)
        hits = kb.search("Latin-1 file name", k=1, mode="sparse")
        assert hits[0].node.metadata["file_name"] == "caf\\xe9-latin1-name.md"
