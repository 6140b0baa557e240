"""Document loaders against real files: generated PDFs, the shared Llama 2 excerpt, text, Markdown, HTML."""

from __future__ import annotations

import codecs
import os
import re
import tracemalloc
from datetime import datetime
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.ingest.loaders import (
    PART_CHARS,
    SUPPORTED_EXTENSIONS,
    LoadResult,
    SkippedFile,
    extract_html,
    load_file,
    load_file_batches,
    load_paths,
    walk,
)
from kvgraph.ingest.loaders.walk import glob_regex
from kvgraph.schema import validate_metadata
from kvgraph.testing.pdf import write_encrypted_pdf, write_image_only_pdf, write_pdf
from support import datasets_root

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS = datasets_root()
LLAMA_PDF = DATASETS / "llama2" / "llama2_pages1-4_excerpt.pdf"
# Control characters other than \n and \t, and the U+FFFE/U+FFFF noncharacters PDFium emits.
CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")

needs_llama = pytest.mark.skipif(
    not LLAMA_PDF.is_file(), reason=f"shared dataset missing: {LLAMA_PDF} (set KVGRAPH_DATASETS to the datasets folder)"
)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8"))
    else:
        path.write_bytes(data)
    return path


def check_common_metadata(doc_meta: dict, path: Path, file_type: str) -> None:
    assert doc_meta["file_path"] == str(path.resolve())
    assert doc_meta["file_name"] == path.name
    assert doc_meta["file_type"] == file_type
    assert doc_meta["file_size"] == path.stat().st_size
    modified = datetime.fromisoformat(str(doc_meta["last_modified"]))
    assert abs(modified.timestamp() - path.stat().st_mtime) < 1e-3
    validate_metadata(doc_meta, "doc")  # flat, JSON-compatible values only


def error_of(path: Path) -> str:
    with pytest.raises(InvalidInputError) as info:
        load_file(path)
    message = str(info.value)
    assert str(path) in message, f"error does not name the path: {message}"
    return message


# --- plain text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".text", ".rst", ".log", ".TXT"])
def test_text_file_is_one_document_with_metadata(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"notes{suffix}", "first line\r\nsecond\tline\rthird line\n")
    [doc] = load_file(path)
    assert doc.text == "first line\nsecond\tline\nthird line\n"
    assert doc.id == str(path.resolve())
    check_common_metadata(doc.metadata, path, "text")


def test_file_path_metadata_is_resolved_through_symlinks(tmp_path: Path) -> None:
    real = write(tmp_path / "real" / "a.txt", "hello")
    link = tmp_path / "link"
    link.symlink_to(real.parent, target_is_directory=True)
    [doc] = load_file(link / "a.txt")
    assert doc.metadata["file_path"] == str(real.resolve())
    assert doc.id == str(real.resolve())


@pytest.mark.parametrize(
    ("encoded", "label"),
    [
        (codecs.BOM_UTF8 + "caf\u00e9 \u2014 ok".encode(), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + "caf\u00e9 \u2014 ok".encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + "caf\u00e9 \u2014 ok".encode("utf-16-be"), "utf-16-be"),
    ],
)
def test_bom_encodings_decode_and_bom_is_stripped(tmp_path: Path, encoded: bytes, label: str) -> None:
    [doc] = load_file(write(tmp_path / f"{label}.txt", encoded))
    assert doc.text == "caf\u00e9 \u2014 ok"


def test_invalid_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    # UTF-8 (the accents before) with one Latin-1 byte: broken UTF-8, not a Latin-1 file
    # (Latin-1 files are read: tests/ingest/test_encodings.py).
    data = "line \u00fcn\u00e9\ncaf".encode() + b"\xe9 au lait " + "d\u00e9j\u00e0 vu\n".encode()
    path = write(tmp_path / "broken.txt", data)
    message = error_of(path)
    assert "UTF-8" in message and "otherwise UTF-8" in message
    assert "byte offset 14" in message  # "line \u00fcn\u00e9\n" is 11 bytes, then "caf", then 0xe9
    assert "line 2" in message
    assert "e9" in message


def test_binary_file_named_txt_is_rejected(tmp_path: Path) -> None:
    png_like = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    assert "binary" in error_of(write(tmp_path / "image.txt", png_like))


