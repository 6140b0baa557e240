"""Page numbers for files that are not PDFs: the conventions kvgraph reads, in one place.

A PDF's documents carry the page they come from (``page``, 1-based). A folder of Markdown, text
or HTML files converted from a paged source gets the same ``page`` metadata when a file says
which page it is, so a search result can cite its page and an evaluation can score by page:

* **The file name** ends in a page number after ``page``, ``pg`` or ``p`` (and optionally a
  ``-``, ``_`` or space), itself at the start of the name or after ``-``, ``_``, ``.`` or a
  space: ``page-023.md``, ``page_7.txt``, ``report_p23.md``, ``paper.pg12.html``, ``p5.md``.
  ``chapter-3.md`` or ``step5.md`` are not pages. The file is then that one page.
* **Front matter** ``page: 23`` in a Markdown file (it wins over the name).
* **A heading** ``Page 23`` (or ``p. 23``) inside a Markdown file starts page 23: the
  sections after it are on that page, until the next such heading. A file of many pages
  written as ``# Page 1`` ... ``# Page 9`` is read that way.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["page_from_front_matter", "page_from_heading", "page_from_name"]

_NAME = re.compile(r"(?:^|[-_. ])(?:page|pg|p)[-_ ]?0*(\d{1,6})$", re.IGNORECASE)
_HEADING = re.compile(r"^(?:page|p\.)\s*0*(\d{1,6})$", re.IGNORECASE)
_FRONT = re.compile(r"""^page:\s*(['"]?)0*(\d{1,6})\1\s*$""", re.IGNORECASE)


def _number(digits: str) -> int | None:
    n = int(digits) if digits else 0
    return n if n >= 1 else None  # page 0 is not a page: pages count from 1


def page_from_name(path: Path) -> int | None:
    """The page a file name names (see the module docstring), else None."""
    m = _NAME.search(path.stem)
    return _number(m.group(1)) if m else None


def page_from_heading(text: str) -> int | None:
    """The page of a heading whose whole text is ``Page N`` / ``p. N``, else None."""
    m = _HEADING.match(text.strip())
    return _number(m.group(1)) if m else None


def page_from_front_matter(line: str) -> int | None:
    """The page of a front-matter line ``page: N``, else None."""
    m = _FRONT.match(line.strip())
    return _number(m.group(2)) if m else None
