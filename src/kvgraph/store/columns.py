"""Metadata stored column by column, so that a filter is a handful of numpy mask operations.

For every metadata key there is a column of ``n`` slots split by *type class*; a
sub-column exists only once a value of its type appeared for that key:

* ``num``   float64, NaN where the value is not a float
* ``int``   int64 with a presence mask ``intp``, for integers in the int64 range
* ``big``   integers outside the int64 range: a short side table of (slot, Python int)
* ``str``   int32 code into a per-key dictionary of strings, -1 where not a string
* ``bool``  int8, -1 where not a bool
* ``null``  bool, value is JSON null
* ``list``  int32 code of the whole list (canonical JSON) for ``$eq`` on lists, plus an
  element table (slot, element code) for ``$contains``
* ``present`` bool, key exists

Evaluating a filter never loops over nodes in Python: string range and substring
tests run over each key's dictionary of *distinct* values and are then broadcast to
slots with a lookup table.

Numbers compare exactly, with Python's semantics for mixed int/float comparison. Integers
are never rounded to float64 (which loses every integer above 2**53: nanosecond
timestamps, snowflake ids): they live in an int64 column, and a comparison between the
int and float columns and an operand of the other kind is turned into an exact one (an int
operand against floats becomes a comparison with the nearest floats around it, a float
operand against ints one with its floor or ceiling). Integers beyond int64 go to a side
table compared in Python; they are rare, and nothing overflows whatever their size.
"""

from __future__ import annotations

import json
import math
import operator
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from kvgraph.filters import And, Condition, FilterNode, FilterOperator, Not, Or
from kvgraph.store.growable import GrowableArray

Op = FilterOperator

# The on-disk layout of the columns cache. Version 2 keeps integers exact (int/big columns,
# exact element keys); a cache without it is ignored and rebuilt from the records.
FORMAT = 2
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MAX_FLOAT = sys.float_info.max
_PY_OPS: dict[Op, Callable[[Any, Any], bool]] = {
    Op.GT: operator.gt,
    Op.GTE: operator.ge,
    Op.LT: operator.lt,
    Op.LTE: operator.le,
}


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _in_int64(v: int) -> bool:
    return INT64_MIN <= v <= INT64_MAX


def _number_key(v: float) -> str:
    """Equal numbers get equal keys, different numbers different ones (1, 1.0 and -0.0 vs 0 included)."""
    if isinstance(v, float):
        if not v.is_integer():  # fractions, inf and nan: the exact float, in hex
            return v.hex()
        v = int(v)
    return format(v, "x")  # hex: no limit on the number of digits, unlike str(int)


def _elem_key(v: object) -> str:
    # One dictionary for list elements of all types, tagged by type class.
    if v is None:
        return "z"
    if isinstance(v, bool):
        return "b1" if v else "b0"
    if isinstance(v, (int, float)):
        return "n" + _number_key(v)
    return "s" + str(v)


def _floats_beyond(v: int) -> tuple[float, float]:
    """For an int ``v`` that no float equals: (the largest float below it, the smallest float above it)."""
    try:
        f = float(v)
    except OverflowError:  # beyond the largest float: every finite float is on one side
        return (_MAX_FLOAT, math.inf) if v > 0 else (-math.inf, -_MAX_FLOAT)
    if f > v:  # Python compares int and float exactly
        return math.nextafter(f, -math.inf), f
    return f, math.nextafter(f, math.inf)


def _exact_float(v: int) -> float | None:
    """``float(v)`` when that is exactly ``v``, else None."""
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if f == v else None


def _list_key(values: list[Any]) -> str:
    return json.dumps([_elem_key(v) for v in values], separators=(",", ":"))


class _Dictionary:
    """Distinct values of one kind of one key, with stable int codes."""

    __slots__ = ("codes", "values")

    def __init__(self, values: list[str] | None = None) -> None:
        self.values: list[str] = list(values or [])
        self.codes: dict[str, int] = {v: i for i, v in enumerate(self.values)}

    def encode(self, v: str) -> int:
        code = self.codes.get(v)
        if code is None:
            code = len(self.values)
            self.codes[v] = code
            self.values.append(v)
        return code

    def lut(self, predicate: Any) -> np.ndarray:
        """Lookup table indexed by code + 1 (index 0 is 'no value'), True where predicate holds."""
        out = np.zeros(len(self.values) + 1, dtype=bool)
        if self.values:
            out[1:] = np.fromiter((bool(predicate(v)) for v in self.values), dtype=bool, count=len(self.values))
        return out


def _integral(v: float) -> int | None:
    """The int equal to a float, if it is a whole number."""
    return int(v) if math.isfinite(v) and v.is_integer() else None


