"""Rows and records as documents: spreadsheet rows, CSV lines, JSON objects.

A record becomes one document whose text is its fields as ``name: value`` lines (or, for JSON
records with a text field, that field), and whose metadata holds the fields as typed values, so
that ``--filter 'price>10'`` or ``--filter 'city=Lyon'`` works on them:

* numbers stay numbers (CSV cells that read as integers or decimals become ``int``/``float``;
  ``0042`` keeps its leading zero as text), ``true``/``false`` become booleans, dates and times
  become ISO 8601 text;
* a field whose name is already taken by kvgraph (``file_path``, ``page``, ``row``, ``title``
  is not taken...: :data:`RESERVED_KEYS`) is stored as ``column.NAME`` (``field.NAME`` for JSON);
* text longer than :data:`MAX_METADATA_CHARS` characters is left out of the metadata (it is in
  the document text, and metadata is copied to every chunk), and so are fields past the first
  :data:`MAX_METADATA_FIELDS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

from kvgraph.ingest.loaders.common import clean_text
from kvgraph.schema import Metadata, MetadataValue, Scalar

__all__ = [
    "MAX_METADATA_CHARS",
    "MAX_METADATA_FIELDS",
    "RESERVED_KEYS",
    "field_keys",
    "parse_cell",
    "record_metadata",
    "record_text",
    "shown",
    "typed_value",
]

# Metadata keys kvgraph sets itself (loaders, splitter, references, context headers).
RESERVED_KEYS = frozenset(
    {"file_path", "file_name", "file_type", "file_size", "last_modified", "page", "total_pages", "section"}
    | {"heading_path", "part", "part_char_start", "row", "sheet", "line", "record", "slide", "total_slides"}
    | {"chapter", "attachment", "char_start", "char_end", "chunk_index", "n_tokens", "role", "model"}
    | {"embedding_truncated", "parent_id", "chunk_size", "context_header", "source"}
)
MAX_METADATA_CHARS = 200
MAX_METADATA_FIELDS = 64

_INT = re.compile(r"[+-]?(?:0|[1-9]\d{0,17})")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d{1,3})?")
_LEADING_ZERO = re.compile(r"[+-]?0\d")
_INT64 = 1 << 63


def field_keys(names: Sequence[str], prefix: str) -> list[str]:
    """Metadata keys for field names: unique, non-empty, ``PREFIX.NAME`` where kvgraph uses the name.

    An empty name becomes ``column_N`` (1-based position); a repeated one gets ``_2``, ``_3``...
    """
    keys: list[str] = []
    seen: set[str] = set()
    for n, raw in enumerate(names, start=1):
        name = " ".join(raw.split()) or f"column_{n}"
        key = f"{prefix}.{name}" if name in RESERVED_KEYS else name
        unique, k = key, 2
        while unique in seen:
            unique = f"{key}_{k}"
            k += 1
        seen.add(unique)
        keys.append(unique)
    return keys


def parse_cell(text: str) -> Scalar:
    """A CSV cell as the value it reads as: int, float, bool, or the (stripped) text; None when empty."""
    value = text.strip()
    if not value:
        return None
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value) and not _LEADING_ZERO.match(value):  # "02134" is a code, not a number
        number = float(value)
        return number if math.isfinite(number) else value
    lower = value.lower()
    if lower in ("true", "false"):
        return lower == "true"
    return value


def typed_value(value: object) -> Scalar:
    """A spreadsheet or JSON value as a metadata scalar: numbers, booleans, ISO dates, text; None when empty."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)  # beyond SQLite's integers: kept as text
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime) and value.tzinfo is None and value.time() == time():
        return value.date().isoformat()  # spreadsheets store dates as midnight datetimes
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    text = clean_text(str(value)).strip()
    return text or None


def shown(value: Scalar) -> str:
    """How a value reads in a record's text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # 3.0 from a spreadsheet reads "3"
    return str(value)


def record_text(pairs: Iterable[tuple[str, Scalar]]) -> str:
    """``name: value`` lines of the non-empty fields."""
    return "\n".join(f"{name}: {shown(value)}" for name, value in pairs if value is not None and value != "")


def record_metadata(base: Metadata, pairs: Iterable[tuple[str, MetadataValue]]) -> Metadata:
    """``base`` plus the fields that belong in metadata (see the module docstring)."""
    meta: Metadata = dict(base)
    added = 0
    for key, value in pairs:
        if value is None or value == "" or added >= MAX_METADATA_FIELDS:
            continue
        if isinstance(value, str) and len(value) > MAX_METADATA_CHARS:
            continue
        if isinstance(value, list) and sum(len(str(v)) for v in value) > MAX_METADATA_CHARS:
            continue
        meta[key] = value
        added += 1
    return meta