def test_control_heavy_file_without_nul_is_binary(tmp_path: Path) -> None:
    data = bytes([1, 2, 3, 4, 65, 66, 5, 6]) * 500  # valid UTF-8, but half control bytes
    assert "binary" in error_of(write(tmp_path / "ctl.log", data))


def test_stray_control_characters_are_stripped_but_tabs_kept(tmp_path: Path) -> None:
    [doc] = load_file(write(tmp_path / "log.log", "a\x07b\tc\x1b[0m\fd\ufeffe"))
    # \x07 and ESC dropped, \f becomes a line break, a mid-text U+FEFF (format char) is kept.
    assert doc.text == "ab\tc[0m\nd\ufeffe"


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n "])
def test_empty_or_blank_text_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    assert "empty" in error_of(write(tmp_path / "empty.md", content))


def test_missing_file_and_unsupported_extension(tmp_path: Path) -> None:
    assert "no such file" in error_of(tmp_path / "nope.txt")
    message = error_of(write(tmp_path / "data.xyz", "text"))
    assert "'.xyz'" in message and "unsupported" in message
    assert "(no extension)" in error_of(write(tmp_path / "README", "text"))
    assert "not a regular file" in error_of(tmp_path)


def test_large_text_file_is_read_in_parts_in_bounded_memory(tmp_path: Path) -> None:
    line = "The quick brown fox jumps over the lazy dog, 0123456789.\r\n"
    path = write(tmp_path / "big.txt", line * 150_000)  # ~9 MB, ASCII: 1 byte per char as bytes and as str
    size = path.stat().st_size
    tracemalloc.start()
    try:
        lengths = [len(doc.text) for batch in load_file_batches(path) for doc in batch]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(lengths) == size - 150_000  # every \r\n became \n, nothing lost between parts
    assert len(lengths) == 9 and max(lengths) <= PART_CHARS
    # A few parts' worth (blocks being decoded, a part being cut), not the file's 9 MB.
    assert peak < 6 * PART_CHARS, f"peak {peak / PART_CHARS:.1f} parts, {peak / size:.2f}x the file size"


# --- Markdown -------------------------------------------------------------------------------------

MARKDOWN = """Intro text before any heading.

# Project Guide

Welcome to the guide.

## Install

### Linux

Run the installer:

```bash
# this is a shell comment, not a heading
./install.sh
```

~~~
## also not a heading
~~~

### macOS ###

Use brew.

## Usage

Call `run()`.

Setext Title
------------

Under a setext heading.
"""


def test_markdown_sections_have_heading_paths_and_skip_code_fences(tmp_path: Path) -> None:
    path = write(tmp_path / "guide.md", MARKDOWN)
    docs = load_file(path)
    by_path = {d.metadata["heading_path"]: d for d in docs}
    assert list(by_path) == [
        "",
        "Project Guide",
        "Project Guide > Install > Linux",
        "Project Guide > Install > macOS",
        "Project Guide > Usage",
        "Project Guide > Setext Title",
    ]
    # Sections count every heading, so the skipped empty "Install" section leaves a gap (3).
    assert [d.metadata["section"] for d in docs] == [0, 1, 3, 4, 5, 6]
    assert [d.id for d in docs] == [f"{path.resolve()}#section={d.metadata['section']}" for d in docs]
    assert docs[0].text == "Intro text before any heading."
    linux = by_path["Project Guide > Install > Linux"].text
    assert linux.startswith("### Linux\n\nRun the installer:")
    assert "# this is a shell comment, not a heading" in linux
    assert "## also not a heading" in linux
    assert by_path["Project Guide > Install > macOS"].text == "### macOS\n\nUse brew."
    assert by_path["Project Guide > Setext Title"].text == "## Setext Title\n\nUnder a setext heading."
    for doc in docs:
        assert doc.metadata["title"] == "Project Guide"
        check_common_metadata(doc.metadata, path, "markdown")


def test_markdown_unclosed_fence_swallows_rest_and_thematic_break_is_not_heading(tmp_path: Path) -> None:
    text = "# Top\n\npara one\n\n---\n\nafter rule\n\n```\n# inside\n## still inside\n"
    [doc] = load_file(write(tmp_path / "a.markdown", text))
    assert doc.metadata["heading_path"] == "Top"
    assert "---" in doc.text and "## still inside" in doc.text


