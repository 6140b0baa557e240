"""Loading one file (dispatch on extension) or many (walk, load, collect what failed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS, UnreadableFileError, file_type_of
from kvgraph.ingest.loaders.html import load_html
from kvgraph.ingest.loaders.markdown import load_markdown
from kvgraph.ingest.loaders.pdf import load_pdf
from kvgraph.ingest.loaders.text import load_text
from kvgraph.ingest.loaders.walk import PathLike, walk
from kvgraph.schema import Document

_LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    "pdf": load_pdf,
    "text": load_text,
    "markdown": load_markdown,
    "html": load_html,
}


@dataclass
class SkippedFile:
    """A file that :func:`load_paths` could not load, and why."""

    path: str
    reason: str


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def load_file(path: PathLike) -> list[Document]:
    """Load one file into documents, choosing the loader by extension.

    Raises InvalidInputError (an UnreadableFileError naming the path and the reason) for
    a missing file, an unsupported extension, an empty, binary or non-UTF-8 text file, and
    an encrypted, corrupt or text-less PDF.
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise UnreadableFileError(given, "no such file")
    if not given.is_file():
        raise UnreadableFileError(given, "not a regular file")
    resolved = given.resolve()
    file_type = file_type_of(given)
    if file_type is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        kind = repr(given.suffix) if given.suffix else "(no extension)"
        raise UnreadableFileError(given, f"unsupported file type {kind}; supported: {supported}")
    try:
        return _LOADERS[file_type](resolved)
    except OSError as exc:  # permission denied, file vanished, I/O error
        raise UnreadableFileError(given, f"cannot read file: {exc.strerror or exc}") from None


def load_paths(
    paths: PathLike | Iterable[PathLike],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> LoadResult:
    """Walk ``paths`` (see :func:`walk`) and load every file; a file that fails is skipped, not fatal.

    A root that does not exist still raises InvalidInputError: that is a mistake in the
    arguments rather than a bad file among many.
    """
    result = LoadResult()
    for file in walk(paths, include=include, exclude=exclude):
        try:
            result.documents.extend(load_file(file))
        except UnreadableFileError as exc:
            result.skipped.append(SkippedFile(path=str(file), reason=exc.reason))
    return result
