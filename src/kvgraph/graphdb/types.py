"""Cypher identifiers and column types, shared by the graph backends and the import planner.

Ladybug is schema-first, so a value's column type must be known before the first row is written;
these pure functions decide it and convert values to it.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kvgraph.errors import InvalidInputError

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote(name: str) -> str:
    """A Cypher identifier in backticks (labels, types and properties from data may be any string)."""
    return "`" + name.replace("`", "``") + "`"


def check_name(name: str, what: str) -> str:
    """``name`` if it is a usable label/type/property name, else InvalidInputError naming it."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInputError(f"{what} {name!r}: use letters, digits and '_' (not starting with a digit)")
    return name


def value_type(value: Any) -> str | None:
    """Ladybug column type for a Python value (None when the value says nothing, e.g. None or [])."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, datetime.datetime):
        return "TIMESTAMP"
    if isinstance(value, datetime.date):
        return "DATE"
    if isinstance(value, (list, tuple)):
        inner = merge_types([value_type(v) for v in value])
        return None if inner is None else f"{inner}[]"
    if isinstance(value, Mapping):
        return "STRING"  # stored as JSON text: Ladybug maps need one value type per map
    raise InvalidInputError(f"value {value!r} of type {type(value).__name__} cannot be stored in the graph")


def merge_types(types: Iterable[str | None]) -> str | None:
    """The one column type that holds all of ``types`` (INT64 + DOUBLE -> DOUBLE; other mixes -> STRING)."""
    seen = {t for t in types if t is not None}
    if not seen:
        return None
    if len(seen) == 1:
        return seen.pop()
    if seen == {"INT64", "DOUBLE"}:
        return "DOUBLE"
    if seen == {"INT64[]", "DOUBLE[]"}:
        return "DOUBLE[]"
    return "STRING"


def coerce(value: Any, col_type: str, where: str) -> Any:
    """``value`` converted for a column of ``col_type``; InvalidInputError naming ``where`` when it does not fit."""
    if value is None:
        return None
    t = col_type.upper()
    ok = True
    if t.endswith("[]"):
        if not isinstance(value, (list, tuple)):
            ok = False
        else:
            return [coerce(v, t[:-2], where) for v in value]
    elif t in ("INT64", "INT32", "INT16", "INT8", "SERIAL", "UINT64", "UINT32", "INT128"):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            ok = False
        else:
            return int(value)
    elif t in ("DOUBLE", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ok = False
        else:
            return float(value)
    elif t == "BOOL":
        ok = isinstance(value, bool)
    elif t == "STRING":
        if isinstance(value, Mapping):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        ok = isinstance(value, str)
    if not ok:
        raise InvalidInputError(f"{where}: value {value!r} does not fit the column type {col_type}")
    return value