class Column:
    def __init__(self, n: int) -> None:
        self.n = n
        self.present = GrowableArray(np.bool_, False)
        self.present.extend_fill(n)
        self.num: GrowableArray | None = None
        self.int: GrowableArray | None = None
        self.intp: GrowableArray | None = None
        self.big_slots: list[int] = []
        self.big_values: list[int] = []
        self.str: GrowableArray | None = None
        self.str_dict = _Dictionary()
        self.bool: GrowableArray | None = None
        self.null: GrowableArray | None = None
        self.list: GrowableArray | None = None
        self.list_dict = _Dictionary()
        self.elem_slots = GrowableArray(np.int64, 0)
        self.elem_codes = GrowableArray(np.int32, -1)
        self.elem_dict = _Dictionary()

    _SUB = {
        "num": (np.float64, np.nan),
        "int": (np.int64, 0),
        "intp": (np.bool_, False),
        "str": (np.int32, -1),
        "bool": (np.int8, -1),
        "null": (np.bool_, False),
        "list": (np.int32, -1),
    }

    def _sub(self, name: str) -> GrowableArray:
        arr: GrowableArray | None = getattr(self, name)
        if arr is None:
            dtype, fill = self._SUB[name]
            arr = GrowableArray(dtype, fill, capacity=self.n + 1024)
            arr.extend_fill(self.n)
            setattr(self, name, arr)
        return arr

    _ARRAYS = ("num", "int", "intp", "str", "bool", "null", "list")

    def grow(self, m: int) -> None:
        for name in ("present", *self._ARRAYS):
            arr = getattr(self, name)
            if arr is not None:
                arr.extend_fill(m)
        self.n += m

    def set_values(self, slots: list[int], values: list[Any]) -> None:
        """Store values for slots that were just grown (their cells hold the fill values)."""
        idx = np.asarray(slots, dtype=np.int64)
        self.present.view[idx] = True
        by_kind: dict[str, tuple[list[int], list[Any]]] = {}
        for slot, v in zip(slots, values):
            if v is None:
                kind = "null"
            elif isinstance(v, bool):
                kind = "bool"
            elif isinstance(v, int):
                kind = "int" if _in_int64(v) else "big"
            elif isinstance(v, float):
                kind = "num"
            elif isinstance(v, str):
                kind = "str"
            else:
                kind = "list"
            s, vs = by_kind.setdefault(kind, ([], []))
            s.append(slot)
            vs.append(v)
        for kind, (s, vs) in by_kind.items():
            if kind == "big":
                self.big_slots.extend(s)
                self.big_values.extend(vs)
                continue
            arr = self._sub(kind).view
            si = np.asarray(s, dtype=np.int64)
            if kind == "int":
                arr[si] = np.asarray(vs, dtype=np.int64)
                self._sub("intp").view[si] = True
            elif kind == "null":
                arr[si] = True
            elif kind == "bool":
                arr[si] = np.asarray(vs, dtype=np.int8)
            elif kind == "num":
                arr[si] = np.asarray(vs, dtype=np.float64)
            elif kind == "str":
                arr[si] = np.fromiter((self.str_dict.encode(v) for v in vs), dtype=np.int32, count=len(vs))
            else:
                arr[si] = np.fromiter((self.list_dict.encode(_list_key(v)) for v in vs), dtype=np.int32, count=len(vs))
                es: list[int] = []
                ec: list[int] = []
                for slot, lst in zip(s, vs):
                    for e in lst:
                        es.append(slot)
                        ec.append(self.elem_dict.encode(_elem_key(e)))
                self.elem_slots.extend(np.asarray(es, dtype=np.int64))
                self.elem_codes.extend(np.asarray(ec, dtype=np.int32))

    # ---- evaluation -------------------------------------------------------------------

    def _false(self) -> np.ndarray:
        return np.zeros(self.n, dtype=bool)

    def _big(self, test: Callable[[int], bool]) -> np.ndarray:
        """Slots of out-of-int64 integers for which ``test`` holds (a Python loop over a short table)."""
        out = self._false()
        hits = [slot for slot, value in zip(self.big_slots, self.big_values) if test(value)]
        if hits:
            out[np.asarray(hits, dtype=np.int64)] = True
        return out

    def _int_where(self, op: Op, v: int) -> np.ndarray:
        """Exact ``int-column OP v`` for an int ``v`` of any size (slots without an int: False)."""
        if self.int is None or self.intp is None:
            return self._false()
        present = self.intp.view
        if not _in_int64(v):  # every int64 value is on the same side of v
            above = v > INT64_MAX  # v is above them all (else below them all)
            holds = (op in (Op.LT, Op.LTE)) == above
            return present.copy() if holds else self._false()
        col = self.int.view
        bound = np.int64(v)
        cmp = {Op.GT: np.greater, Op.GTE: np.greater_equal, Op.LT: np.less, Op.LTE: np.less_equal}[op]
        return np.asarray(cmp(col, bound) & present)

    def _num_eq(self, v: float) -> np.ndarray:
        """Exact equality with a number, over the float, int and big columns."""
        out = self._false()
        if isinstance(v, float) and math.isnan(v):
            return out
        as_float = v if isinstance(v, float) else _exact_float(v)
        if self.num is not None and as_float is not None:
            out |= self.num.view == as_float
        as_int = v if isinstance(v, int) else (int(v) if v.is_integer() else None)
        if as_int is not None:
            if _in_int64(as_int) and self.int is not None and self.intp is not None:
                out |= (self.int.view == np.int64(as_int)) & self.intp.view
            if self.big_values:
                out |= self._big(lambda b: b == as_int)
        return out

    def _num_compare(self, op: Op, v: float) -> np.ndarray:
        """Exact ``value OP v`` over the float, int and big columns."""
        out = self._false()
        if isinstance(v, float) and math.isnan(v):
            return out
        upward = op in (Op.GT, Op.GTE)
        # float column: a float operand compares directly; an int operand exactly through the
        # nearest floats around it (no float equals it, so >= and > coincide, as do <= and <).
        if self.num is not None:
            col = self.num.view
            bound: float
            if isinstance(v, int) and _exact_float(v) is None:
                below, above = _floats_beyond(v)
                cop, bound = (Op.GTE, above) if upward else (Op.LTE, below)
            else:
                cop, bound = op, float(v)
            with np.errstate(invalid="ignore"):
                out |= {Op.GT: np.greater, Op.GTE: np.greater_equal, Op.LT: np.less, Op.LTE: np.less_equal}[cop](
                    col, bound
                )
        # int column: an int operand compares directly; a float one through its floor/ceiling.
        if self.int is not None:
            if isinstance(v, int):
                out |= self._int_where(op, v)
            elif math.isinf(v):
                if (v > 0) != upward and self.intp is not None:  # every int is below +inf / above -inf
                    out |= self.intp.view
            else:
                floor, ceil = math.floor(v), math.ceil(v)
                # int > v <=> int > floor(v);  int >= v <=> int >= ceil(v);  likewise downward.
                iop, bound_int = {Op.GT: (Op.GT, floor), Op.GTE: (Op.GTE, ceil), Op.LT: (Op.LT, ceil)}.get(
                    op, (Op.LTE, floor)
                )
                out |= self._int_where(iop, bound_int)
        if self.big_values:
            test = _PY_OPS[op]
            out |= self._big(lambda b: test(b, v))
        return out

    def eq(self, v: Any) -> np.ndarray:
        if v is None:
            return self.null.view.copy() if self.null is not None else self._false()
        if isinstance(v, bool):
            return (self.bool.view == int(v)) if self.bool is not None else self._false()
        if _is_number(v):
            return self._num_eq(v)
        if isinstance(v, str):
            code = self.str_dict.codes.get(v)
            if self.str is None or code is None:
                return self._false()
            return np.asarray(self.str.view == code)
        code = self.list_dict.codes.get(_list_key(v))
        if self.list is None or code is None:
            return self._false()
        return np.asarray(self.list.view == code)

    def compare(self, op: Op, v: Any) -> np.ndarray:
        if _is_number(v):
            return self._num_compare(op, v)
        if self.str is None:
            return self._false()
        test = _PY_OPS[op]
        return np.asarray(self.str_dict.lut(lambda s: test(s, v))[self.str.view + 1])

    def isin(self, values: list[Any]) -> np.ndarray:
        out = self._false()
        numbers = [v for v in values if _is_number(v) and not (isinstance(v, float) and math.isnan(v))]
        floats = [f for v in numbers if (f := (v if isinstance(v, float) else _exact_float(v))) is not None]
        if floats and self.num is not None:
            out |= np.isin(self.num.view, np.asarray(floats, dtype=np.float64))
        ints = {i for v in numbers if (i := (v if isinstance(v, int) else _integral(v))) is not None}
        small = [i for i in ints if _in_int64(i)]
        if small and self.int is not None and self.intp is not None:
            out |= np.isin(self.int.view, np.asarray(small, dtype=np.int64)) & self.intp.view
        if ints and self.big_values:
            out |= self._big(ints.__contains__)
        strs = {v for v in values if isinstance(v, str)}
        if strs and self.str is not None:
            out |= self.str_dict.lut(strs.__contains__)[self.str.view + 1]
        for v in values:
            if v is None or isinstance(v, bool):
                out |= self.eq(v)
        return out

    def contains(self, v: Any) -> np.ndarray:
        out = self._false()
        code = self.elem_dict.codes.get(_elem_key(v))
        if code is not None:
            out[self.elem_slots.view[self.elem_codes.view == code]] = True
        return out

    def text_match(self, sub: str) -> np.ndarray:
        if self.str is None:
            return self._false()
        return np.asarray(self.str_dict.lut(lambda s: sub in s)[self.str.view + 1])

    # ---- persistence ------------------------------------------------------------------
    # Out-of-int64 integers go into the JSON metadata as hex strings (no digit limit there).

    def to_arrays(self, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            prefix + "present": self.present.view,
            prefix + "elem_slots": self.elem_slots.view,
            prefix + "elem_codes": self.elem_codes.view,
        }
        for name in self._ARRAYS:
            arr = getattr(self, name)
            if arr is not None:
                arrays[prefix + name] = arr.view
        meta = {
            "str": self.str_dict.values,
            "list": self.list_dict.values,
            "elem": self.elem_dict.values,
            "big": [[slot, format(v, "x")] for slot, v in zip(self.big_slots, self.big_values)],
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, n: int, prefix: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Column:
        col = cls(0)
        col.n = n
        col.present = GrowableArray.from_array(arrays[prefix + "present"], False)
        col.elem_slots = GrowableArray.from_array(arrays[prefix + "elem_slots"], 0)
        col.elem_codes = GrowableArray.from_array(arrays[prefix + "elem_codes"], -1)
        for name in cls._ARRAYS:
            if prefix + name in arrays:
                setattr(col, name, GrowableArray.from_array(arrays[prefix + name], cls._SUB[name][1]))
        for slot, hexed in meta.get("big", []):
            col.big_slots.append(int(slot))
            col.big_values.append(int(hexed, 16))
        col.str_dict = _Dictionary(meta["str"])
        col.list_dict = _Dictionary(meta["list"])
        col.elem_dict = _Dictionary(meta["elem"])
        return col


class MetadataColumns:
    """All metadata of all slots, as columns; slot numbers are the store's vector rows."""

    def __init__(self) -> None:
        self.n = 0
        self.columns: dict[str, Column] = {}

    def append(self, metadatas: list[dict[str, Any]]) -> None:
        start, m = self.n, len(metadatas)
        for col in self.columns.values():
            col.grow(m)
        self.n += m
        per_key: dict[str, tuple[list[int], list[Any]]] = {}
        for i, md in enumerate(metadatas):
            for key, value in md.items():
                s, vs = per_key.setdefault(key, ([], []))
                s.append(start + i)
                vs.append(value)
        for key, (s, vs) in per_key.items():
            if key not in self.columns:
                self.columns[key] = Column(self.n)
            self.columns[key].set_values(s, vs)

    def mask(self, node: FilterNode) -> np.ndarray:
        """Boolean array over all slots (dead ones included): True where the filter matches."""
        if isinstance(node, And):
            out = np.ones(self.n, dtype=bool)
            for c in node.children:
                out &= self.mask(c)
            return out
        if isinstance(node, Or):
            out = np.zeros(self.n, dtype=bool)
            for c in node.children:
                out |= self.mask(c)
            return out
        if isinstance(node, Not):
            return ~self.mask(node.child)
        return self._condition(node)

    def _condition(self, c: Condition) -> np.ndarray:
        col = self.columns.get(c.key)
        if c.op is Op.EXISTS:
            present = col.present.view.copy() if col is not None else np.zeros(self.n, dtype=bool)
            return present if c.value else ~present
        if c.op in (Op.NE, Op.NIN):
            positive = Condition(c.key, Op.EQ if c.op is Op.NE else Op.IN, c.value)
            return ~self._condition(positive)
        if col is None:
            return np.zeros(self.n, dtype=bool)
        if c.op is Op.EQ:
            return col.eq(c.value)
        if c.op is Op.IN:
            return col.isin(c.value)
        if c.op is Op.CONTAINS:
            return col.contains(c.value)
        if c.op is Op.TEXT_MATCH:
            return col.text_match(c.value)
        return col.compare(c.op, c.value)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"n": self.n, "format": FORMAT, "keys": {}}
        for i, (key, col) in enumerate(self.columns.items()):
            a, m = col.to_arrays(f"c{i}.")
            arrays.update(a)
            meta["keys"][key] = {"prefix": f"c{i}.", **m}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> MetadataColumns:
        out = cls()
        if meta.get("format") != FORMAT:
            return out  # an older layout (integers as float64): empty, so the caller rebuilds from the records
        out.n = int(meta["n"])
        for key, m in meta["keys"].items():
            out.columns[key] = Column.from_arrays(out.n, m["prefix"], arrays, m)
        return out
