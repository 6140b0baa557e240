"""Loading one file (dispatch on extension) or many (walk, load, collect what failed)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kvgraph.errors import KvgraphError
from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS, UNSUPPORTED_HINTS, file_type_of
from kvgraph.ingest.loaders.eml import prepare_email
from kvgraph.ingest.loaders.epub import prepare_epub
from kvgraph.ingest.loaders.files import (
    DEFAULT_MAX_FILE_BYTES,
    SkippedFile,
    UnreadableFileError,
    check_file,
)
from kvgraph.ingest.loaders.html import load_html
from kvgraph.ingest.loaders.jsonrecords import load_json, prepare_jsonl
from kvgraph.ingest.loaders.markdown import prepare_markdown
from kvgraph.ingest.loaders.pdf import load_pdf
from kvgraph.ingest.loaders.powerpoint import load_pptx
from kvgraph.ingest.loaders.spreadsheet import prepare_csv, prepare_xlsx
from kvgraph.ingest.loaders.stream import PART_CHARS, cut_parts
from kvgraph.ingest.loaders.text import prepare_text
from kvgraph.ingest.loaders.walk import PathLike, walk
from kvgraph.ingest.loaders.word import load_docx
from kvgraph.schema import Document

__all__ = ["LoadResult", "SkippedFile", "load_file", "load_file_batches", "load_paths"]

# Loaders that read the file in blocks and return their batches lazily...
_STREAMING: dict[str, Callable[[Path, int], Iterator[list[Document]]]] = {
    "text": prepare_text,
    "markdown": prepare_markdown,
}
# ...loaders that check the file, then hand out its documents one by one as they are read
# (rows, records, chapters, attachments)...
_LAZY: dict[str, Callable[[Path], Iterator[Document]]] = {
    "csv": prepare_csv,
    "xlsx": prepare_xlsx,
    "jsonl": prepare_jsonl,
    "epub": prepare_epub,
}
# ...and loaders that return every document at once (their text is small next to the file).
_WHOLE: dict[str, Callable[[Path], list[Document]]] = {
    "pdf": load_pdf,
    "html": load_html,
    "docx": load_docx,
    "pptx": load_pptx,
    "json": load_json,
}
# Formats parsed by third-party libraries (or the e-mail parser) whose errors on a damaged file
# are any exception: each becomes a one-line "corrupt file" skip reason.
_PARSED = {"docx": "Word", "pptx": "PowerPoint", "xlsx": "Excel", "epub": "EPUB", "email": "e-mail"}
_MAX_REASON_CHARS = 200


@contextmanager
def _parser_errors(path: Path, file_type: str) -> Iterator[None]:
    if file_type not in _PARSED:
        yield
        return
    try:
        yield
    except (KvgraphError, OSError, MemoryError):
        raise
    except Exception as exc:  # a damaged file makes the parser fail in its own way
        detail = " ".join(str(exc).split())[:_MAX_REASON_CHARS]
        raise UnreadableFileError(
            path, f"corrupt {_PARSED[file_type]} file: {type(exc).__name__}{': ' + detail if detail else ''}"
        ) from None


def _guarded(path: Path, file_type: str, batches: Iterator[list[Document]]) -> Iterator[list[Document]]:
    with _parser_errors(path, file_type):
        yield from batches


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def _cut_long(docs: Iterable[Document], part_chars: int) -> Iterator[Document]:
    """Documents longer than ``part_chars`` as parts (``ID#part=K`` or ``ID&part=K``), cut at blank lines."""
    for doc in docs:
        if len(doc.text) <= part_chars:
            yield doc
            continue
        sep = "&" if "#" in doc.id else "#"
        number = 0
        for offset, text in cut_parts([doc.text], part_chars):
            if text.strip():
                number += 1
                meta = {**doc.metadata, "part": number, "part_char_start": offset}
                yield Document(id=f"{doc.id}{sep}part={number}", text=text, metadata=meta)


def _batched(docs: Iterable[Document], part_chars: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.text)
        if size >= part_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _reading(path: Path, batches: Iterator[list[Document]]) -> Iterator[list[Document]]:
    try:
        yield from batches
    except OSError as exc:  # an I/O error or the file vanished after the checking pass
        raise UnreadableFileError(path, f"cannot read file: {exc.strerror or exc}") from None


def load_file_batches(
    path: PathLike,
    *,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    part_chars: int = PART_CHARS,
) -> Iterator[list[Document]]:
    """A file's documents in batches of about ``part_chars`` characters, read as they are used.

    Everything that makes a file unloadable is found before this returns and raised as
    UnreadableFileError (an InvalidInputError naming the path and the reason): a missing
    file, anything that is not a regular file (nothing is opened to find out), a file over
    ``max_file_bytes``, an unsupported extension, an empty, binary or undecodable text file,
    an encrypted, corrupt or text-less PDF (or Word, PowerPoint, Excel, EPUB file), a missing
    optional library (the skip reason names the extra to install), a malformed CSV or JSON
    file. Big text and Markdown files, CSV, Excel, JSON Lines and EPUB files are checked first
    and then read again as they are used, so only one batch of documents exists at a time; an
    I/O error during that second reading (the file changed or vanished) is raised from the
    iteration, again as UnreadableFileError.
    """
    given = Path(os.fsdecode(path)).expanduser()
    check_file(given, max_file_bytes)
    file_type = file_type_of(given)
    if file_type is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        kind = repr(given.suffix) if given.suffix else "(no extension)"
        hint = UNSUPPORTED_HINTS.get(given.suffix.lower())
        raise UnreadableFileError(
            given, f"unsupported file type {kind}{f' ({hint})' if hint else ''}; supported: {supported}"
        )
    try:
        resolved = given.resolve()
        with _parser_errors(given, file_type):
            batches = _guarded(given, file_type, _documents(resolved, file_type, part_chars))
    except OSError as exc:  # permission denied, file vanished, I/O error
        raise UnreadableFileError(given, f"cannot read file: {exc.strerror or exc}") from None
    except RuntimeError:  # a symlink loop made after the check (Path.resolve raises RuntimeError)
        raise UnreadableFileError(given, "symlink loop (too many levels of symbolic links)") from None
    return _reading(given, batches)


def _documents(path: Path, file_type: str, part_chars: int) -> Iterator[list[Document]]:
    """The loader's batches; everything that refuses the file is raised by this call."""
    if file_type in _STREAMING:
        return _STREAMING[file_type](path, part_chars)
    if file_type == "email":  # attachments are loaded by the loader of their own type
        attachments = partial(load_file_batches, max_file_bytes=None, part_chars=part_chars)
        return _batched(_cut_long(prepare_email(path, attachments), part_chars), part_chars)
    if file_type in _LAZY:
        return _batched(_cut_long(_LAZY[file_type](path), part_chars), part_chars)
    return _batched(_cut_long(_WHOLE[file_type](path), part_chars), part_chars)


def load_file(path: PathLike, *, max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> list[Document]:
    """Load one file into documents, choosing the loader by extension.

    Raises InvalidInputError (an UnreadableFileError naming the path and the reason): see
    :func:`load_file_batches`, of which this is the concatenation.
    """
    return [doc for batch in load_file_batches(path, max_file_bytes=max_file_bytes) for doc in batch]


def load_paths(
    paths: PathLike | Iterable[PathLike],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    *,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> LoadResult:
    """Walk ``paths`` (see :func:`walk`) and load every file; a file that fails is skipped, not fatal.

    Entries the walk leaves out (pipes, devices, sockets, symlink loops, files over
    ``max_file_bytes``) are in ``skipped`` too. A root that does not exist still raises
    InvalidInputError: that is a mistake in the arguments rather than a bad file among many.
    """
    result = LoadResult()
    for file in walk(paths, include=include, exclude=exclude, skipped=result.skipped, max_file_bytes=max_file_bytes):
        try:
            result.documents.extend(load_file(file, max_file_bytes=max_file_bytes))
        except UnreadableFileError as exc:
            result.skipped.append(SkippedFile(path=exc.path, reason=exc.reason))
    return result
