"""Metadata stored column by column, so that a filter is a handful of numpy mask operations.

For every metadata key there is a column of ``n`` slots split by *type class*; a
sub-column exists only once a value of its type appeared for that key:

* ``num``   float64, NaN where the value is not a number
* ``str``   int32 code into a per-key dictionary of strings, -1 where not a string
* ``bool``  int8, -1 where not a bool
* ``null``  bool, value is JSON null
* ``list``  int32 code of the whole list (canonical JSON) for ``$eq`` on lists, plus an
  element table (slot, element code) for ``$contains``
* ``present`` bool, key exists

Evaluating a filter never loops over nodes in Python: string range and substring
tests run over each key's dictionary of *distinct* values and are then broadcast to
slots with a lookup table.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from kvgraph.filters import And, Condition, FilterNode, FilterOperator, Not, Or
from kvgraph.store.growable import GrowableArray

Op = FilterOperator


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _elem_key(v: object) -> str:
    # One dictionary for list elements of all types: tag by type class, numbers as float.
    if v is None:
        return "z"
    if isinstance(v, bool):
        return "b1" if v else "b0"
    if isinstance(v, (int, float)):
        return "n" + repr(float(v) + 0.0)  # + 0.0 turns -0.0 into 0.0: they are equal numbers
    return "s" + str(v)


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


class Column:
    def __init__(self, n: int) -> None:
        self.n = n
        self.present = GrowableArray(np.bool_, False)
        self.present.extend_fill(n)
        self.num: GrowableArray | None = None
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

    def grow(self, m: int) -> None:
        for name in ("present", "num", "str", "bool", "null", "list"):
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
            elif isinstance(v, (int, float)):
                kind = "num"
            elif isinstance(v, str):
                kind = "str"
            else:
                kind = "list"
            s, vs = by_kind.setdefault(kind, ([], []))
            s.append(slot)
            vs.append(v)
        for kind, (s, vs) in by_kind.items():
            arr = self._sub(kind).view
            si = np.asarray(s, dtype=np.int64)
            if kind == "null":
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

    def eq(self, v: Any) -> np.ndarray:
        if v is None:
            return self.null.view.copy() if self.null is not None else self._false()
        if isinstance(v, bool):
            return (self.bool.view == int(v)) if self.bool is not None else self._false()
        if _is_number(v):
            if self.num is None or (isinstance(v, float) and math.isnan(v)):
                return self._false()
            return np.asarray(self.num.view == float(v))
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
            if self.num is None:
                return self._false()
            col = self.num.view
            with np.errstate(invalid="ignore"):
                if op is Op.GT:
                    return np.asarray(col > v)
                if op is Op.GTE:
                    return np.asarray(col >= v)
                if op is Op.LT:
                    return np.asarray(col < v)
                return np.asarray(col <= v)
        if self.str is None:
            return self._false()
        pred = {Op.GT: lambda s: s > v, Op.GTE: lambda s: s >= v, Op.LT: lambda s: s < v, Op.LTE: lambda s: s <= v}[op]
        return np.asarray(self.str_dict.lut(pred)[self.str.view + 1])

    def isin(self, values: list[Any]) -> np.ndarray:
        out = self._false()
        nums = [float(v) for v in values if _is_number(v)]
        if nums and self.num is not None:
            out |= np.isin(self.num.view, np.asarray(nums, dtype=np.float64))
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

    def to_arrays(self, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            prefix + "present": self.present.view,
            prefix + "elem_slots": self.elem_slots.view,
            prefix + "elem_codes": self.elem_codes.view,
        }
        for name in ("num", "str", "bool", "null", "list"):
            arr = getattr(self, name)
            if arr is not None:
                arrays[prefix + name] = arr.view
        meta = {"str": self.str_dict.values, "list": self.list_dict.values, "elem": self.elem_dict.values}
        return arrays, meta

    @classmethod
    def from_arrays(cls, n: int, prefix: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Column:
        col = cls(0)
        col.n = n
        col.present = GrowableArray.from_array(arrays[prefix + "present"], False)
        col.elem_slots = GrowableArray.from_array(arrays[prefix + "elem_slots"], 0)
        col.elem_codes = GrowableArray.from_array(arrays[prefix + "elem_codes"], -1)
        for name in ("num", "str", "bool", "null", "list"):
            if prefix + name in arrays:
                setattr(col, name, GrowableArray.from_array(arrays[prefix + name], cls._SUB[name][1]))
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
        meta: dict[str, Any] = {"n": self.n, "keys": {}}
        for i, (key, col) in enumerate(self.columns.items()):
            a, m = col.to_arrays(f"c{i}.")
            arrays.update(a)
            meta["keys"][key] = {"prefix": f"c{i}.", **m}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> MetadataColumns:
        out = cls()
        out.n = int(meta["n"])
        for key, m in meta["keys"].items():
            out.columns[key] = Column.from_arrays(out.n, m["prefix"], arrays, m)
        return out
