"""Word files (.docx, python-docx from the ``formats`` extra): one document per section.

The body is read in order, paragraphs and tables alike. Paragraphs styled ``Heading 1`` to
``Heading 9`` (or ``Title``) start sections (:mod:`kvgraph.ingest.loaders.sections`: ids
``FILE#section=N``, ``heading_path``, ``section``); list paragraphs become ``- item`` lines;
tables become ``a | b | c`` rows, each merged cell once. ``title`` is the document property,
else the first ``Title`` paragraph, else the first level-1 heading. Headers, footers, comments,
footnotes and text boxes are left out: they repeat on every page or sit outside the text flow.
Word files have no fixed pages (the layout decides them), so there is no ``page``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kvgraph.ingest.loaders.archive import open_checked
from kvgraph.ingest.loaders.common import base_metadata, clean_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.optional import import_format_library
from kvgraph.ingest.loaders.sections import SectionBuilder, rows_as_text
from kvgraph.schema import Document

__all__ = ["load_docx"]

_HEADING_STYLE = re.compile(r"heading\s*([1-9])$", re.IGNORECASE)


def _heading_level(paragraph: Any) -> int | None:
    style = paragraph.style
    name = str(style.name) if style is not None and style.name else ""
    if name.lower() == "title":
        return 1
    m = _HEADING_STYLE.match(name)
    return int(m.group(1)) if m else None


def _is_list_item(paragraph: Any) -> bool:
    style = paragraph.style
    name = str(style.name) if style is not None and style.name else ""
    if name.lower().startswith("list"):
        return True
    ppr = paragraph._p.pPr  # numbering without a list style: Word's own bullets and numbers
    return ppr is not None and ppr.numPr is not None


def _table_rows(table: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:  # a merged cell is repeated for every grid column it spans
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(clean_text(cell.text))
        rows.append(cells)
    return rows


def load_docx(path: Path) -> list[Document]:
    """The sections of a Word file (see the module docstring)."""
    docx = import_format_library(path, "docx", "python-docx")
    with open_checked(path, ".docx") as handle:
        document = docx.Document(handle)
    base = base_metadata(path, "docx")
    title = clean_text(str(document.core_properties.title or "")).strip()
    builder = SectionBuilder(display_path(path), base)
    first_heading = ""
    list_run: list[str] = []

    def flush_list() -> None:
        if list_run:
            builder.block("\n".join(list_run))
            list_run.clear()

    for item in document.iter_inner_content():
        if hasattr(item, "rows"):  # a table
            flush_list()
            builder.block(rows_as_text(_table_rows(item)))
            continue
        text = clean_text(item.text).strip()
        if not text:
            continue
        level = _heading_level(item)
        if level is not None:
            flush_list()
            if not title and str(item.style.name).lower() == "title":
                title = text
            first_heading = first_heading or (text if level == 1 else "")
            builder.heading(level, text)
        elif _is_list_item(item):
            list_run.append(f"- {' '.join(text.split())}")
        else:
            flush_list()
            builder.block(text)
    flush_list()
    docs = builder.documents()
    if not docs:
        raise UnreadableFileError(path, "no text in the document (empty, or only images)")
    title = title or first_heading
    if title:  # known only now when it comes from the headings
        for doc in docs:
            doc.metadata["title"] = title
    return docs
