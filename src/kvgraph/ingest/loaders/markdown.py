"""Markdown files: one document per section, with the heading path as metadata.

A section is the text under a heading up to the next heading of any level; text before
the first heading is section 0. Section numbers count every heading (0 = preamble), so a
section keeps its id even when an earlier section is empty and skipped. Each section's
text starts with its own heading, which helps retrieval ("Install > Linux" questions
find the section whose text says "## Linux").

This is a line scanner, not a full CommonMark parser: it knows ATX headings, simple
setext headings, fenced code blocks (whose ``#`` lines are not headings) and YAML front
matter, which covers what matters for splitting. It reads lines one at a time, so a file
of any size is loaded in bounded memory (:mod:`kvgraph.ingest.loaders.stream`): a section
longer than ``PART_CHARS`` is cut, at a blank line where possible, into parts with ids
``#section=N&part=K``, each repeating the section's heading. The document title (the first
level-1 heading) is found by a first pass over the file, before any document is produced.

Two things keep sections useful for retrieval:

* **Tiny sections can be merged with their neighbours** (:func:`merge_small_sections`, which
  the knowledge base's splitter applies before chunking): a section shorter than
  :data:`MIN_SECTION_CHARS` (a heading and one sentence, or the dozens of one-line headings a
  converted figure leaves) is joined to the section before it on the same page, or, when that
  one is large, to the sections after it until the joined text reaches ``MIN_SECTION_CHARS``;
  the joined document keeps the first section's id and heading path. The loader itself returns
  every section as it is.
* **Sections carry their page** (``page``, 1-based) when the file says which page it is: a
  file name like ``page-023.md`` or ``report_p23.md``, front matter ``page: 23``, or a heading
  ``Page 23`` that starts a page inside the file (:mod:`kvgraph.ingest.loaders.pages`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kvgraph.ingest.loaders.common import base_metadata, read_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.pages import page_from_front_matter, page_from_heading, page_from_name
from kvgraph.ingest.loaders.stream import (
    PART_CHARS,
    SMALL_FILE_BYTES,
    iter_clean_blocks,
    iter_line_pieces,
    scan_text,
)
from kvgraph.schema import Document, Metadata

_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE_OPEN_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# Lines that cannot be the text of a setext heading: list items, quotes, tables, rules.
_NOT_SETEXT_TEXT_RE = re.compile(r"^(?: {4}|\t|\s*(?:[-*+]|\d+[.)])(?:\s|$)|\s*>|.*\|)")
_FRONT_MATTER_TITLE_RE = re.compile(r"""^title:\s*(['"]?)(.*?)\1\s*$""")
# The first character of a line that might start a heading, fence or underline: a cheap
# pre-check so that large files do not run three regexes on every line.
_INTERESTING = frozenset("#`~=-")
_FRONT_MATTER_MAX_LINES = 200
# Sections shorter than this many characters (about 75 tokens) are merged with their neighbours.
MIN_SECTION_CHARS = 300
# A tiny last section is merged into the one before only while the two stay under this size.
_MAX_BACK_MERGE_CHARS = 4_000

Line = tuple[str, bool]  # text without the line break, and whether it continues the previous piece


@dataclass
class _Heading:
    level: int
    text: str


class _Sections:
    """The scanner: feed it lines, collect finished documents from ``out``.

    With ``keep=False`` it keeps no text (the first pass): it only learns the title and
    whether any section has a body. With ``flat=True`` (a file of headings only) every
    line after the front matter is the body of section 0, as one document.
    """

    def __init__(
        self, make_doc: Callable[[int, str, str, int | None, int | None], Document] | None, part_chars: int
    ) -> None:
        self.make_doc = make_doc
        self.keep = make_doc is not None
        self.flat = False
        self.part_chars = part_chars
        self.out: list[Document] = []
        self.h1_title: str | None = None
        self.front_title: str | None = None
        self.front_page: int | None = None
        self.page: int | None = None  # the page a "Page N" heading started, for the sections after it
        self.any_body = False  # a section with a non-blank body exists
        self.any_text = False  # a non-blank line after the front matter exists
        # scanner state
        self.fence: str | None = None  # the opening fence while inside a fenced code block
        self.prev_is_text = False  # the previous line is a one-line paragraph (a setext candidate)
        self.prev_line = ""
        self.prev_heading = False  # the previous line was a heading
        self.at_start = True  # the next line is the first line after the front matter
        # the open section
        self.number = 0
        self.heading: _Heading | None = None
        self.stack: list[_Heading] = []  # open headings, outermost first
        self.body: list[str] = []  # pieces, each with its leading "\n" when it starts a line
        self.body_chars = 0
        self.nonblank = 0  # non-blank lines in the body
        self.parts = 0  # parts of the open section already emitted

    # -- lines -------------------------------------------------------------------------------

    def feed(self, text: str, cont: bool) -> None:
        if self.flat:
            self._append(text, cont)
            return
        if cont:  # the rest of a long line: always body text, never a heading
            self._append(text, cont)
            self.prev_is_text = False
            self.prev_heading = False
            return
        line = text
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        first = stripped[:1]
        if self.fence is not None:
            closing = stripped.rstrip()
            # A closing fence: same character, at least as long, nothing after it, indented <= 3.
            if indent <= 3 and len(closing) >= len(self.fence) and closing.strip(self.fence[0]) == "":
                self.fence = None
            self._append(line, cont)
            self._after(line, heading=False)
            return
        if first in _INTERESTING and indent <= 3:
            if first in "`~":
                m = _FENCE_OPEN_RE.match(line)
                if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                    self.fence = m.group(1)
                    self.prev_is_text = False
                    self._append(line, cont)
                    self._after(line, heading=False)
                    return
            elif first == "#":
                m = _ATX_RE.match(line)
                if m:
                    self._open(_Heading(len(m.group(1)), (m.group(2) or "").strip()))
                    self.prev_is_text = False
                    self._after(line, heading=True)
                    return
            elif self.prev_is_text and _SETEXT_RE.match(line):
                text_line = self.prev_line
                self._pop_last()  # the heading's text line was taken for body text
                self._open(_Heading(1 if first == "=" else 2, text_line.strip()))
                self.prev_is_text = False
                self._after(line, heading=True)
                return
        blank = not line.strip()
        # A setext heading needs a single-line paragraph: the line before the text is blank or a heading.
        before_ok = self.at_start or not self.prev_line.strip() or self.prev_heading
        self.prev_is_text = not blank and before_ok and not _NOT_SETEXT_TEXT_RE.match(line)
        self._append(line, cont)
        self._after(line, heading=False)

    def _after(self, line: str, heading: bool) -> None:
        self.prev_line = line
        self.prev_heading = heading
        self.at_start = False
        if line.strip():
            self.any_text = True

    # -- the open section ----------------------------------------------------------------------

    def _append(self, text: str, cont: bool) -> None:
        if not cont and text.strip():
            self.nonblank += 1
        if cont and text.strip() and not self.nonblank:
            self.nonblank = 1
        if self.flat and text.strip():
            self.any_text = True
        if not self.keep:
            return
        piece = text if cont or not self.body else "\n" + text
        self.body.append(piece)
        self.body_chars += len(piece)
        if self.body_chars > self.part_chars and len(self.body) > 1:
            self._emit_part()

    def _pop_last(self) -> None:
        self.nonblank -= 1  # the setext text line is never blank
        if self.keep and self.body:
            self.body_chars -= len(self.body.pop())

    def _open(self, heading: _Heading) -> None:
        self._close()
        if heading.level == 1 and heading.text and self.h1_title is None:
            self.h1_title = heading.text
        page = page_from_heading(heading.text)
        if page is not None:
            self.page = page
        while self.stack and self.stack[-1].level >= heading.level:
            self.stack.pop()
        self.stack.append(heading)
        self.number += 1
        self.heading = heading
        self.parts = 0

    def _heading_line(self) -> str:
        h = self.heading
        return "" if h is None else "#" * h.level + (" " + h.text if h.text else "")

    def _emit(self, pieces: list[str], part: int | None) -> None:
        body = "".join(pieces)
        body = body.strip() if self.flat else body.strip("\n").rstrip()
        if not body.strip() or self.make_doc is None:
            return
        heading_line = self._heading_line()
        text = f"{heading_line}\n\n{body}" if heading_line else body
        path = " > ".join(s.text for s in self.stack if s.text) if self.heading is not None else ""
        self.out.append(self.make_doc(self.number, path, text, part, self.page))

    def _emit_part(self) -> None:
        """Emit the front of an over-long section as a part, ending after a blank line if possible.

        The last piece stays: it may turn out to be the text line of a setext heading.
        """
        half = self.body_chars // 2
        cut, seen = len(self.body) - 1, 0
        for i in range(len(self.body) - 2, 0, -1):
            seen += len(self.body[i + 1])
            if self.body_chars - seen < half:
                break
            if not self.body[i].strip():  # a blank line
                cut = i + 1
                break
        pieces, self.body = self.body[:cut], self.body[cut:]
        self.body_chars -= sum(len(p) for p in pieces)
        self.parts += 1
        self._emit(pieces, self.parts)

    def _close(self) -> None:
        if self.nonblank > 0:
            self.any_body = True
        if self.keep:
            self._emit(self.body, self.parts + 1 if self.parts else None)
        self.body, self.body_chars, self.nonblank = [], 0, 0

    def finish(self) -> None:
        self._close()


def _front_matter(lines: Iterator[Line], scanner: _Sections) -> Iterator[Line]:
    """Consume a YAML front matter block at the top (setting ``front_title``); yield the other lines."""
    first = next(lines, None)
    if first is None:
        return
    if first[0].rstrip() != "---" or first[1]:
        yield first
        yield from lines
        return
    held: list[Line] = [first]
    for line in lines:
        if line[0].rstrip() in ("---", "...") and not line[1]:
            for text, _ in held[1:]:
                m = _FRONT_MATTER_TITLE_RE.match(text)
                if m and m.group(2).strip() and scanner.front_title is None:
                    scanner.front_title = m.group(2).strip()
                page = page_from_front_matter(text)
                if page is not None and scanner.front_page is None:
                    scanner.front_page = page
            yield from lines
            return
        held.append(line)
        if len(held) >= _FRONT_MATTER_MAX_LINES:
            break
    yield from held  # no closing line: not front matter after all
    yield from lines


def _scan(lines: Iterator[Line], scanner: _Sections) -> Iterator[list[Document]]:
    """Feed every line to ``scanner``, yielding finished documents in batches of about PART_CHARS."""
    batch: list[Document] = []
    size = 0
    for text, cont in _front_matter(lines, scanner):
        scanner.feed(text, cont)
        if scanner.out:
            batch.extend(scanner.out)
            size += sum(len(d.text) for d in scanner.out)
            scanner.out.clear()
            if size >= scanner.part_chars:
                yield batch
                batch, size = [], 0
    scanner.finish()
    batch.extend(scanner.out)
    if batch:
        yield batch


def prepare_markdown(path: Path, part_chars: int = PART_CHARS) -> Iterator[list[Document]]:
    """Check the file and find its title now; return the documents, in batches, as they are read."""
    lines: Callable[[], Iterable[Line]]
    if path.stat().st_size <= SMALL_FILE_BYTES:
        text = read_text(path)
        lines = lambda: iter_line_pieces([text])  # noqa: E731
    else:
        scan = scan_text(path)
        lines = lambda: iter_line_pieces(iter_clean_blocks(path, scan))  # noqa: E731
    survey = _Sections(None, part_chars)
    for _ in _scan(iter(lines()), survey):
        pass
    if not survey.any_text:
        raise UnreadableFileError(path, "no content after the front matter")
    base = base_metadata(path, "markdown")
    title = survey.h1_title or survey.front_title
    if title:
        base["title"] = title
    file_page = survey.front_page or page_from_name(path)
    doc_id = display_path(path)

    def make_doc(section: int, heading_path: str, body: str, part: int | None, page: int | None) -> Document:
        meta: Metadata = {**base, "heading_path": heading_path, "section": section}
        if page is not None or file_page is not None:
            meta["page"] = page if page is not None else file_page
        suffix = f"#section={section}"
        if part is not None:
            meta["part"] = part
            suffix += f"&part={part}"
        return Document(id=doc_id + suffix, text=body, metadata=meta)

    def documents() -> Iterator[list[Document]]:
        scanner = _Sections(make_doc, part_chars)
        # Only headings and no body anywhere: keep the headings rather than lose the file.
        scanner.flat = not survey.any_body
        yield from _scan(iter(lines()), scanner)

    return documents()


def _joinable(a: Document, b: Document) -> bool:
    """Two Markdown sections that may become one document: same file and page, neither a part."""
    ma, mb = a.metadata, b.metadata
    return (
        "section" in ma
        and "section" in mb
        and ma.get("file_path") == mb.get("file_path")
        and ma.get("page") == mb.get("page")
        and "part" not in ma
        and "part" not in mb
    )


def _join(a: Document, b: Document) -> Document:
    return Document(id=a.id, text=f"{a.text}\n\n{b.text}", metadata=a.metadata)


def merge_small_sections(docs: Iterable[Document], min_chars: int = MIN_SECTION_CHARS) -> list[Document]:
    """``docs`` with each Markdown section shorter than ``min_chars`` joined to a neighbour.

    A short section joins the one before it while the two stay under ``_MAX_BACK_MERGE_CHARS``
    characters; otherwise (and at the start of a file or page) it absorbs the sections after it,
    on the same page, until it reaches ``min_chars``. The joined document keeps the first
    section's id and metadata; its text is the sections' texts with a blank line between them.
    Documents that are not Markdown sections (no ``section`` metadata) pass through unchanged.
    """
    out: list[Document] = []
    pending: Document | None = None
    for doc in docs:
        if pending is None:
            pending = doc
        elif _joinable(pending, doc) and (
            len(pending.text) < min_chars
            or (len(doc.text) < min_chars and len(pending.text) + len(doc.text) <= _MAX_BACK_MERGE_CHARS)
        ):
            pending = _join(pending, doc)
        else:
            out.append(pending)
            pending = doc
    if pending is not None:
        out.append(pending)
    return out


def load_markdown(path: Path) -> list[Document]:
    """One Document per non-empty section, with ``heading_path``, ``section``, ``title`` and, when
    the file says which page it is, ``page``."""
    return [doc for batch in prepare_markdown(path) for doc in batch]
