"""EPUB books (standard library only): one document per chapter, in reading order.

An EPUB is a ZIP of XHTML files; ``META-INF/container.xml`` names the package file, whose
spine lists the chapters in reading order. Each chapter's main text comes from the HTML loader
(:func:`kvgraph.ingest.loaders.html.extract_html`: navigation and scripts dropped). Ids are
``FILE#chapter=N`` with N the chapter's place in the spine (1-based, counting every spine entry,
so ids stay put when a chapter is empty); metadata has ``chapter``, ``title`` (the book's
``dc:title``) and ``heading_path`` (the chapter's own title or first heading, when it differs
from the book's). The table of contents and chapters without text are not documents.
DRM-encrypted books are refused: their chapters cannot be read without the key.

Chapters are read one at a time as the documents are used, so a long book is not held whole.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

from kvgraph.ingest.loaders.archive import open_checked
from kvgraph.ingest.loaders.common import base_metadata, clean_text, detect_bom
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.html import extract_html
from kvgraph.schema import Document, Metadata

__all__ = ["prepare_epub"]

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding=["']([A-Za-z0-9._-]+)["']""")


@dataclass(frozen=True)
class _Book:
    title: str
    chapters: list[tuple[int, str]]  # (spine position, archive name) of the HTML chapters


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(path: Path, archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(archive.read(name))
    except KeyError:
        raise UnreadableFileError(path, f"not an EPUB: {name} is missing") from None
    except ElementTree.ParseError as exc:
        raise UnreadableFileError(path, f"corrupt EPUB: {name} is not well-formed XML ({exc})") from None


def _encrypted(archive: zipfile.ZipFile) -> set[str]:
    """Archive names the book encrypts (DRM). Font obfuscation is listed there too; it is harmless."""
    if _ENCRYPTION not in archive.namelist():
        return set()
    try:
        root = ElementTree.fromstring(archive.read(_ENCRYPTION))
    except ElementTree.ParseError:
        return set()
    return {unquote(el.get("URI", "")) for el in root.iter() if _local(el.tag) == "CipherReference"}


def _book(path: Path, archive: zipfile.ZipFile) -> _Book:
    container = _xml(path, archive, _CONTAINER)
    rootfile = next((el.get("full-path") for el in container.iter() if _local(el.tag) == "rootfile"), None)
    if not rootfile:
        raise UnreadableFileError(path, "corrupt EPUB: container.xml names no package file")
    package = _xml(path, archive, rootfile)
    folder = posixpath.dirname(rootfile)
    title = ""
    manifest: dict[str, tuple[str, str, str]] = {}  # id -> (archive name, media type, properties)
    spine: list[str] = []
    for el in package.iter():
        tag = _local(el.tag)
        if tag == "title" and not title and el.text:
            title = " ".join(clean_text(el.text).split())
        elif tag == "item" and el.get("id") and el.get("href"):
            name = posixpath.normpath(posixpath.join(folder, unquote(el.get("href", "").split("#")[0])))
            manifest[el.get("id", "")] = (name, el.get("media-type", ""), el.get("properties", ""))
        elif tag == "itemref" and el.get("idref"):
            spine.append(el.get("idref", ""))
    if not spine:
        raise UnreadableFileError(path, "corrupt EPUB: the package lists no chapters (empty spine)")
    chapters = []
    for position, idref in enumerate(spine, start=1):
        name, media_type, properties = manifest.get(idref, ("", "", ""))
        if name and media_type in _HTML_TYPES and "nav" not in properties.split():
            chapters.append((position, name))
    locked = _encrypted(archive) & {name for _, name in chapters}
    if locked:
        raise UnreadableFileError(
            path, f"DRM-protected EPUB ({len(locked)} encrypted chapter(s)); remove the DRM first"
        )
    return _Book(title, chapters)


def _decode(path: Path, name: str, data: bytes) -> str:
    encoding, start = detect_bom(data[:4])
    if not start and (m := _XML_ENCODING.match(data)):
        encoding = m.group(1).decode("ascii")
    try:
        return str(data[start:], encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise UnreadableFileError(path, f"chapter {name} is not valid {encoding} ({exc})") from None


def _chapter(path: Path, archive: zipfile.ZipFile, name: str) -> tuple[str, str | None]:
    try:
        data = archive.read(name)
    except KeyError:
        raise UnreadableFileError(path, f"corrupt EPUB: chapter {name} is missing from the archive") from None
    return extract_html(_decode(path, name, data))


def prepare_epub(path: Path) -> Iterator[Document]:
    """Check the book now (container, package, spine, DRM, some chapter with text); return its chapters lazily."""
    with open_checked(path, ".epub") as handle, zipfile.ZipFile(handle) as archive:
        book = _book(path, archive)
        if not any(_chapter(path, archive, name)[0].strip() for _, name in book.chapters):
            raise UnreadableFileError(path, f"no text in any of its {len(book.chapters)} chapter(s)")
    return _chapters(path, book)


def _chapters(path: Path, book: _Book) -> Iterator[Document]:
    base = base_metadata(path, "epub")
    if book.title:
        base["title"] = book.title
    doc_id = display_path(path)
    with open_checked(path, ".epub") as handle, zipfile.ZipFile(handle) as archive:
        for position, name in book.chapters:
            text, heading = _chapter(path, archive, name)
            if not text.strip():
                continue
            meta: Metadata = {**base, "chapter": position}
            if heading and heading != book.title:
                meta["heading_path"] = heading
            yield Document(id=f"{doc_id}#chapter={position}", text=text, metadata=meta)
