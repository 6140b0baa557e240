"""Spreadsheets and CSV files: one document per row, with the row's cells as typed metadata.

The first non-empty row is the header. Every later non-empty row becomes a document whose text
is its cells as ``header: value`` lines and whose metadata holds them typed
(:mod:`kvgraph.ingest.loaders.records`), plus ``row``: the row number a spreadsheet shows
(the header is usually row 1, the first data row row 2), so a citation can point at it.

* **CSV** (``.csv``, ``.tsv``): any encoding the text loaders read (UTF-8/16, Latin-1, cp1252...:
  Excel exports are often cp1252); the delimiter (``, ; tab |``) is sniffed from the start of the
  file, ``.tsv`` is always tab. Ids are ``FILE#row=N``. A first pass checks the whole file (its
  encoding, then every record) before any document is produced, so a malformed file is refused
  before anything is stored; the second pass hands out rows as they are read.
* **Excel** (``.xlsx``, ``.xlsm``; openpyxl, in the ``formats`` extra): every worksheet, read
  row by row in openpyxl's streaming mode, with formula cells as their last computed values.
  Ids are ``FILE#sheet=K&row=N`` (K: the sheet's position); metadata has ``sheet`` (its name)
  and, when the workbook has several sheets, ``heading_path`` = the sheet name, so search
  results say which sheet a row comes from.

Rows are handed out lazily and stored in batches of about a million characters, so a sheet of
any length (up to the file size limit) is read in bounded memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kvgraph.ingest.loaders.archive import open_checked
from kvgraph.ingest.loaders.common import base_metadata, clean_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.optional import import_format_library
from kvgraph.ingest.loaders.records import field_keys, parse_cell, record_metadata, record_text, typed_value
from kvgraph.ingest.loaders.stream import TextScan, iter_clean_blocks, iter_lines, scan_text
from kvgraph.schema import Document, Metadata, Scalar

__all__ = ["prepare_csv", "prepare_xlsx"]

_SNIFF_CHARS = 64 * 1024
_DELIMITERS = ",;\t|"


# ---------------------------------------------------------------------------------------------- CSV


class _Delimited(csv.excel):
    """Excel's CSV conventions (double quotes, doubled to escape) with the sniffed delimiter: the
    sniffer is reliable about delimiters, much less about quoting."""


def _dialect(path: Path, scan: TextScan) -> type[csv.Dialect]:
    if path.suffix.lower() == ".tsv":
        return csv.excel_tab
    sample = ""
    for block in iter_clean_blocks(path, scan):
        sample += block
        if len(sample) >= _SNIFF_CHARS:
            break
    sample = sample[:_SNIFF_CHARS]
    if "\n" in sample.rstrip("\n"):
        sample = sample[: sample.rstrip("\n").rfind("\n")]  # whole lines only
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:  # one column, or too irregular to tell: the standard comma
        return csv.excel
    return type("Sniffed", (_Delimited,), {"delimiter": delimiter})


def _records(path: Path, scan: TextScan, dialect: type[csv.Dialect]) -> Iterator[tuple[int, list[str]]]:
    """(record number, cells) of every record, numbered from 1 as a spreadsheet shows them."""
    reader = csv.reader(iter_lines(iter_clean_blocks(path, scan)), dialect)
    number = 0
    try:
        for cells in reader:
            number += 1
            yield number, cells
    except csv.Error as exc:
        limit = csv.field_size_limit()
        reason = str(exc)
        if "field larger than field limit" in reason:
            reason = f"a field longer than {limit:,} characters"
        raise UnreadableFileError(path, f"malformed CSV at line {reader.line_num}: {reason}") from None


def _is_empty(cells: Sequence[object]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def prepare_csv(path: Path) -> Iterator[Document]:
    """Check the whole file now (encoding, every record, a header and a data row); return its rows lazily."""
    scan = scan_text(path)  # empty, binary and undecodable files are refused here
    dialect = _dialect(path, scan)
    header: list[str] | None = None
    rows = 0
    for _, cells in _records(path, scan, dialect):
        if _is_empty(cells):
            continue
        if header is None:
            header = cells
        else:
            rows += 1
    if header is None:
        raise UnreadableFileError(path, "no rows (an empty CSV file)")
    if not rows:
        raise UnreadableFileError(path, "only a header row, no data rows")
    return _csv_documents(path, scan, dialect)


def _csv_documents(path: Path, scan: TextScan, dialect: type[csv.Dialect]) -> Iterator[Document]:
    base = base_metadata(path, "csv")
    doc_id = display_path(path)
    names: list[str] = []
    keys: list[str] = []
    for number, cells in _records(path, scan, dialect):
        if _is_empty(cells):
            continue
        cleaned = [clean_text(c) for c in cells]
        if not names:
            names = [" ".join(c.split()) for c in cleaned]
            keys = field_keys(names, "column")
            continue
        values = [parse_cell(c) for c in cleaned]
        yield _row_document(f"{doc_id}#row={number}", {**base, "row": number}, names, keys, values)


def _row_document(doc_id: str, base: Metadata, names: list[str], keys: list[str], values: Sequence[Scalar]) -> Document:
    if len(values) > len(names):  # a row longer than the header: its extra cells get column names
        extra = [f"column_{n}" for n in range(len(names) + 1, len(values) + 1)]
        names = [*names, *extra]
        keys = field_keys(names, "column")
    shown_names = [name or f"column_{n}" for n, name in enumerate(names, start=1)]
    text = record_text(zip(shown_names, values))
    meta = record_metadata(base, zip(keys, values))
    return Document(id=doc_id, text=text, metadata=meta)


# --------------------------------------------------------------------------------------------- Excel


@contextmanager
def _open_workbook(path: Path) -> Iterator[Any]:
    """The workbook in openpyxl's streaming (read-only) mode, cells as their values; closed after."""
    openpyxl = import_format_library(path, "openpyxl", "openpyxl")
    with open_checked(path, ".xlsx") as handle:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        try:
            yield workbook
        finally:
            workbook.close()


