"""Metadata filters: one tree, two ways to write it.

Dict form (MongoDB-like)::

    {"source": "24"}                                   # exact-match shorthand
    {"page": {"$gte": 20, "$lt": 30}, "lang": "en"}    # several conditions: AND
    {"$or": [{"tag": {"$contains": "safety"}}, {"$not": {"year": {"$lt": 2020}}}]}

Typed form::

    MetadataFilters([MetadataFilter("page", 20, FilterOperator.GTE)], condition="and")

Semantics (see docs/filters.md):

* Values have a *type class*: number (int or float; bool is not a number), string,
  bool, null, list. A comparison matches only values of the operand's type class;
  a mismatched type or a missing key is simply *no match*, never an error.
* ``$ne`` and ``$nin`` are the negations of ``$eq`` and ``$in``: they match missing
  keys and values of other types. ``$not`` negates its whole sub-filter.
* Comparison operators never look inside lists; ``$contains`` tests list membership,
  ``$text_match`` a case-sensitive substring of a string value.
* A malformed filter (unknown operator, wrong operand type) raises InvalidFilterError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kvgraph.errors import InvalidFilterError


class FilterOperator(str, Enum):
    EQ = "$eq"
    NE = "$ne"
    GT = "$gt"
    GTE = "$gte"
    LT = "$lt"
    LTE = "$lte"
    IN = "$in"
    NIN = "$nin"
    CONTAINS = "$contains"
    TEXT_MATCH = "$text_match"
    EXISTS = "$exists"


_ALIASES = {
    "==": FilterOperator.EQ,
    "!=": FilterOperator.NE,
    ">": FilterOperator.GT,
    ">=": FilterOperator.GTE,
    "<": FilterOperator.LT,
    "<=": FilterOperator.LTE,
    "in": FilterOperator.IN,
    "nin": FilterOperator.NIN,
    "contains": FilterOperator.CONTAINS,
    "text_match": FilterOperator.TEXT_MATCH,
    "exists": FilterOperator.EXISTS,
}


def parse_operator(op: object) -> FilterOperator:
    if isinstance(op, FilterOperator):
        return op
    if isinstance(op, str):
        if op in _ALIASES:
            return _ALIASES[op]
        try:
            return FilterOperator(op if op.startswith("$") else "$" + op)
        except ValueError:
            pass
    known = ", ".join(o.value for o in FilterOperator)
    raise InvalidFilterError(f"unknown filter operator {op!r}; known operators: {known}, $and, $or, $not")


# ---- the tree -----------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    key: str
    op: FilterOperator
    value: Any


@dataclass(frozen=True)
class And:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Not:
    child: FilterNode


FilterNode = Condition | And | Or | Not


# ---- the typed object form ------------------------------------------------------


@dataclass
class MetadataFilter:
    key: str
    value: Any
    operator: FilterOperator | str = FilterOperator.EQ


@dataclass
class MetadataFilters:
    filters: list[MetadataFilter | MetadataFilters] = field(default_factory=list)
    condition: str = "and"  # "and" | "or" | "not" (not = none of the filters)


FilterSpec = Mapping[str, Any] | MetadataFilters | MetadataFilter | Condition | And | Or | Not | None


# ---- validation and parsing --------------------------------------------------------


def _is_scalar(v: object) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def make_condition(key: object, op: object, value: Any) -> Condition:
    if not isinstance(key, str) or not key:
        raise InvalidFilterError(f"filter key must be a non-empty string, got {key!r}")
    if key.startswith("$"):
        raise InvalidFilterError(f"{key!r} is not a field: unknown logical operator (use $and, $or, $not)")
    fop = parse_operator(op)
    where = f"filter on {key!r} with {fop.value}"
    if fop in (FilterOperator.EQ, FilterOperator.NE):
        if isinstance(value, (list, tuple)):
            if not all(_is_scalar(v) for v in value):
                raise InvalidFilterError(f"{where}: list operand may hold only scalars, got {value!r}")
            value = list(value)
        elif not _is_scalar(value):
            raise InvalidFilterError(f"{where}: operand must be a JSON scalar or list, got {type(value).__name__}")
    elif fop in (FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE):
        if not (_is_number(value) or isinstance(value, str)):
            raise InvalidFilterError(f"{where}: operand must be a number or a string, got {value!r}")
    elif fop in (FilterOperator.IN, FilterOperator.NIN):
        if not isinstance(value, (list, tuple, set, frozenset)) or not all(_is_scalar(v) for v in value):
            raise InvalidFilterError(f"{where}: operand must be a list of scalars, got {value!r}")
        value = list(value)
    elif fop is FilterOperator.CONTAINS:
        if not _is_scalar(value):
            raise InvalidFilterError(f"{where}: operand must be a scalar element, got {value!r}")
    elif fop is FilterOperator.TEXT_MATCH:
        if not isinstance(value, str):
            raise InvalidFilterError(f"{where}: operand must be a string, got {value!r}")
    elif fop is FilterOperator.EXISTS and not isinstance(value, bool):
        raise InvalidFilterError(f"{where}: operand must be true or false, got {value!r}")
    return Condition(key, fop, value)


def _parse_field(key: str, spec: Any) -> FilterNode:
    # {"page": 3} or {"tags": ["a", "b"]} is exact match; {"page": {"$gt": 3, ...}} holds operators.
    if isinstance(spec, Mapping):
        if not spec:
            raise InvalidFilterError(f"filter on {key!r}: empty operator object")
        parts: list[FilterNode] = []
        for op, operand in spec.items():
            if op == "$not":
                parts.append(Not(_parse_field(key, operand)))
            else:
                parts.append(make_condition(key, op, operand))
        return parts[0] if len(parts) == 1 else And(tuple(parts))
    return make_condition(key, FilterOperator.EQ, spec)


def _parse_mapping(spec: Mapping[str, Any]) -> FilterNode:
    parts: list[FilterNode] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(f"{key} takes a non-empty list of filters, got {value!r}")
            children = tuple(parse_filter(v) for v in value)
            parts.append(And(children) if key == "$and" else Or(children))
        elif key == "$not":
            parts.append(Not(parse_filter(value)))
        else:
            parts.append(_parse_field(key, value))
    if not parts:
        return And(())
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def parse_filter(spec: FilterSpec) -> FilterNode:
    """Turn any accepted filter form into the tree; ``None`` or ``{}`` matches everything."""
    if spec is None:
        return And(())
    if isinstance(spec, (Condition, And, Or, Not)):
        return spec
    if isinstance(spec, MetadataFilter):
        return make_condition(spec.key, spec.operator, spec.value)
    if isinstance(spec, MetadataFilters):
        children = tuple(parse_filter(f) for f in spec.filters)
        cond = spec.condition.lower() if isinstance(spec.condition, str) else spec.condition
        if cond == "and":
            return And(children)
        if cond == "or":
            return Or(children)
        if cond == "not":
            return Not(Or(children))
        raise InvalidFilterError(f"MetadataFilters.condition must be 'and', 'or' or 'not', got {spec.condition!r}")
    if isinstance(spec, Mapping):
        return _parse_mapping(spec)
    if isinstance(spec, (list, tuple)):  # a list of filters: all must match
        return And(tuple(parse_filter(s) for s in spec))
    raise InvalidFilterError(f"a filter must be a dict or MetadataFilters, got {type(spec).__name__}")


def is_match_all(node: FilterNode) -> bool:
    return isinstance(node, And) and not node.children


def filter_keys(node: FilterNode) -> set[str]:
    if isinstance(node, Condition):
        return {node.key}
    if isinstance(node, Not):
        return filter_keys(node.child)
    out: set[str] = set()
    for c in node.children:
        out |= filter_keys(c)
    return out


_EXPR = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$", re.S)
_EXPR_OPS = {
    "=": "$eq",
    "==": "$eq",
    "!=": "$ne",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
    "~": "$text_match",
}


def _expr_value(raw: str) -> Any:
    """Numbers, true/false/null as JSON; anything else (or a quoted string) as a string."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, bool)) or value is None else raw


