"""Documents with headings (Word files): one document per section, as Markdown files get.

A section is the text under a heading up to the next heading of any level; the text before the
first heading is section 0. Each heading counts, so a section keeps its number (and its id
``FILE#section=N``) when an earlier one is empty. A section's text starts with its heading and a
blank line, and its paragraphs are separated by blank lines, so sentence splitting never runs a
heading into the paragraph below it. Metadata: ``section``, ``heading_path`` ("Install > Linux")
and, when known, ``title``; tiny sections are later merged with their neighbours like Markdown
sections (``markdown.merge_small_sections``, applied by the knowledge base's splitter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kvgraph.schema import Document, Metadata

__all__ = ["SectionBuilder", "rows_as_text"]


@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class SectionBuilder:
    """Feed it headings and blocks in reading order; :meth:`documents` returns the sections."""

    doc_id: str
    base: Metadata
    out: list[Document] = field(default_factory=list)
    _stack: list[_Heading] = field(default_factory=list)
    _heading: _Heading | None = None
    _number: int = 0
    _blocks: list[str] = field(default_factory=list)
    _headings_only: list[str] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        self._close()
        while self._stack and self._stack[-1].level >= level:
            self._stack.pop()
        self._heading = _Heading(level, text)
        self._stack.append(self._heading)
        self._number += 1
        self._headings_only.append(text)

    def block(self, text: str) -> None:
        text = text.strip("\n")
        if text.strip():
            self._blocks.append(text)

    def _close(self) -> None:
        if self._blocks:
            body = "\n\n".join(self._blocks)
            heading = self._heading.text if self._heading is not None else ""
            text = f"{heading}\n\n{body}" if heading else body
            meta: Metadata = {
                **self.base,
                "heading_path": " > ".join(h.text for h in self._stack),
                "section": self._number,
            }
            self.out.append(Document(id=f"{self.doc_id}#section={self._number}", text=text, metadata=meta))
        self._blocks = []

    def documents(self) -> list[Document]:
        """The sections with text; a document of headings only becomes one document of its headings."""
        self._close()
        if not self.out and self._headings_only:
            meta: Metadata = {**self.base, "heading_path": "", "section": 0}
            text = "\n\n".join(self._headings_only)
            self.out.append(Document(id=f"{self.doc_id}#section=0", text=text, metadata=meta))
        return self.out


def rows_as_text(rows: Sequence[Sequence[str]]) -> str:
    """Table rows as ``a | b | c`` lines: empty cells, and rows with nothing in them, left out."""
    lines: list[str] = []
    for row in rows:
        cells = [" ".join(cell.split()) for cell in row if cell and cell.strip()]
        if cells:
            lines.append(" | ".join(cells))
    return "\n".join(lines)
