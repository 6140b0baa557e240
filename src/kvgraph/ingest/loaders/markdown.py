"""Markdown files: one document per section, with the heading path as metadata.

A section is the text under a heading up to the next heading of any level; text before
the first heading is section 0. Section numbers count every heading (0 = preamble), so a
section keeps its id even when an earlier section is empty and skipped. Each section's
text starts with its own heading, which helps retrieval ("Install > Linux" questions
find the section whose text says "## Linux").

This is a line scanner, not a full CommonMark parser: it knows ATX headings, simple
setext headings, fenced code blocks (whose ``#`` lines are not headings) and YAML front
matter, which covers what matters for splitting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kvgraph.ingest.loaders.common import UnreadableFileError, base_metadata, read_text
from kvgraph.schema import Document

_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE_OPEN_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# Lines that cannot be the text of a setext heading: list items, quotes, tables, rules.
_NOT_SETEXT_TEXT_RE = re.compile(r"^(?: {4}|\t|\s*(?:[-*+]|\d+[.)])(?:\s|$)|\s*>|.*\|)")
_FRONT_MATTER_TITLE_RE = re.compile(r"""^title:\s*(['"]?)(.*?)\1\s*$""")
# The first character of a line that might start a heading, fence or underline: a cheap
# pre-check so that large files do not run three regexes on every line.
_INTERESTING = frozenset("#`~=-")


@dataclass
class _Heading:
    line: int  # index of the first line of the heading
    span: int  # 1 for ATX, 2 for setext (text line + underline)
    level: int
    text: str


@dataclass
class _Parsed:
    body_start: int  # first line after front matter
    front_title: str | None
    headings: list[_Heading] = field(default_factory=list)


def _front_matter(lines: list[str]) -> tuple[int, str | None]:
    """(first content line, title) for a YAML front matter block at the top, if any."""
    if not lines or lines[0].rstrip() != "---":
        return 0, None
    for i in range(1, min(len(lines), 200)):
        if lines[i].rstrip() in ("---", "..."):
            title = None
            for line in lines[1:i]:
                m = _FRONT_MATTER_TITLE_RE.match(line)
                if m and m.group(2).strip():
                    title = m.group(2).strip()
                    break
            return i + 1, title
    return 0, None


def _parse(lines: list[str]) -> _Parsed:
    body_start, front_title = _front_matter(lines)
    parsed = _Parsed(body_start, front_title)
    fence: str | None = None  # the opening fence while inside a fenced code block
    prev_is_text = False  # previous line is a one-line paragraph (a setext candidate)
    for i in range(body_start, len(lines)):
        line = lines[i]
        stripped = line.lstrip(" ")
        first = stripped[:1]
        if fence is not None:
            closing = stripped.rstrip()
            # A closing fence: same character, at least as long, nothing after it, indented <= 3.
            if len(line) - len(stripped) <= 3 and len(closing) >= len(fence) and closing.strip(fence[0]) == "":
                fence = None
            continue
        if first in _INTERESTING and len(line) - len(stripped) <= 3:
            if first in "`~":
                m = _FENCE_OPEN_RE.match(line)
                if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                    fence = m.group(1)
                    prev_is_text = False
                    continue
            elif first == "#":
                m = _ATX_RE.match(line)
                if m:
                    parsed.headings.append(_Heading(i, 1, len(m.group(1)), (m.group(2) or "").strip()))
                    prev_is_text = False
                    continue
            elif prev_is_text and _SETEXT_RE.match(line):
                level = 1 if first == "=" else 2
                parsed.headings.append(_Heading(i - 1, 2, level, lines[i - 1].strip()))
                prev_is_text = False
                continue
        blank = not line.strip()
        # A setext heading needs a single-line paragraph: the line before the text is blank or a heading.
        before = lines[i - 1] if i > body_start else ""
        last = parsed.headings[-1] if parsed.headings else None
        before_ok = i == body_start or not before.strip() or (last is not None and last.line + last.span >= i)
        prev_is_text = not blank and before_ok and not _NOT_SETEXT_TEXT_RE.match(line)
    return parsed


def load_markdown(path: Path) -> list[Document]:
    """One Document per non-empty section, with ``heading_path``, ``section`` and ``title``."""
    text = read_text(path)
    lines = text.split("\n")
    parsed = _parse(lines)
    base = base_metadata(path, "markdown")
    title = next((h.text for h in parsed.headings if h.level == 1 and h.text), None) or parsed.front_title
    if title:
        base["title"] = title

    def doc(section: int, heading_path: str, body: str) -> Document:
        meta = {**base, "heading_path": heading_path, "section": section}
        return Document(id=f"{path}#section={section}", text=body, metadata=meta)

    docs: list[Document] = []
    first_heading = parsed.headings[0].line if parsed.headings else len(lines)
    preamble = "\n".join(lines[parsed.body_start : first_heading]).strip("\n").rstrip()
    if preamble.strip():
        docs.append(doc(0, "", preamble))
    stack: list[_Heading] = []  # open headings, outermost first
    for n, h in enumerate(parsed.headings, start=1):
        while stack and stack[-1].level >= h.level:
            stack.pop()
        stack.append(h)
        end = parsed.headings[n].line if n < len(parsed.headings) else len(lines)
        body = "\n".join(lines[h.line + h.span : end]).strip("\n").rstrip()
        if not body.strip():
            continue  # an empty section still names its children through the stack
        heading_line = "#" * h.level + (" " + h.text if h.text else "")
        docs.append(doc(n, " > ".join(s.text for s in stack if s.text), f"{heading_line}\n\n{body}"))
    if not docs:
        # Only headings and no body anywhere: keep the headings rather than lose the file.
        rest = "\n".join(lines[parsed.body_start :]).strip()
        if not rest:
            raise UnreadableFileError(path, "no content after the front matter")
        docs.append(doc(0, "", rest))
    return docs