def parse_expression(text: str) -> dict[str, Any]:
    """Parse a command-line filter: ``page>=20``, ``file_type=pdf``, ``title~Llama`` or a JSON filter.

    Operators: ``= != > >= < <=`` and ``~`` (substring, ``$text_match``). A value in a
    comparison is a number, ``true``/``false``/``null``, or otherwise a string (quote it to
    force a string: ``version="2"``). Text starting with ``{`` is read as a JSON filter.
    """
    if text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
        except ValueError as e:
            raise InvalidFilterError(f"filter {text!r} is not valid JSON: {e}") from None
        parse_filter(spec)  # validate now, with the filter's own error messages
        return dict(spec)
    m = _EXPR.match(text)
    if not m:
        raise InvalidFilterError(
            f"cannot read filter {text!r}: write KEY OP VALUE with OP one of = != > >= < <= ~ (e.g. page>=20)"
        )
    key, op, raw = m.groups()
    if raw == "":
        raise InvalidFilterError(f"filter {text!r} has no value")
    if raw[0] in "<>=!~":  # 'page>>2', 'page=>2': a typo, not a comparison with the string '>2'
        raise InvalidFilterError(f"filter {text!r}: value {raw!r} starts with an operator; quote it if you mean it")
    return {key: {_EXPR_OPS[op]: _expr_value(raw) if op != "~" else raw}}
