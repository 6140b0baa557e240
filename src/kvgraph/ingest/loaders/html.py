"""HTML files: the readable main text of the page, one document per file (stdlib parser only).

The text comes from ``<main>`` if the page has one, else from its ``<article>`` elements,
else from ``<body>`` (or the whole fragment). Page furniture (navigation, headers,
footers, forms) and non-text elements (scripts, styles, SVG) are dropped, because they
repeat on every page of a site and would dominate retrieval.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from kvgraph.ingest.loaders.common import base_metadata, clean_text, read_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.pages import page_from_name
from kvgraph.schema import Document

# Dropped with everything inside them. <title> is collected separately for the metadata.
_DROP = frozenset(
    {"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside", "form", "iframe"}
    | {"head", "title"}
)
# Elements that start a new paragraph (blank line) or just a new line.
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl", "section", "article"}
    | {"main", "figure", "hr", "details", "summary", "address", "fieldset"}
)
_LINE = frozenset({"div", "li", "tr", "br", "dt", "dd", "caption", "figcaption", "center", "body"})
_CELLS = frozenset({"td", "th"})
_CLOSES_P = _PARAGRAPH | {"div", "li", "nav", "header", "footer", "aside", "form"}
_NO_SELF_NESTING = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option"})
# Elements that never have an end tag, so they must not be pushed on the open-element stack.
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
_WS_RE = re.compile(r"\s+")


class _Sink:
    """Builds lines of text: inline whitespace collapsed, block boundaries as line breaks."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.gap = False  # a blank line is due before the next non-empty line

    def inline(self, text: str) -> None:
        text = _WS_RE.sub(" ", text)
        if not self.current or self.current[-1].endswith(" "):
            text = text.lstrip(" ")
        if text:
            self.current.append(text)

    def preformatted(self, text: str) -> None:
        pieces = text.split("\n")
        for n, piece in enumerate(pieces):
            if n:
                self.flush(keep_empty=True)
            self.current.append(piece)

    def flush(self, keep_empty: bool = False, paragraph: bool = False) -> None:
        line = "".join(self.current).rstrip()
        self.current = []
        if line.strip() or (keep_empty and self.lines):
            if self.gap and self.lines:
                self.lines.append("")
            self.gap = False
            self.lines.append(line if line.strip() else "")
        if paragraph:
            self.gap = True

    def text(self) -> str:
        self.flush()
        return "\n".join(self.lines).strip("\n")


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []  # open elements, to recover from unclosed tags
        self.dropping = 0  # open elements in _DROP
        self.pre = 0
        self.cells_in_row = 0
        self.body, self.main, self.article = _Sink(), _Sink(), _Sink()
        self.in_main = 0
        self.in_article = 0
        self.seen_main = False
        self.seen_article = False
        self.title: list[str] | None = None  # collecting <title> text while not None
        self.title_text = ""
        self.h1: list[str] | None = None
        self.h1_text = ""

    def _sinks(self) -> list[_Sink]:
        sinks = [self.body]
        if self.in_main:
            sinks.append(self.main)
        if self.in_article:
            sinks.append(self.article)
        return sinks

    def _break(self, tag: str) -> None:
        if self.dropping:
            return
        if tag in _PARAGRAPH or tag in _LINE:
            for sink in self._sinks():
                sink.flush(paragraph=tag in _PARAGRAPH)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and "head" in self.stack:
            self._close("head")  # <body> implicitly closes an unclosed <head>, as in browsers
        # Omitted end tags (<p>a<p>b, <li>a<li>b) are implied as browsers do; this also keeps
        # the stack shallow, so sloppy pages with thousands of unclosed <p> stay linear.
        if self.stack:
            top = self.stack[-1]
            if (top == "p" and tag in _CLOSES_P) or (top == tag and tag in _NO_SELF_NESTING):
                self._close(top)
        if tag == "title" and not self.title_text:
            self.title = []
        elif tag == "h1" and not self.h1_text:
            self.h1 = []
        if tag in _CELLS and not self.dropping:
            if self.cells_in_row:
                for sink in self._sinks():
                    sink.inline(" | ")
            self.cells_in_row += 1
        elif tag == "tr":
            self.cells_in_row = 0
        self._break(tag)
        if tag in _VOID:
            return
        self.stack.append(tag)
        if tag in _DROP:
            self.dropping += 1
        elif tag == "main":
            self.in_main += 1
            self.seen_main = True
        elif tag == "article":
            self.in_article += 1
            self.seen_article = True
        elif tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <img/>, and self-closed non-void tags like <div/> open nothing.
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.title is not None:
            self.title_text = _WS_RE.sub(" ", "".join(self.title)).strip()
            self.title = None
        elif tag == "h1" and self.h1 is not None:
            self.h1_text = _WS_RE.sub(" ", "".join(self.h1)).strip()
            self.h1 = None
        # Search from the innermost element: it is almost always the one being closed.
        if tag not in reversed(self.stack):
            if tag == "br":  # </br> is treated as <br> by browsers
                self._break(tag)
            return  # a stray end tag closes nothing
        self._close(tag)
        self._break(tag)

    def _close(self, tag: str) -> None:
        """Close the innermost open ``tag`` and everything left open inside it."""
        while self.stack:
            open_tag = self.stack.pop()
            if open_tag in _DROP:
                self.dropping -= 1
            elif open_tag == "main":
                self.in_main -= 1
            elif open_tag == "article":
                self.in_article -= 1
            elif open_tag == "pre":
                self.pre -= 1
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.title is not None:
            self.title.append(data)
        if self.h1 is not None:
            self.h1.append(data)
        if self.dropping:
            return
        for sink in self._sinks():
            if self.pre:
                sink.preformatted(data)
            else:
                sink.inline(data)

    def result(self) -> str:
        if self.seen_main and (text := self.main.text()):
            return text
        if self.seen_article and (text := self.article.text()):
            return text
        return self.body.text()


def extract_html(markup: str) -> tuple[str, str | None]:
    """(main text, title) of an HTML document or fragment."""
    parser = _Extractor()
    parser.feed(markup)
    parser.close()
    title = parser.title_text or parser.h1_text
    return clean_text(parser.result()), clean_text(title) or None


def load_html(path: Path) -> list[Document]:
    """One Document with the page's main text; ``title`` from <title> or the first <h1>; ``page`` when
    the file name says it is one page of a document (``page-023.html``)."""
    text, title = extract_html(read_text(path))
    if not text.strip():
        raise UnreadableFileError(path, "no text content in the HTML (only markup, scripts or navigation)")
    metadata = base_metadata(path, "html")
    if title:
        metadata["title"] = title
    page = page_from_name(path)  # a page of a converted document: page-023.html (kvgraph.ingest.loaders.pages)
    if page is not None:
        metadata["page"] = page
    return [Document(id=display_path(path), text=text, metadata=metadata)]
