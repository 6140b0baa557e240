"""Shared pieces of the loaders: the error type, file metadata, text decoding and cleaning.

Text decoding is strict on purpose: a file that is not UTF-8 (or UTF-16/32 with a BOM)
is rejected with the byte offset of the first bad byte instead of being decoded with
replacement characters, because silently indexed mojibake is much harder to notice
than an error at ingestion time.
"""

from __future__ import annotations

import codecs
import re
from datetime import UTC, datetime
from pathlib import Path

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Metadata

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
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(EXTENSIONS)

# How much of a file the binary sniffing looks at. Like git and file(1), a prefix is
# enough: binary formats show NULs and control bytes within the first few KB.
_SNIFF_BYTES = 8192
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


class UnreadableFileError(InvalidInputError):
    """A file could not be loaded; ``reason`` says why without repeating the path."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def file_type_of(path: Path) -> str | None:
    """The loader type for a path's extension (case-insensitive), or None if unsupported."""
    return EXTENSIONS.get(path.suffix.lower())


def base_metadata(path: Path, file_type: str) -> Metadata:
    """The provenance every loader puts on every document it produces."""
    st = path.stat()
    return {
        "file_path": str(path),
        "file_name": path.name,
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


def read_text(path: Path) -> str:
    """Read a text file strictly: BOM-aware UTF-8/16/32, no guessing, no replacement characters.

    The result has newlines normalised to ``\\n``, no BOM and no control characters other
    than ``\\n`` and ``\\t``. Raises UnreadableFileError for empty, binary or non-UTF-8 files.
    """
    data = path.read_bytes()
    if not data:
        raise UnreadableFileError(path, "empty file")
    encoding = "utf-8"
    for bom, enc in _BOMS:
        if data.startswith(bom):
            encoding, start = enc, len(bom)
            break
    else:
        start = 0
    # UTF-16/32 text is full of NUL bytes, so those are sniffed after decoding instead.
    if encoding == "utf-8" and looks_binary(data[:_SNIFF_BYTES]):
        raise UnreadableFileError(path, "binary file (contains NUL or control bytes), not text")
    try:
        # Slicing a memoryview avoids copying the whole file just to drop the BOM.
        text = str(memoryview(data)[start:], encoding)
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        bad = data[offset : offset + 4].hex(" ")
        raise UnreadableFileError(
            path,
            f"not valid {encoding.upper()}: undecodable byte(s) {bad} at byte offset {offset} (line {line}); "
            "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None
    del data  # the bytes are no longer needed; free them before cleaning makes copies
    if encoding != "utf-8" and looks_binary(text[:_SNIFF_BYTES].encode("utf-8", "surrogatepass")):
        raise UnreadableFileError(path, "binary file (contains NUL or control characters), not text")
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