def test_markdown_front_matter_gives_title_and_is_not_content(tmp_path: Path) -> None:
    text = '---\ntitle: "Release Notes"\ntags: [a]\n---\nSome notes.\n\n## v1.0\n\nFirst.\n'
    docs = load_file(write(tmp_path / "notes.md", text))
    assert [d.text for d in docs] == ["Some notes.", "## v1.0\n\nFirst."]
    assert all(d.metadata["title"] == "Release Notes" for d in docs)
    assert docs[1].metadata["heading_path"] == "v1.0"


def test_markdown_without_title_or_body(tmp_path: Path) -> None:
    [plain] = load_file(write(tmp_path / "plain.md", "just text\nmore text\n"))
    assert "title" not in plain.metadata and plain.metadata["heading_path"] == ""
    [headings_only] = load_file(write(tmp_path / "h.md", "# A\n## B\n"))
    assert headings_only.text == "# A\n## B"  # kept rather than dropping the whole file


# --- HTML ------------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><title>  Widget   Manual </title>
<style>body { color: red }</style><script>var secret = "SCRIPT_TEXT";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/docs">NAV_LINK</a></nav>
<header><h1>Site Banner</h1></header>
<main>
  <h1>Using &amp; configuring widgets</h1>
  <p>Widgets   are
     <b>small</b>&nbsp;parts &#8212; see <a href="#x">below</a>.</p>
  <ul><li>first item</li><li>second item</li></ul>
  <pre>def f():
    return 1</pre>
  <table><tr><th>name</th><th>size</th></tr><tr><td>bolt</td><td>4</td></tr></table>
  <form><label>FORM_LABEL</label></form>
  <noscript>NOSCRIPT_TEXT</noscript>
