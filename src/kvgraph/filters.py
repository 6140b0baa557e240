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
* Numbers compare exactly, as Python compares them: an int is never rounded to a float,
  so ``{"ts_ns": 1733363000123456789}`` does not match ``1733363000123456700`` (the store
  keeps integers in an int64 column, see :mod:`kvgraph.store.columns`).
* A malformed filter (unknown operator, wrong operand type) raises InvalidFilterError, and
  so does one nested more than ``MAX_FILTER_DEPTH`` levels deep or holding more than
  ``MAX_FILTER_NODES`` conditions and operators (instead of exhausting Python's stack).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kvgraph.errors import InvalidFilterError

# Limits that turn a pathological filter into a clear error. Real filters nest a few levels;
# these leave plenty of room and keep every recursive walk of the tree far from Python's stack limit.
MAX_FILTER_DEPTH = 64
MAX_FILTER_NODES = 10_000


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


def _show(value: object, limit: int = 80) -> str:
    """A value for an error message: repr, shortened (a filter may be megabytes, an int 5,000 digits)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # int too long for str(), or a self-referencing list
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    raise InvalidFilterError(f"unknown filter operator {_show(op)}; known operators: {known}, $and, $or, $not")


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


class _Budget:
    """Counts the nodes of the filter being parsed, and knows the depth limit."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def enter(self, depth: int) -> None:
        self.nodes += 1
        if depth > MAX_FILTER_DEPTH:
            raise InvalidFilterError(
                f"filter nests more than {MAX_FILTER_DEPTH} levels deep ($and/$or/$not inside each other); "
                "flatten it ($and and $or take lists)"
            )
        if self.nodes > MAX_FILTER_NODES:
            raise InvalidFilterError(
                f"filter has more than {MAX_FILTER_NODES} conditions and operators; "
                "use $in with a list of values instead of many alternatives"
            )


def _is_scalar(v: object) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def make_condition(key: object, op: object, value: Any) -> Condition:
    if not isinstance(key, str) or not key:
        raise InvalidFilterError(f"filter key must be a non-empty string, got {_show(key)}")
    if key.startswith("$"):
        raise InvalidFilterError(f"{_show(key)} is not a field: unknown logical operator (use $and, $or, $not)")
    fop = parse_operator(op)
    where = f"filter on {_show(key)} with {fop.value}"
    if fop in (FilterOperator.EQ, FilterOperator.NE):
        if isinstance(value, (list, tuple)):
            if not all(_is_scalar(v) for v in value):
                raise InvalidFilterError(f"{where}: list operand may hold only scalars, got {_show(value)}")
            value = list(value)
        elif not _is_scalar(value):
            raise InvalidFilterError(f"{where}: operand must be a JSON scalar or list, got {type(value).__name__}")
    elif fop in (FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE):
        if not (_is_number(value) or isinstance(value, str)):
            raise InvalidFilterError(f"{where}: operand must be a number or a string, got {_show(value)}")
    elif fop in (FilterOperator.IN, FilterOperator.NIN):
        if not isinstance(value, (list, tuple, set, frozenset)) or not all(_is_scalar(v) for v in value):
            raise InvalidFilterError(f"{where}: operand must be a list of scalars, got {_show(value)}")
        value = list(value)
    elif fop is FilterOperator.CONTAINS:
        if not _is_scalar(value):
            raise InvalidFilterError(f"{where}: operand must be a scalar element, got {_show(value)}")
    elif fop is FilterOperator.TEXT_MATCH:
        if not isinstance(value, str):
            raise InvalidFilterError(f"{where}: operand must be a string, got {_show(value)}")
    elif fop is FilterOperator.EXISTS and not isinstance(value, bool):
        raise InvalidFilterError(f"{where}: operand must be true or false, got {_show(value)}")
    return Condition(key, fop, value)


def _parse_field(key: str, spec: Any, budget: _Budget, depth: int) -> FilterNode:
    # {"page": 3} or {"tags": ["a", "b"]} is exact match; {"page": {"$gt": 3, ...}} holds operators.
    budget.enter(depth)
    if isinstance(spec, Mapping):
        if not spec:
            raise InvalidFilterError(f"filter on {_show(key)}: empty operator object")
        parts: list[FilterNode] = []
        for op, operand in spec.items():
            if op == "$not":
                parts.append(Not(_parse_field(key, operand, budget, depth + 1)))
            else:
                budget.enter(depth + 1)
                parts.append(make_condition(key, op, operand))
        return parts[0] if len(parts) == 1 else And(tuple(parts))
    return make_condition(key, FilterOperator.EQ, spec)


def _parse_mapping(spec: Mapping[str, Any], budget: _Budget, depth: int) -> FilterNode:
    parts: list[FilterNode] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(f"{key} takes a non-empty list of filters, got {_show(value)}")
            children = tuple(_parse(v, budget, depth + 1) for v in value)
            parts.append(And(children) if key == "$and" else Or(children))
        elif key == "$not":
            parts.append(Not(_parse(value, budget, depth + 1)))
        else:
            parts.append(_parse_field(key, value, budget, depth + 1))
    if not parts:
        return And(())
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _check_tree(node: FilterNode) -> FilterNode:
    """Depth and size limits for a tree built directly (walked without recursion)."""
    budget = _Budget()
    stack: list[tuple[FilterNode, int]] = [(node, 0)]
    while stack:
        item, depth = stack.pop()
        budget.enter(depth)
        if isinstance(item, Not):
            stack.append((item.child, depth + 1))
        elif isinstance(item, (And, Or)):
            stack.extend((child, depth + 1) for child in item.children)
        elif not isinstance(item, Condition):
            raise InvalidFilterError(f"a filter tree holds Condition, And, Or and Not nodes, got {_show(item)}")
    return node


def _parse(spec: FilterSpec, budget: _Budget, depth: int) -> FilterNode:
    budget.enter(depth)
    if spec is None:
        return And(())
    if isinstance(spec, (Condition, And, Or, Not)):
        return _check_tree(spec)
    if isinstance(spec, MetadataFilter):
        return make_condition(spec.key, spec.operator, spec.value)
    if isinstance(spec, MetadataFilters):
        children = tuple(_parse(f, budget, depth + 1) for f in spec.filters)
        cond = spec.condition.lower() if isinstance(spec.condition, str) else spec.condition
        if cond == "and":
            return And(children)
        if cond == "or":
            return Or(children)
        if cond == "not":
            return Not(Or(children))
        raise InvalidFilterError(f"MetadataFilters.condition must be 'and', 'or' or 'not', got {_show(spec.condition)}")
    if isinstance(spec, Mapping):
        return _parse_mapping(spec, budget, depth)
    if isinstance(spec, (list, tuple)):  # a list of filters: all must match
        return And(tuple(_parse(s, budget, depth + 1) for s in spec))
    raise InvalidFilterError(f"a filter must be a dict or MetadataFilters, got {type(spec).__name__}")


def parse_filter(spec: FilterSpec) -> FilterNode:
    """Turn any accepted filter form into the tree; ``None`` or ``{}`` matches everything.

    Raises InvalidFilterError for a malformed filter, one nested deeper than
    ``MAX_FILTER_DEPTH`` or one with more than ``MAX_FILTER_NODES`` nodes.
    """
    return _parse(spec, _Budget(), 0)


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


_INTEGER = re.compile(r"-?\d+")
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
        if _INTEGER.fullmatch(raw):  # more digits than Python converts (sys.get_int_max_str_digits)
            raise InvalidFilterError(f"filter value {_show(raw)}: integer with {len(raw)} digits is too long") from None
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
            raise InvalidFilterError(f"filter {_show(text)} is not valid JSON: {e}") from None
        except RecursionError:
            raise InvalidFilterError(
                f"filter {_show(text)} nests too deeply to read (the limit is {MAX_FILTER_DEPTH} levels)"
            ) from None
        parse_filter(spec)  # validate now, with the filter's own error messages
        return dict(spec)
    m = _EXPR.match(text)
    if not m:
        raise InvalidFilterError(
            f"cannot read filter {_show(text)}: write KEY OP VALUE with OP one of = != > >= < <= ~ (e.g. page>=20)"
        )
    key, op, raw = m.groups()
    if raw == "":
        raise InvalidFilterError(f"filter {_show(text)} has no value")
    if raw[0] in "<>=!~":  # 'page>>2', 'page=>2': a typo, not a comparison with the string '>2'
        raise InvalidFilterError(
            f"filter {_show(text)}: value {_show(raw)} starts with an operator; quote it if you mean it"
        )
    return {key: {_EXPR_OPS[op]: _expr_value(raw) if op != "~" else raw}}
