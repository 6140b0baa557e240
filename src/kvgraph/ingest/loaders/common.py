"""Shared pieces of the loaders: the error type, file metadata, text decoding and cleaning.

Text decoding never uses replacement characters: a file is UTF-8, or UTF-16/32 when a BOM says
so, or, when it is not valid UTF-8, in the legacy encoding charset-normalizer finds for it
(Latin-1, cp1252, Shift-JIS, GBK...: :mod:`kvgraph.ingest.loaders.charset`). A file that is UTF-8
with a few bad bytes, or text in no encoding at all, is rejected with the byte offset of the first
bad byte, because silently indexed mojibake is much harder to notice than an error at ingestion time.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kvgraph.ingest.loaders.charset import detection_sample, guess_encoding, looks_like_broken_utf8
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path, open_regular
from kvgraph.schema import Metadata

__all__ = [
    "EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "UNSUPPORTED_HINTS",
    "UnreadableFileError",
    "base_metadata",
    "choose_encoding",
    "clean_text",
    "decode_error",
    "detect_bom",
    "file_type_of",
    "looks_binary",
    "normalize_newlines",
    "read_text",
    "supported_extensions",
]

# Extension (lower case, with dot) -> file_type. The loader for each type lives in its own module.
EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".csv": "csv",
    ".tsv": "csv",
    ".eml": "email",
    ".epub": "epub",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(EXTENSIONS)

# Formats that look supported but are not, with what to do instead (said in the skip reason).
UNSUPPORTED_HINTS: dict[str, str] = {
    ".doc": "the old binary Word format; save it as .docx",
    ".ppt": "the old binary PowerPoint format; save it as .pptx",
    ".xls": "the old binary Excel format; save it as .xlsx or .csv",
    ".odt": "OpenDocument text; save it as .docx",
    ".ods": "an OpenDocument spreadsheet; save it as .xlsx or .csv",
    ".odp": "an OpenDocument presentation; save it as .pptx",
    ".rtf": "rich text; save it as .docx",
    ".msg": "an Outlook message; save it as .eml",
}

# How much of a file the binary sniffing looks at. Like git and file(1), a prefix is
# enough: binary formats show NULs and control bytes within the first few KB.
SNIFF_BYTES = 8192
BINARY_REASON = "binary file (contains NUL or control bytes), not text"
_MAX_CONTROL_RATIO = 0.10

# Byte values that do not occur in text: C0 controls other than \t \n \v \f \r, and ESC is
# allowed too because logs carry ANSI colour codes. DEL counts as a control.
_TEXT_CONTROLS = frozenset(range(32)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}
_BINARY_BYTES = bytes(sorted(_TEXT_CONTROLS | {0x7F}))

# Characters removed from extracted text: C0/C1 controls except \t and \n (\r is handled by
# newline normalisation first), DEL, and the noncharacters U+FFFE/U+FFFF (PDFium reports
# glyphs without a Unicode mapping as U+FFFE). \f and \v become newlines (page/line breaks).
_STRIP_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_BREAKS_RE = re.compile("[\x0b\x0c]")

# BOMs, longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def supported_extensions() -> frozenset[str]:
    """The file extensions (lower case, with the dot) that the loaders read, ``.csv`` to ``.xlsx``.

    Formats whose library is an optional extra (Word, PowerPoint, Excel: ``kvgraph[formats]``) are
    included whether or not it is installed: such a file is then skipped with a reason naming the
    extra, rather than passed over in silence.
    """
    return SUPPORTED_EXTENSIONS


def file_type_of(path: Path) -> str | None:
    """The loader type for a path's extension (case-insensitive), or None if unsupported."""
    return EXTENSIONS.get(path.suffix.lower())


def base_metadata(path: Path, file_type: str) -> Metadata:
    """The provenance every loader puts on every document it produces."""
    st = path.stat()
    return {
        "file_path": display_path(path),
        "file_name": display_path(path.name),
        "file_type": file_type,
        "file_size": st.st_size,
        "last_modified": datetime.fromtimestamp(st.st_mtime, tz=UTC).isoformat(),
    }


def looks_binary(sample: bytes) -> bool:
    """True if a byte prefix looks like a binary format rather than text."""
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    # bytes.translate with a delete table runs in C; what it deletes is the control count.
    controls = len(sample) - len(sample.translate(None, _BINARY_BYTES))
    return controls / len(sample) > _MAX_CONTROL_RATIO


