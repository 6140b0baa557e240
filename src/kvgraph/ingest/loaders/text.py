"""Plain text files (.txt, .text, .rst, .log): one document per file, or per part of a big file.

A file whose text is longer than ``PART_CHARS`` characters is read in blocks and becomes
several documents, ``FILE#part=1``, ``FILE#part=2``..., each cut after a blank line (else
a line break, else a space) and carrying ``part`` and ``part_char_start`` (where the part
begins in the file's text), so that memory stays bounded whatever the file's size.
A file named as one page (``page-023.txt``, ``report_p23.txt``: :mod:`kvgraph.ingest.loaders.pages`)
carries ``page``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from kvgraph.ingest.loaders.common import base_metadata, read_text
from kvgraph.ingest.loaders.files import display_path
from kvgraph.ingest.loaders.pages import page_from_name
from kvgraph.ingest.loaders.stream import (
    PART_CHARS,
    SMALL_FILE_BYTES,
    TextScan,
    cut_parts,
    iter_clean_blocks,
    scan_text,
)
from kvgraph.schema import Document, Metadata


def prepare_text(path: Path, part_chars: int = PART_CHARS) -> Iterator[list[Document]]:
    """Check the file now; return its documents (one batch per part) to be read as they are used."""
    if path.stat().st_size > SMALL_FILE_BYTES:
        scan = scan_text(path)  # raises for empty, binary and undecodable files, in constant memory
        if scan.chars > part_chars:
            return _parts(path, scan, part_chars)
    text = read_text(path)
    return iter([[Document(id=display_path(path), text=text, metadata=_metadata(path))]])


def _metadata(path: Path) -> Metadata:
    """The file's metadata, with ``page`` when its name says it is one page (``page-023.txt``)."""
    meta = base_metadata(path, "text")
    page = page_from_name(path)
    if page is not None:
        meta["page"] = page
    return meta


def _parts(path: Path, scan: TextScan, part_chars: int) -> Iterator[list[Document]]:
    base = _metadata(path)
    doc_id = display_path(path)
    number = 0
    for offset, text in cut_parts(iter_clean_blocks(path, scan), part_chars):
        if text.strip():
            number += 1
            meta = {**base, "part": number, "part_char_start": offset}
            yield [Document(id=f"{doc_id}#part={number}", text=text, metadata=meta)]


def load_text(path: Path) -> list[Document]:
    """The document(s) of a text file: its whole (strictly decoded, newline-normalised) text."""
    return [doc for batch in prepare_text(path) for doc in batch]