</main>
<aside>ASIDE_TEXT</aside>
<footer>FOOTER_TEXT</footer>
</body></html>
"""


def test_html_main_content_extraction(tmp_path: Path) -> None:
    path = write(tmp_path / "manual.html", PAGE)
    [doc] = load_file(path)
    assert doc.metadata["title"] == "Widget Manual"
    assert doc.text == (
        "Using & configuring widgets\n\n"
        "Widgets are small parts \u2014 see below.\n\n"  # &nbsp; collapses to a plain space
        "first item\nsecond item\n\n"
        "def f():\n    return 1\n\n"
        "name | size\nbolt | 4"
    )
    for dropped in ["SCRIPT_TEXT", "NAV_LINK", "Site Banner", "FORM_LABEL", "NOSCRIPT_TEXT", "ASIDE_TEXT", "FOOTER"]:
        assert dropped not in doc.text
    check_common_metadata(doc.metadata, path, "html")
    assert doc.id == str(path.resolve())


def test_html_article_and_body_fallbacks_and_h1_title() -> None:
    text, title = extract_html("<body><nav>menu</nav><article><h1>Post</h1><p>One.</p></article><p>Other</p></body>")
    assert (text, title) == ("Post\n\nOne.", "Post")
    text, title = extract_html("<p>Fragment <i>only</i></p><p>Second</p>")
    assert (text, title) == ("Fragment only\n\nSecond", None)


def test_html_sloppy_markup_unclosed_head_and_paragraphs() -> None:
    text, title = extract_html("<html><head><title>T</title><body><p>a<p>b<ul><li>x<li>y</ul>done")
    assert title == "T"
    assert text == "a\n\nb\n\nx\ny\n\ndone"


def test_html_with_only_scripts_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "app.htm", "<html><body><script>app()</script><nav>x</nav></body></html>")
    assert "no text" in error_of(path)


# --- PDF ---------------------------------------------------------------------------------------------


def test_generated_pdf_roundtrip_one_document_per_page(tmp_path: Path) -> None:
    long_page = " ".join(f"word{i}" for i in range(300))
    pages = ["Alpha page (one) with a back\\slash and caf\u00e9.", long_page, "Gamma closing page."]
    path = write_pdf(tmp_path / "doc.pdf", pages, title="Generated Title")
    docs = load_file(path)
    assert [d.metadata["page"] for d in docs] == [1, 2, 3]
    assert [d.id for d in docs] == [f"{path.resolve()}#page={n}" for n in (1, 2, 3)]
    assert docs[0].text == pages[0]
    assert docs[1].text.split() == long_page.split()  # wrapped into lines, words and order intact
    assert "\n" in docs[1].text and "\r" not in docs[1].text
    for doc in docs:
        assert doc.metadata["total_pages"] == 3
        assert doc.metadata["title"] == "Generated Title"
        check_common_metadata(doc.metadata, path, "pdf")


def test_pdf_pages_without_text_are_skipped_but_numbering_kept(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "gap.pdf", ["first", "", "third"])
    docs = load_file(path)
    assert [(d.metadata["page"], d.text) for d in docs] == [(1, "first"), (3, "third")]
    assert all(d.metadata["total_pages"] == 3 and "title" not in d.metadata for d in docs)


def test_pdf_writer_long_page_grows_instead_of_overflowing(tmp_path: Path) -> None:
    lines = [f"line number {i}" for i in range(120)]
    path = write_pdf(tmp_path / "tall.pdf", ["\n".join(lines)])
    pdf = pdfium.PdfDocument(str(path))
    try:
        assert pdf[0].get_size()[1] > 792
    finally:
        pdf.close()
    [doc] = load_file(path)
    assert doc.text.split("\n") == lines


def test_pdf_writer_rejects_text_it_cannot_encode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WinAnsi"):
        write_pdf(tmp_path / "x.pdf", ["snowman \u2603"])


def test_image_only_pdf_has_no_text_layer(tmp_path: Path) -> None:
    message = error_of(write_image_only_pdf(tmp_path / "scan.pdf", 3))
    assert "no text layer" in message and "scanned" in message


def test_encrypted_pdf_is_rejected_and_genuinely_encrypted(tmp_path: Path) -> None:
    path = write_encrypted_pdf(tmp_path / "locked.pdf", ["Confidential quarterly numbers"], user_password="pw")
    assert "encrypted" in error_of(path)
    assert b"Confidential" not in path.read_bytes()  # the content stream really is encrypted
    pdf = pdfium.PdfDocument(str(path), password="pw")
    try:
        assert pdf[0].get_textpage().get_text_range() == "Confidential quarterly numbers"
    finally:
        pdf.close()


def test_corrupt_pdfs(tmp_path: Path) -> None:
    assert "corrupt" in error_of(write(tmp_path / "garbage.pdf", os.urandom(2048)))
    good = write_pdf(tmp_path / "good.pdf", ["some text " * 50] * 3).read_bytes()
    assert "corrupt" in error_of(write(tmp_path / "truncated.pdf", good[: len(good) // 2]))
    assert "empty" in error_of(write(tmp_path / "empty.pdf", b""))


@needs_llama
def test_real_llama2_excerpt(tmp_path: Path) -> None:
    docs = load_file(LLAMA_PDF)
    assert [d.metadata["page"] for d in docs] == [1, 2, 3, 4]
    assert all(d.metadata["total_pages"] == 4 for d in docs)
    assert "title" not in docs[0].metadata  # the file's Title entry is empty
    for doc in docs:
        assert not CONTROL_RE.search(doc.text), "control characters survived"
        assert "\r" not in doc.text
        assert len(doc.text) > 1000
        check_common_metadata(doc.metadata, LLAMA_PDF, "pdf")
    assert "Llama 2" in docs[0].text
    assert "Open Foundation and Fine-Tuned Chat Models" in docs[0].text
    assert docs[1].text.startswith("Contents")
    assert "Figure 1" in docs[2].text and "Figure 3" in docs[3].text
    # A truncated copy of the real file is reported as corrupt, not half-loaded.
    data = LLAMA_PDF.read_bytes()
    assert "corrupt" in error_of(write(tmp_path / "cut.pdf", data[: len(data) * 9 // 10]))


# --- walking and batch loading ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    for rel in ["a/b.md", "a/c.txt", "sub/deep/d.html", "build/e.md", "z.rst", ".git/x.md", ".kvgraph/y.txt"]:
        write(root / rel, f"content of {rel}\n")
    write(root / ".hidden.md", "hidden")
    write(root / "img.png", b"\x89PNG\x00\x00")
    write(root / "a/notes.MD", "upper-case extension")
    return root


def rels(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_walk_defaults_supported_sorted_and_no_hidden(tree: Path) -> None:
    assert rels(walk(tree), tree) == ["a/b.md", "a/c.txt", "a/notes.MD", "build/e.md", "sub/deep/d.html", "z.rst"]
    assert all(p.is_absolute() for p in walk(tree))


def test_walk_include_and_exclude_globs(tree: Path) -> None:
    assert rels(walk(tree, include=["*.md"]), tree) == ["a/b.md", "build/e.md"]
    assert rels(walk(tree, include=["a/**"]), tree) == ["a/b.md", "a/c.txt", "a/notes.MD"]
    assert rels(walk(tree, include=["**/deep/*.html"]), tree) == ["sub/deep/d.html"]
    # include overrides the extension filter: the user asked for PNGs.
    assert rels(walk(tree, include=["*.png"]), tree) == ["img.png"]
    assert rels(walk(tree, exclude=["build/", "*.txt"]), tree) == ["a/b.md", "a/notes.MD", "sub/deep/d.html", "z.rst"]
    assert rels(walk(tree, exclude=["sub"]), tree) == ["a/b.md", "a/c.txt", "a/notes.MD", "build/e.md", "z.rst"]
    assert rels(walk(tree, include=["*.md"], exclude=["/build/**"]), tree) == ["a/b.md"]


def test_walk_explicit_files_duplicates_and_missing(tree: Path) -> None:
    png = tree / "img.png"
    files = walk([tree / "z.rst", png, tree, tree / "a"])
    # Named files come first and are kept whatever their type; nothing is listed twice.
    assert rels(files, tree) == ["z.rst", "img.png", "a/b.md", "a/c.txt", "a/notes.MD", "build/e.md", "sub/deep/d.html"]
    assert walk(png, exclude=["*.png"]) == []
    with pytest.raises(InvalidInputError, match="missing-dir"):
        walk([tree, tree / "missing-dir"])


def test_glob_translation() -> None:
    assert glob_regex("docs/**/*.md").fullmatch("docs/a.md")
    assert glob_regex("docs/**/*.md").fullmatch("docs/x/y/a.md")
    assert not glob_regex("docs/*.md").fullmatch("docs/x/a.md")
    assert glob_regex("file?.[!a]xt").fullmatch("deep/file1.txt")
    assert not glob_regex("file?.[!t]xt").fullmatch("file1.txt")
    assert not glob_regex("/top.md").fullmatch("sub/top.md")
    with pytest.raises(InvalidInputError):
        glob_regex("  ")


def test_load_paths_skips_bad_files_and_continues(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write(root / "1-good.md", "# One\n\nbody one\n")
    write(root / "2-binary.txt", b"\x00\x01\x02binary")
    write(root / "3-corrupt.pdf", b"%PDF-1.4 not really")
    write_image_only_pdf(root / "4-scan.pdf", 1)
    write(root / "5-good.txt", "five")
    write_pdf(root / "6-good.pdf", ["page one", "page two"])
    result = load_paths(root)
    assert isinstance(result, LoadResult)
    names = [d.metadata["file_name"] for d in result.documents]
    assert names == ["1-good.md", "5-good.txt", "6-good.pdf", "6-good.pdf"]
    assert [Path(s.path).name for s in result.skipped] == ["2-binary.txt", "3-corrupt.pdf", "4-scan.pdf"]
    assert all(isinstance(s, SkippedFile) for s in result.skipped)
    reasons = [s.reason for s in result.skipped]
    assert "binary" in reasons[0] and "corrupt" in reasons[1] and "no text layer" in reasons[2]
    assert not any(str(root) in r for r in reasons)  # the reason does not repeat the path
    only_md = load_paths([root], include=["*.md"])
    assert [d.text for d in only_md.documents] == ["# One\n\nbody one"] and only_md.skipped == []
    with pytest.raises(InvalidInputError, match="nowhere"):
        load_paths([root, tmp_path / "nowhere"])


def test_supported_extensions_all_dispatch(tmp_path: Path) -> None:
    # The text-based types; every other type is loaded from a real file in tests/ingest/test_formats.py.
    text_based = {".txt", ".text", ".rst", ".log", ".md", ".markdown", ".html", ".htm"}
    assert text_based <= SUPPORTED_EXTENSIONS
    for ext in sorted(text_based):
        docs = load_file(write(tmp_path / f"f{ext}", "<p>hello world</p>\n"))
        assert docs and "hello world" in docs[0].text, ext
