"""Big text files in bounded memory: a checking pass, then cleaned text block by block.

A file above :data:`SMALL_FILE_BYTES` is never held whole. :func:`scan_text` reads it once
in blocks, decoding incrementally, and raises everything :func:`common.read_text` would
(empty, binary, undecodable with the byte offset and line) before a single document is
produced, so a bad file is refused before the store is touched. :func:`iter_clean_blocks`
then reads it again and yields the same cleaned text as ``read_text`` would have returned,
in blocks; :func:`cut_parts` turns blocks into parts of at most :data:`PART_CHARS`
characters cut after a blank line (else a line break, else a space), and
:func:`iter_line_pieces` into lines, long lines in pieces, for the Markdown scanner.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kvgraph.ingest.loaders.common import (
    BINARY_REASON,
    SNIFF_BYTES,
    choose_encoding,
    clean_text,
    decode_error,
    detect_bom,
    looks_binary,
)
from kvgraph.ingest.loaders.files import UnreadableFileError, open_regular

# Files up to this size are read at once (the common case, and the fastest); above it, in blocks.
SMALL_FILE_BYTES = 1 << 20
# A document holds at most this many characters: a longer text becomes several parts, each
# split, embedded and stored before the next is read. It bounds the memory of one step.
PART_CHARS = 1 << 20
BLOCK_BYTES = 1 << 20
BLOCK_CHARS = 1 << 18
# Markdown lines longer than this reach the scanner in pieces (a 50 MB line is not one string).
LINE_CHARS = 1 << 16

# Anything that survives cleaning and is not whitespace.
_CONTENT = re.compile("[^\\s\x00-\x08\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


@dataclass(frozen=True)
class TextScan:
    """What the checking pass learnt: the codec, the BOM to skip, the decoded length."""

    encoding: str
    bom: int
    chars: int


def scan_text(path: Path) -> TextScan:
    """Check a whole text file block by block, in constant memory; raise what read_text would.

    A file without a BOM that is not UTF-8 is checked a second time in the encoding detected for
    it (:func:`common.choose_encoding`, from the same sample read_text would give the detector).
    """
    try:
        return _scan(path, None)
    except _NotUtf8 as failed:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size

            def read(start: int, n: int) -> bytes:
                f.seek(start)
                return f.read(n)

            encoding = choose_encoding(path, read, size, failed.offset, failed.line, failed.bad)
        return _scan(path, encoding)


class _NotUtf8(Exception):
    """The UTF-8 pass failed at ``offset`` of a file without a BOM: detect its encoding."""

    def __init__(self, offset: int, line: int, bad: bytes) -> None:
        super().__init__(offset)
        self.offset, self.line, self.bad = offset, line, bad


def _scan(path: Path, legacy: str | None) -> TextScan:
    """One checking pass: BOM-aware UTF-8/16/32, or the legacy encoding ``legacy``."""
    with open_regular(path) as f:
        block = f.read(max(BLOCK_BYTES, SNIFF_BYTES))  # the first block holds the BOM and the sniffed prefix
        if not block:
            raise UnreadableFileError(path, "empty file")
        encoding, bom = detect_bom(block[:4]) if legacy is None else (legacy, 0)
        if encoding == "utf-8" and looks_binary(block[:SNIFF_BYTES]):
            raise UnreadableFileError(path, BINARY_REASON)
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        offset = bom  # file offset of the first byte of `block`
        block = block[bom:]
        newlines = 0  # line breaks before `block`
        chars = 0
        content = False
        # UTF-16/32 are sniffed after decoding (their text is full of NULs), on their first SNIFF_BYTES
        # characters; so are legacy encodings, as read_text does.
        sniff = "" if encoding != "utf-8" else None
        while True:
            pending = len(decoder.getstate()[0])  # bytes of a sequence cut by the previous block
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                at = offset - pending + exc.start
                line = newlines + block.count(b"\n", 0, max(0, at - offset)) + 1
                bad = exc.object[exc.start : exc.start + 4]
                if encoding == "utf-8" and not bom and legacy is None:
                    raise _NotUtf8(at, line, bad) from None
                raise decode_error(path, encoding, at, line, bad) from None
            if sniff is not None:
                sniff += text[: SNIFF_BYTES - len(sniff)]
                if len(sniff) >= SNIFF_BYTES or not block:
                    if looks_binary(sniff.encode("utf-8", "surrogatepass")):
                        raise UnreadableFileError(path, BINARY_REASON)
                    sniff = None
            chars += len(text)
            content = content or _CONTENT.search(text) is not None
            if not block:
                break
            newlines += block.count(b"\n")
            offset += len(block)
            block = f.read(BLOCK_BYTES)
    if not content:
        raise UnreadableFileError(path, "empty file (only whitespace)")
    return TextScan(encoding, bom, chars)


def iter_clean_blocks(path: Path, scan: TextScan, block_chars: int = BLOCK_CHARS) -> Iterator[str]:
    """The file's cleaned text (as read_text returns it) in blocks of at most ``block_chars``.

    Universal-newline decoding turns \\r\\n into \\n even where a block boundary falls between them.
    """
    raw = open_regular(path)
    raw.seek(scan.bom)
    with io.TextIOWrapper(raw, encoding=scan.encoding, errors="strict", newline=None) as f:
        while True:
            try:
                block = f.read(block_chars)
            except UnicodeDecodeError as exc:
                raise UnreadableFileError(path, f"the file changed while it was read: now not {exc.encoding}") from None
            if not block:
                return
            yield clean_text(block)


def _cut(text: str, limit: int) -> int:
    """Where to end a part of ``text`` of at most ``limit`` characters: after a blank line, else a
    line break, else a space or tab, in the second half of the window; else exactly at ``limit``."""
    lo = limit // 2
    for sep in ("\n\n", "\n"):
        at = text.rfind(sep, lo, limit)
        if at != -1:
            return at + len(sep)
    at = max(text.rfind(" ", lo, limit), text.rfind("\t", lo, limit))
    return at + 1 if at != -1 else limit


def cut_parts(blocks: Iterable[str], part_chars: int = PART_CHARS) -> Iterator[tuple[int, str]]:
    """``(offset, text)`` parts of the concatenated blocks, each at most ``part_chars`` long."""
    buf = ""
    offset = 0
    for block in blocks:
        buf = buf + block if buf else block
        while len(buf) > part_chars:
            cut = _cut(buf, part_chars)
            yield offset, buf[:cut]
            offset += cut
            buf = buf[cut:]
    if buf:
        yield offset, buf


def iter_line_pieces(blocks: Iterable[str], max_chars: int = LINE_CHARS) -> Iterator[tuple[str, bool]]:
    """The lines of the concatenated blocks as ``(text, continues)``, like ``text.split("\\n")``.

    A line longer than ``max_chars`` comes in pieces; every piece after the first has
    ``continues=True`` (it belongs to the same line, with no line break before it).
    """
    carry = ""
    cont = False
    for block in blocks:
        data = carry + block if carry else block
        start = 0
        while (nl := data.find("\n", start)) != -1:
            while nl - start > max_chars:
                yield data[start : start + max_chars], cont
                cont = True
                start += max_chars
            yield data[start:nl], cont
            cont = False
            start = nl + 1
        carry = data[start:]
        while len(carry) > max_chars:
            yield carry[:max_chars], cont
            cont = True
            carry = carry[max_chars:]
    yield carry, cont


def iter_lines(blocks: Iterable[str]) -> Iterator[str]:
    """The lines of the concatenated blocks, each with its ``\\n`` (the last one may lack it).

    Unlike :func:`iter_line_pieces`, a long line comes whole: for readers (CSV, JSON Lines) that
    need complete lines; the file size limit bounds them.
    """
    carry: list[str] = []
    for block in blocks:
        start = 0
        while (nl := block.find("\n", start)) != -1:
            if carry:
                carry.append(block[start : nl + 1])
                yield "".join(carry)
                carry = []
            else:
                yield block[start : nl + 1]
            start = nl + 1
        if start < len(block):
            carry.append(block[start:])
    if carry:
        yield "".join(carry)
