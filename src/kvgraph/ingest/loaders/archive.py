"""ZIP containers (.docx, .pptx, .xlsx, .epub): checked before any library unpacks them.

Office files and EPUBs are ZIP archives of XML. A file that is not a ZIP, is encrypted, or
would expand to far more than it could plausibly hold (a "ZIP bomb": a few KB that inflate to
gigabytes) is refused here with a one-line reason, before python-docx, openpyxl or the EPUB
reader reads a byte of it. Python's zipfile never inflates an entry past its declared size, so
checking the declared sizes bounds what is unpacked.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import BinaryIO

from kvgraph.ingest.loaders.files import UnreadableFileError, open_regular, size_text

__all__ = ["MAX_EXPANSION", "MIN_EXPANSION_LIMIT", "check_zip", "open_checked"]

# What an archive may unpack to: 100 times its size (Office XML compresses about 5-20 times),
# and never less than 100 MB, so that small files are not refused for compressing well.
MAX_EXPANSION = 100
MIN_EXPANSION_LIMIT = 100 << 20
# Password-protected Office files are not ZIPs but OLE compound files holding an encrypted package.
_OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


def check_zip(path: Path, handle: BinaryIO, kind: str) -> zipfile.ZipFile:
    """Open ``handle`` as a ZIP archive and check it; the caller closes the returned archive."""
    if handle.read(8) == _OLE_MAGIC:
        raise UnreadableFileError(
            path,
            f"not a ZIP-based {kind} file: an OLE compound file, i.e. a password-protected Office file or an old "
            "binary one (.doc, .xls, .ppt) renamed; remove the password or save it in the new format",
        )
    handle.seek(0)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise UnreadableFileError(path, f"corrupt {kind} file (not a readable ZIP archive: {exc})") from None
    try:
        entries = archive.infolist()
        if any(info.flag_bits & 0x1 for info in entries):
            raise UnreadableFileError(path, f"encrypted {kind} file (password-protected); save it without a password")
        size = handle.seek(0, 2)
        unpacked = sum(info.file_size for info in entries)
        limit = max(MIN_EXPANSION_LIMIT, MAX_EXPANSION * size)
        if unpacked > limit:
            raise UnreadableFileError(
                path,
                f"{kind} file would unpack to {size_text(unpacked)}, over {MAX_EXPANSION} times its size "
                "(a ZIP bomb?); refused",
            )
    except BaseException:
        archive.close()
        raise
    return archive


def open_checked(path: Path, kind: str) -> BinaryIO:
    """The file, opened safely (never blocking on a FIFO) and checked as a ZIP archive, at offset 0."""
    handle = open_regular(path)
    try:
        check_zip(path, handle, kind).close()  # closing the archive leaves the handle open
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle
