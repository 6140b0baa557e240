"""Document loaders: files (PDF, text, Markdown, HTML) to :class:`kvgraph.schema.Document`.

Every document carries ``file_path`` (absolute, resolved), ``file_name``, ``file_type``,
``file_size`` and ``last_modified`` (ISO 8601, UTC) metadata, and a deterministic id:
the file path, plus ``#page=N`` for PDF pages or ``#section=N`` for Markdown sections.
"""

from kvgraph.ingest.loaders.api import LoadResult, SkippedFile, load_file, load_paths
from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS, UnreadableFileError
from kvgraph.ingest.loaders.html import extract_html
from kvgraph.ingest.loaders.walk import walk

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "LoadResult",
    "SkippedFile",
    "UnreadableFileError",
    "extract_html",
    "load_file",
    "load_paths",
    "walk",
]
