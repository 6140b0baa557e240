"""Plain text files (.txt, .text, .rst, .log): one document per file."""

from __future__ import annotations

from pathlib import Path

from kvgraph.ingest.loaders.common import base_metadata, read_text
from kvgraph.schema import Document


def load_text(path: Path) -> list[Document]:
    """One Document with the whole (strictly decoded, newline-normalised) text of the file."""
    text = read_text(path)
    return [Document(id=str(path), text=text, metadata=base_metadata(path, "text"))]
