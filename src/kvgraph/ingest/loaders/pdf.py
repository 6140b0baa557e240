"""PDF files via pypdfium2: one document per page that has text.

Pages are extracted one at a time and only their text is kept; the loader returns every
page's text at once (PDF text is a small fraction of the file), and the ingest pipeline then
splits, embeds and stores the pages in batches of at most ``PART_CHARS`` characters.

PDFium reports glyphs without a Unicode mapping (e.g. small-caps title fonts) as NUL or
U+FFFE; those are stripped with the other control characters, since they carry no text
and break tokenizers. A PDF with no text on any page is rejected as having no text
layer: it is most likely scanned, and OCR is out of scope here.
"""

from __future__ import annotations

from pathlib import Path

from kvgraph.ingest.loaders.common import base_metadata, clean_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path, open_regular
from kvgraph.schema import Document


def _open_error(exc: Exception) -> str:
    import pypdfium2.raw as pdfium_c

    code = getattr(exc, "err_code", None)
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return "encrypted PDF (password-protected); decrypt it first (e.g. qpdf --decrypt)"
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return "PDF uses an unsupported security handler (encrypted); decrypt it first"
    if code == pdfium_c.FPDF_ERR_FORMAT:
        return "corrupt PDF (or not a PDF): PDFium could not parse it (data format error; truncated?)"
    return f"corrupt PDF: PDFium could not open it ({exc})"


def load_pdf(path: Path) -> list[Document]:
    """One Document per page with text, with ``page`` (1-based), ``total_pages`` and ``title``."""
    import pypdfium2 as pdfium

    base = base_metadata(path, "pdf")
    if base["file_size"] == 0:
        raise UnreadableFileError(path, "empty file")
    # Opened through a checked descriptor, never by name: a FIFO swapped in cannot block PDFium.
    handle = open_regular(path)
    try:
        pdf = pdfium.PdfDocument(handle, autoclose=True)
    except pdfium.PdfiumError as exc:
        handle.close()
        raise UnreadableFileError(path, _open_error(exc)) from None
    except BaseException:
        handle.close()
        raise
    docs: list[Document] = []
    try:
        total = len(pdf)
        title = clean_text(str(pdf.get_metadata_dict().get("Title") or "")).strip()
        base["total_pages"] = total
        if title:
            base["title"] = title
        for index in range(total):
            try:
                page = pdf[index]
            except pdfium.PdfiumError as exc:
                raise UnreadableFileError(path, f"corrupt PDF: page {index + 1} cannot be loaded ({exc})") from None
            try:
                textpage = page.get_textpage()
                try:
                    text = clean_text(textpage.get_text_range()).strip()
                finally:
                    textpage.close()
            finally:
                page.close()
            if text:  # image-only pages (figures, blank pages) are not documents
                meta = {**base, "page": index + 1}
                docs.append(Document(id=f"{display_path(path)}#page={index + 1}", text=text, metadata=meta))
    finally:
        pdf.close()
    if not docs:
        raise UnreadableFileError(path, f"no text layer on any of its {total} page(s) (scanned? OCR it first)")
    return docs
