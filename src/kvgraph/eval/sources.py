"""Readers for the shared evaluation datasets (never copied into the repository).

The folder comes from an explicit path, ``KVGRAPH_DATASETS``, or ``../shared/datasets``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Document

LLAMA2_TEXT = "llama2/llama2_paper_pdftext.txt"


def datasets_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get("KVGRAPH_DATASETS") or "../shared/datasets")


def paged_text(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """``(page number, text)`` of a text file whose pages are separated by ``---`` lines (1-based)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: page-separated text not found (set KVGRAPH_DATASETS or --datasets)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{p}: cannot be read as UTF-8 text ({e})") from None
    return [(i, page.strip("\n")) for i, page in enumerate(re.split(r"\n---\n", text), 1)]


def llama2_pages(root: str | os.PathLike[str] | None = None) -> list[Document]:
    """The Llama 2 paper, one document per page (pages are separated by ``---`` lines).

    Page numbers are 1-based positions in the file, which follow the PDF's pages.
    """
    path = datasets_root(root) / LLAMA2_TEXT
    if not path.is_file():
        raise InvalidInputError(f"{path}: Llama 2 paper text not found (set KVGRAPH_DATASETS or --datasets)")
    pages = paged_text(path)
    total = len(pages)
    return [
        Document(
            id=f"{path.name}#page={i}",
            text=page,
            metadata={"file_path": str(path.resolve()), "file_name": path.name, "page": i, "total_pages": total},
        )
        for i, page in pages
        if page.strip()
    ]
