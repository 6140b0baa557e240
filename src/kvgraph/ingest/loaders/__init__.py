"""Document loaders: files (PDF, text, Markdown, HTML, Word, PowerPoint, Excel/CSV, e-mail, EPUB,
JSON) to :class:`kvgraph.schema.Document`; :func:`supported_extensions` lists what is read.

Every document carries ``file_path`` (absolute, resolved), ``file_name``, ``file_type``,
``file_size`` and ``last_modified`` (ISO 8601, UTC) metadata, and a deterministic id:
the file path, plus ``#page=N`` for PDF pages or ``#section=N`` for Markdown sections,
and ``#part=K`` (``&part=K``) for the parts of a text longer than ``PART_CHARS``.
Paths that are not valid UTF-8 appear with ``\\xNN`` escapes (:func:`display_path`).
"""

from kvgraph.ingest.loaders.api import LoadResult, load_file, load_file_batches, load_paths
from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS, supported_extensions
from kvgraph.ingest.loaders.files import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_FILE_MB,
    SkippedFile,
    UnreadableFileError,
    check_file,
    display_path,
    file_key,
    open_regular,
    path_from_display,
)
from kvgraph.ingest.loaders.html import extract_html
from kvgraph.ingest.loaders.stream import PART_CHARS
from kvgraph.ingest.loaders.walk import walk

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_FILE_MB",
    "PART_CHARS",
    "SUPPORTED_EXTENSIONS",
    "LoadResult",
    "SkippedFile",
    "UnreadableFileError",
    "check_file",
    "display_path",
    "extract_html",
    "file_key",
    "load_file",
    "load_file_batches",
    "load_paths",
    "open_regular",
    "path_from_display",
    "supported_extensions",
    "walk",
]
