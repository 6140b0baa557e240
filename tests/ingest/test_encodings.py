"""Text in legacy encodings is read (detected with charset-normalizer), the same whether the file is
read at once or block by block; broken UTF-8 and binary data are still refused with their reason."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest
from multilingual_texts import PARAGRAPHS

from kvgraph.ingest.loaders import UnreadableFileError, load_file, stream
from kvgraph.ingest.loaders import markdown as markdown_loader
from kvgraph.ingest.loaders import text as text_loader
from kvgraph.ingest.loaders.charset import DETECTION_SAMPLE_BYTES, guess_encoding, looks_like_broken_utf8
from kvgraph.ingest.loaders.common import read_text
from kvgraph.kb import KnowledgeBase

CASES = [(lang, encoding) for lang, (_, encodings) in PARAGRAPHS.items() for encoding in encodings]


def outcome(path: Path) -> object:
    try:
        return [(d.id, d.text, sorted(d.metadata.items())) for d in load_file(path)]
    except UnreadableFileError as exc:
        return ("refused", exc.reason)


def both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """What loading gives, checked to be the same when the file is streamed in small blocks."""
    at_once = outcome(path)
    with monkeypatch.context() as m:  # every file counts as big, read in small blocks
        m.setattr(text_loader, "SMALL_FILE_BYTES", -1)
        m.setattr(markdown_loader, "SMALL_FILE_BYTES", -1)
        m.setattr(stream, "BLOCK_BYTES", 7)
        m.setattr(stream, "BLOCK_CHARS", 7)
        streamed = outcome(path)
    assert streamed == at_once
    return at_once


@pytest.mark.parametrize(("lang", "encoding"), CASES, ids=[f"{lang}-{enc}" for lang, enc in CASES])
@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_legacy_encodings_are_detected_and_decoded_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lang: str, encoding: str, suffix: str
) -> None:
    text = PARAGRAPHS[lang][0] + "\n"
    path = tmp_path / f"{lang}{suffix}"
    path.write_bytes(text.encode(encoding))
    result = both_ways(path, monkeypatch)
    assert isinstance(result, list), result
    [(_, loaded, _)] = result
    assert loaded.rstrip("\n") == text.rstrip("\n")


@pytest.mark.parametrize(
    "text", ["caf\u00e9 au lait\n", "line one\ncaf\u00e9 au lait\n", "Gr\u00fc\u00dfe aus K\u00f6ln"]
)
def test_short_latin1_text_reads_as_western_text(tmp_path: Path, text: str) -> None:
    # charset-normalizer alone calls "caf\xe9" Farsi (cp1006) or HP Roman-8; equally plausible
    # Western code pages win.
    path = tmp_path / "short.txt"
    path.write_bytes(text.encode("latin-1"))
    [doc] = load_file(path)
    assert doc.text == text


def test_utf16_with_bom_and_shift_jis_html(tmp_path: Path) -> None:
    utf16 = tmp_path / "notes.txt"
    utf16.write_bytes(codecs.BOM_UTF16_LE + "Gr\u00fc\u00dfe, \u4e16\u754c\n".encode("utf-16-le"))
    assert load_file(utf16)[0].text == "Gr\u00fc\u00dfe, \u4e16\u754c\n"
    page = tmp_path / "page.html"
    body = PARAGRAPHS["ja"][0]
    page.write_bytes(f"<html><head><title>猫</title></head><body><p>{body}</p></body></html>".encode("shift_jis"))
    [doc] = load_file(page)
    assert doc.text == body and doc.metadata["title"] == "猫"


def test_a_big_file_that_turns_latin1_late_is_read_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ASCII for longer than the detector's sample, then Latin-1: the sample must include where it turns.
    ascii_part = "The keeper climbed the tower at dusk and lit the lamp.\n" * (DETECTION_SAMPLE_BYTES // 30)
    tail = "Le gardien a allum\u00e9 la lampe. D\u00e9j\u00e0 la temp\u00eate arrivait.\n" * 3
    path = tmp_path / "log.txt"
    path.write_bytes((ascii_part + tail).encode("latin-1"))
    assert path.stat().st_size > 1.5 * DETECTION_SAMPLE_BYTES
    assert read_text(path) == ascii_part + tail  # read at once (as the HTML loader reads)
    streamed = "".join(d.text for d in load_file(path))  # checked, then read in 1 MiB blocks
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4099)
    monkeypatch.setattr(stream, "BLOCK_CHARS", 4099)
    assert streamed == "".join(d.text for d in load_file(path)) == ascii_part + tail


def test_broken_utf8_and_noise_are_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.txt"
    utf8 = "Gr\u00f6\u00dfe und \u00c4pfel. ".encode() * 100
    broken.write_bytes(utf8 + b"caf\xe9\n")
    refused = both_ways(broken, monkeypatch)
    assert refused == (
        "refused",
        f"not valid UTF-8: undecodable byte(s) e9 0a at byte offset {len(utf8) + 3} (line 1) in a file that is "
        "otherwise UTF-8 (corrupt, or two encodings mixed); fix those bytes or convert the file to UTF-8",
    )
    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes(b | 0x80 for b in random.Random(7).randbytes(4000)))
    reason = both_ways(noise, monkeypatch)
    assert isinstance(reason, tuple) and "not text in any other encoding either" in reason[1]
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert both_ways(binary, monkeypatch) == ("refused", "binary file (contains NUL or control bytes), not text")


def test_the_detector_pieces() -> None:
    assert looks_like_broken_utf8("d\u00e9j\u00e0 vu, na\u00efve ".encode() * 5 + b"\xe9")
    assert not looks_like_broken_utf8(PARAGRAPHS["ja"][0].encode("shift_jis"))  # stray UTF-8 by chance
    assert not looks_like_broken_utf8(b"plain caf\xe9")
    assert guess_encoding(PARAGRAPHS["ru"][0].encode("koi8-r")) == "koi8_r"


def test_knowledge_base_search_finds_text_from_a_latin1_file(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "recette.txt").write_bytes(
        "La cr\u00e8me br\u00fbl\u00e9e se caram\u00e9lise au chalumeau juste avant de servir.\n".encode("cp1252")
    )
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = kb.ingest(folder)
        assert report.files_ingested == 1 and not report.skipped
        [hit] = kb.search("cr\u00e8me br\u00fbl\u00e9e", k=1, mode="sparse")
        assert "caram\u00e9lise au chalumeau" in hit.node.text
