"""JSON and JSON Lines: one document per record, with the record's other fields as metadata.

Records:

* ``.jsonl``/``.ndjson``: every non-blank line is a record; ids ``FILE#line=N`` and ``line``
  metadata (the line number in the file). A first pass parses every line, so a malformed line is
  refused (naming it) before anything is stored; the second pass hands out records as it reads.
* ``.json``: the elements of a top-level array; of a top-level object, the elements of its
  longest array of objects (``{"data": [...]}``), else the object itself. Ids ``FILE#record=N``
  and ``record`` metadata (1-based position).

A record's text is its **text field**, the first of :data:`TEXT_FIELDS` that the records have as
text (``text``, ``content``, ``body``...), else the text field that is longest on average over the
first records (at least :data:`MIN_TEXT_CHARS` characters), chosen once per file; ``text_field``
names it instead. Records without one are written as ``name: value`` lines of their fields, as
spreadsheet rows are. The other fields are metadata (:mod:`kvgraph.ingest.loaders.records`):
nested objects flattened to ``outer.inner`` keys, lists of plain values kept, lists of objects
left out; a field named like one of kvgraph's own keys is stored as ``field.NAME``. A record
that is a plain string is its own text. Empty records are skipped, without renumbering the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kvgraph.ingest.loaders.common import base_metadata, read_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path
from kvgraph.ingest.loaders.records import RESERVED_KEYS, record_metadata, record_text, typed_value
from kvgraph.ingest.loaders.stream import TextScan, iter_clean_blocks, iter_lines, scan_text
from kvgraph.schema import Document, Metadata, MetadataValue, Scalar

__all__ = ["MIN_TEXT_CHARS", "TEXT_FIELDS", "choose_text_field", "load_json", "prepare_jsonl"]

TEXT_FIELDS = ("text", "content", "body", "message", "description", "abstract", "summary", "document", "passage")
MIN_TEXT_CHARS = 20
_SAMPLE_RECORDS = 200
_MAX_DEPTH = 3


def _flatten(record: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth < _MAX_DEPTH:
                yield from _flatten(value, f"{name}.", depth + 1)
        else:
            yield name, value


def choose_text_field(records: Iterable[object]) -> str | None:
    """The field that holds the text of these records (see the module docstring), or None."""
    lengths: dict[str, list[int]] = {}
    count = 0
    for record in records:
        if not isinstance(record, dict):
            continue
        count += 1
        for name, value in _flatten(record):
            if isinstance(value, str) and value.strip():
                lengths.setdefault(name, []).append(len(value))
    if not count:
        return None
    common = {name: sum(ls) / len(ls) for name, ls in lengths.items() if len(ls) * 2 >= count}
    lowered = {name.lower(): name for name in common}
    for preferred in TEXT_FIELDS:
        if preferred in lowered:
            return lowered[preferred]
    if not common:
        return None
    best = max(common, key=lambda name: common[name])
    return best if common[best] >= MIN_TEXT_CHARS else None


def _value(value: Any) -> MetadataValue:
    if isinstance(value, list):
        items = [typed_value(v) for v in value if not isinstance(v, (dict, list))]
        return items if len(items) == len(value) and items else None  # lists of objects are left out
    return typed_value(value)


def _record_document(doc_id: str, base: Metadata, record: object, text_field: str | None) -> Document | None:
    if isinstance(record, str):
        text = record.strip()
        return Document(id=doc_id, text=text, metadata=dict(base)) if text else None
    if not isinstance(record, dict):
        value = typed_value(record)
        return Document(id=doc_id, text=str(value), metadata=dict(base)) if value is not None else None
    fields = [(name, _value(value)) for name, value in _flatten(record)]
    text = ""
    if text_field is not None:
        chosen = dict(fields).get(text_field)
        text = chosen.strip() if isinstance(chosen, str) else ""
    others = [(name, value) for name, value in fields if not (text and name == text_field)]
    if not text:
        scalars: list[tuple[str, Scalar]] = [(n, v) for n, v in others if not isinstance(v, list)]
        text = record_text(scalars)
    if not text.strip():
        return None
    keys = [(f"field.{name}" if name in RESERVED_KEYS else name, value) for name, value in others]
    return Document(id=doc_id, text=text, metadata=record_metadata(base, keys))


def _records_of(data: object) -> Sequence[object]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        arrays = [v for v in data.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if arrays:
            return max(arrays, key=len)
    return [data]


def _parse(path: Path, text: str, where: str = "") -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = where or f"line {exc.lineno} column {exc.colno}"
        raise UnreadableFileError(path, f"invalid JSON at {at}: {exc.msg}") from None
    except RecursionError:
        raise UnreadableFileError(path, f"JSON nested too deeply{' on ' + where if where else ''}") from None


def load_json(path: Path, text_field: str | None = None) -> list[Document]:
    """The records of a JSON file as documents (see the module docstring)."""
    records = _records_of(_parse(path, read_text(path)))
    field = text_field or choose_text_field(records[:_SAMPLE_RECORDS])
    base = base_metadata(path, "json")
    doc_id = display_path(path)
    docs = []
    for number, record in enumerate(records, start=1):
        doc = _record_document(f"{doc_id}#record={number}", {**base, "record": number}, record, field)
        if doc is not None:
            docs.append(doc)
    if not docs:
        raise UnreadableFileError(path, "no text in any record (only empty values)")
    return docs


def _lines(path: Path, scan: TextScan) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(iter_lines(iter_clean_blocks(path, scan)), start=1):
        if line.strip():
            yield number, line


def prepare_jsonl(path: Path, text_field: str | None = None) -> Iterator[Document]:
    """Parse every line now (refusing a malformed one); return the records as documents, lazily."""
    scan = scan_text(path)  # empty, binary and undecodable files are refused here
    sample: list[object] = []
    for number, line in _lines(path, scan):
        record = _parse(path, line, f"line {number}")
        if len(sample) < _SAMPLE_RECORDS:
            sample.append(record)
    field = text_field or choose_text_field(sample)
    base = base_metadata(path, "jsonl")
    if not any(_record_document("", base, record, field) for record in sample):
        raise UnreadableFileError(path, f"no text in the first {len(sample)} record(s) (only empty values)")
    return _jsonl_documents(path, scan, base, field)


def _jsonl_documents(path: Path, scan: TextScan, base: Metadata, field: str | None) -> Iterator[Document]:
    doc_id = display_path(path)
    for number, line in _lines(path, scan):
        record = _parse(path, line, f"line {number}")
        doc = _record_document(f"{doc_id}#line={number}", {**base, "line": number}, record, field)
        if doc is not None:
            yield doc
