"""PowerPoint files (.pptx, python-pptx from the ``formats`` extra): one document per slide with text.

A slide's text is its title, then the text of its other shapes in reading order (top to bottom,
left to right; grouped shapes included), tables as ``a | b | c`` rows, and the speaker notes
after a ``Notes:`` line. A text box of several paragraphs is written as a ``- item`` list, which
is what slide bullets are. Ids are ``FILE#slide=N``; metadata has ``slide`` and ``page`` (both
the 1-based slide number, so citations read "deck.pptx p. 3" as for a PDF of the deck),
``total_slides``, ``heading_path`` (the slide's title) and ``title`` (the file's title property,
else the first slide's title). Slides without text (pictures only) are not documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kvgraph.ingest.loaders.archive import open_checked
from kvgraph.ingest.loaders.common import base_metadata, clean_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.optional import import_format_library
from kvgraph.ingest.loaders.sections import rows_as_text
from kvgraph.schema import Document, Metadata

__all__ = ["load_pptx"]

_MAX_GROUP_DEPTH = 32


def _frame_text(frame: Any) -> str:
    paragraphs = [" ".join(clean_text(p.text).split()) for p in frame.paragraphs]
    paragraphs = [p for p in paragraphs if p]
    if len(paragraphs) > 1:
        return "\n".join(f"- {p}" for p in paragraphs)
    return paragraphs[0] if paragraphs else ""


def _shape_texts(shapes: Any, depth: int = 0) -> Iterator[str]:
    """Texts of the shapes in reading order (top to bottom, then left to right)."""
    ordered = sorted(shapes, key=lambda s: (s.top if s.top is not None else 0, s.left if s.left is not None else 0))
    for shape in ordered:
        if getattr(shape, "shapes", None) is not None and depth < _MAX_GROUP_DEPTH:  # a group
            yield from _shape_texts(shape.shapes, depth + 1)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[clean_text(cell.text) for cell in row.cells] for row in shape.table.rows]
            yield rows_as_text(rows)
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield _frame_text(shape.text_frame)


def _slide_text(slide: Any) -> tuple[str, str]:
    """(title, text) of a slide."""
    title_shape = slide.shapes.title
    title = " ".join(clean_text(title_shape.text_frame.text).split()) if title_shape is not None else ""
    others = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
    blocks = [t for t in _shape_texts(others) if t.strip()]
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = clean_text(frame.text).strip() if frame is not None else ""
        if notes:
            blocks.append(f"Notes:\n{notes}")
    body = "\n\n".join(blocks)
    if title and body:
        return title, f"{title}\n\n{body}"
    return title, title or body


def load_pptx(path: Path) -> list[Document]:
    """One document per slide with text (see the module docstring)."""
    pptx = import_format_library(path, "pptx", "python-pptx")
    with open_checked(path, ".pptx") as handle:
        presentation = pptx.Presentation(handle)
    base = base_metadata(path, "pptx")
    slides = list(presentation.slides)
    base["total_slides"] = len(slides)
    title = clean_text(str(presentation.core_properties.title or "")).strip()
    doc_id = display_path(path)
    docs: list[Document] = []
    for number, slide in enumerate(slides, start=1):
        slide_title, text = _slide_text(slide)
        if not text.strip():
            continue
        title = title or slide_title
        meta: Metadata = {**base, "slide": number, "page": number}
        if slide_title:
            meta["heading_path"] = slide_title
        docs.append(Document(id=f"{doc_id}#slide={number}", text=text, metadata=meta))
    if not docs:
        raise UnreadableFileError(path, f"no text on any of its {len(slides)} slide(s)")
    if title:
        for doc in docs:
            doc.metadata["title"] = title
    return docs