def detect_bom(head: bytes) -> tuple[str, int]:
    """(codec, BOM length) from a file's first bytes: UTF-8 unless a UTF-8/16/32 BOM says otherwise."""
    for bom, enc in _BOMS:
        if head.startswith(bom):
            return enc, len(bom)
    return "utf-8", 0


def decode_error(path: Path, encoding: str, offset: int, line: int, bad: bytes, why: str = "") -> UnreadableFileError:
    """The error for an undecodable byte at ``offset`` (counted from the start of the file)."""
    where = f"undecodable byte(s) {bad.hex(' ')} at byte offset {offset} (line {line})"
    if why == "broken":
        return UnreadableFileError(
            path,
            f"not valid UTF-8: {where} in a file that is otherwise UTF-8 (corrupt, or two encodings mixed); "
            "fix those bytes or convert the file to UTF-8",
        )
    if why == "nothing fits":
        return UnreadableFileError(
            path,
            f"not valid UTF-8 ({where}), and not text in any other encoding either (binary?); "
            "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        )
    if encoding.replace("_", "-").lower().startswith("utf-"):  # a BOM named it
        return UnreadableFileError(path, f"not valid {encoding.upper()}: {where}; fix or convert the file")
    return UnreadableFileError(
        path,
        f"not valid {encoding.upper()} (the encoding detected for it): {where}; "
        f"convert the file to UTF-8 (e.g. iconv -f {encoding} -t utf-8)",
    )


def choose_encoding(
    path: Path, read: Callable[[int, int], bytes], size: int, offset: int, line: int, bad: bytes
) -> str:
    """The legacy encoding of a file that failed to decode as UTF-8 at byte ``offset``, or the error.

    ``read(start, n)`` reads bytes of the file, ``size`` is its length: the detector sees the same
    sample whether the file is read at once or in blocks (:func:`charset.detection_sample`).
    """
    sample = detection_sample(read, size, offset)
    if looks_like_broken_utf8(sample):
        raise decode_error(path, "utf-8", offset, line, bad, why="broken")
    encoding = guess_encoding(sample)
    if encoding is None:
        raise decode_error(path, "utf-8", offset, line, bad, why="nothing fits")
    return encoding


def _reader(data: bytes) -> Callable[[int, int], bytes]:
    return lambda start, n: data[start : start + n]


def read_text(path: Path) -> str:
    """Read a text file strictly: BOM-aware UTF-8/16/32, else the detected legacy encoding; no replacement characters.

    The result has newlines normalised to ``\\n``, no BOM and no control characters other
    than ``\\n`` and ``\\t``. Raises UnreadableFileError for empty, binary or undecodable files.
    The whole file is read at once: :mod:`kvgraph.ingest.loaders.stream` reads big files in blocks.
    """
    with open_regular(path) as f:
        data = f.read()
    if not data:
        raise UnreadableFileError(path, "empty file")
    encoding, start = detect_bom(data[:4])
    # UTF-16/32 text is full of NUL bytes, so those are sniffed after decoding instead.
    if encoding == "utf-8" and looks_binary(data[:SNIFF_BYTES]):
        raise UnreadableFileError(path, BINARY_REASON)
    try:
        # Slicing a memoryview avoids copying the whole file just to drop the BOM.
        text = str(memoryview(data)[start:], encoding)
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        if start:  # a BOM named the encoding: no second guess
            raise decode_error(path, encoding, offset, line, data[offset : offset + 4]) from None
        encoding = choose_encoding(path, _reader(data), len(data), offset, line, data[offset : offset + 4])
        try:
            text = str(data, encoding)
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise decode_error(path, encoding, exc.start, line, data[exc.start : exc.start + 4]) from None
    del data  # the bytes are no longer needed; free them before cleaning makes copies
    if encoding != "utf-8" and looks_binary(text[:SNIFF_BYTES].encode("utf-8", "surrogatepass")):
        raise UnreadableFileError(path, BINARY_REASON)
    text = clean_text(text)
    if not text.strip():
        raise UnreadableFileError(path, "empty file (only whitespace)")
    return text


def normalize_newlines(text: str) -> str:
    """\\r\\n and lone \\r become \\n. Cheap when there is nothing to do (no copy)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def clean_text(text: str) -> str:
    """Normalise newlines and drop control characters (keeping \\n and \\t), in linear time."""
    text = normalize_newlines(text)
    if _BREAKS_RE.search(text):
        text = _BREAKS_RE.sub("\n", text)
    if _STRIP_RE.search(text):
        text = _STRIP_RE.sub("", text)
    return text