def prepare_xlsx(path: Path) -> Iterator[Document]:
    """Check the workbook now (it opens; some sheet has a header and a data row); return its rows lazily."""
    with _open_workbook(path) as workbook:
        found = any(_first_rows(sheet) for sheet in workbook.worksheets)
        count = len(workbook.worksheets)
    if not found:
        raise UnreadableFileError(path, f"no data rows (a header and at least one row) in any of its {count} sheet(s)")
    return _xlsx_documents(path)


def _first_rows(sheet: Any) -> bool:
    """Whether a sheet has a header row and a data row after it (stops at the second non-empty row)."""
    seen = 0
    for values in sheet.iter_rows(min_row=1, values_only=True):
        if not _is_empty(values):
            seen += 1
            if seen == 2:
                return True
    return False


def _xlsx_documents(path: Path) -> Iterator[Document]:
    base = base_metadata(path, "xlsx")
    doc_id = display_path(path)
    with _open_workbook(path) as workbook:
        sheets = list(workbook.worksheets)
        for position, sheet in enumerate(sheets, start=1):
            sheet_base: Metadata = {**base, "sheet": str(sheet.title)}
            if len(sheets) > 1:
                sheet_base["heading_path"] = str(sheet.title)
            names: list[str] = []
            keys: list[str] = []
            for number, raw in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
                if _is_empty(raw):
                    continue
                values = [typed_value(v) for v in raw]
                if not names:
                    names = [" ".join(("" if v is None else str(v)).split()) for v in values]
                    keys = field_keys(names, "column")
                    continue
                yield _row_document(
                    f"{doc_id}#sheet={position}&row={number}", {**sheet_base, "row": number}, names, keys, values
                )
