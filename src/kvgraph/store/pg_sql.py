"""Pure helpers of the Postgres store: kvgraph filters as parameterised SQL, exact JSON numbers,
names and connection URIs. Nothing here talks to a server, so all of it is tested offline.

Filters (docs/filters.md) become one SQL boolean over the ``meta`` JSONB column; every value
travels as a bound parameter, only fixed SQL text is ever formatted. Each condition evaluates
to true or false, never NULL, so ``NOT`` keeps kvgraph's meaning ($ne and $nin match missing keys).
Numbers compare exactly: ``meta`` holds every number as its exact decimal value (a float as
``Decimal(float)``), and JSONB and ``numeric`` compare decimals exactly, so ``1 = 1.0`` and a
nanosecond timestamp is never rounded. Strings compare by code point (``COLLATE "C"``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kvgraph.errors import InvalidInputError
from kvgraph.filters import And, Condition, FilterNode, FilterOperator, Not

Op = FilterOperator
_SQL_OPS = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")


class Unmatchable(Exception):
    """A value no stored metadata can hold (NaN, infinity, a string with NUL): the condition is false."""


# ----------------------------------------------------------------------------- exact JSON


def _number(v: int | float) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            raise Unmatchable(v)
        return str(Decimal(v))  # the float's exact value: 0.1 -> 0.1000000000000000055511151231257827...
    return str(v)


def _string(s: str) -> str:
    if "\x00" in s:
        raise Unmatchable(s)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSONB refuses it
        raise Unmatchable(s) from None
    return json.dumps(s)


def exact_json(value: Any) -> str:
    """JSON text of a metadata value with every number as its exact decimal (for JSONB).

    Raises :class:`Unmatchable` for NaN, infinities and strings Postgres cannot store.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(exact_json(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_string(str(k))}:{exact_json(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a metadata value: {type(value).__name__}")


def check_storable(node_id: str, text: str, metadata: Mapping[str, Any]) -> str:
    """The exact-JSON metadata of a node, or InvalidInputError naming what Postgres cannot store."""
    try:
        _string(text)
    except Unmatchable:
        raise InvalidInputError(
            f"node {node_id!r}: its text holds a NUL character or a lone surrogate, which Postgres cannot store"
        ) from None
    try:
        return exact_json(dict(metadata))
    except Unmatchable as e:
        raise InvalidInputError(
            f"node {node_id!r}: metadata value {str(e.args[0])[:40]!r} holds a NUL character or a lone surrogate, "
            "which Postgres cannot store"
        ) from None


# ----------------------------------------------------------------------------- filters


def filter_sql(node: FilterNode, column: str = "meta") -> tuple[str, list[Any]]:
    """``(sql, params)``: a boolean SQL expression over JSONB ``column`` that is true exactly where
    the filter matches; ``column`` is fixed SQL text of the caller's, never user input."""
    params: list[Any] = []
    sql = _node_sql(node, column, params)
    return sql, params


def _node_sql(node: FilterNode, col: str, params: list[Any]) -> str:
    # An explicit stack would avoid recursion; filters.MAX_FILTER_DEPTH (64) keeps this far from the limit.
    if isinstance(node, Condition):
        return _condition_sql(node, col, params)
    if isinstance(node, Not):
        return f"(NOT {_node_sql(node.child, col, params)})"
    if isinstance(node, And):
        if not node.children:
            return "TRUE"
        return "(" + " AND ".join(_node_sql(c, col, params) for c in node.children) + ")"
    if not node.children:
        return "FALSE"
    return "(" + " OR ".join(_node_sql(c, col, params) for c in node.children) + ")"


def _condition_sql(c: Condition, col: str, params: list[Any]) -> str:
    key = c.key
    if c.op is Op.EXISTS:
        params.append(key)
        return f"(({col} -> %s) IS {'NOT ' if c.value else ''}NULL)"
    if c.op is Op.NE:
        return f"(NOT {_condition_sql(Condition(key, Op.EQ, c.value), col, params)})"
    if c.op is Op.NIN:
        return f"(NOT {_condition_sql(Condition(key, Op.IN, c.value), col, params)})"
    try:
        if c.op is Op.EQ:
            value = exact_json(c.value)
            # the containment test lets a GIN index on meta find the rows; equality decides
            params.extend([exact_json({key: c.value}), key, value])
            return f"({col} @> %s::jsonb AND COALESCE(({col} -> %s) = %s::jsonb, FALSE))"
        if c.op is Op.IN:
            values = []
            for v in c.value:
                try:
                    values.append(exact_json(v))
                except Unmatchable:
                    continue  # an operand no stored value equals
            if not values:
                return "FALSE"
            params.extend([key, values])
            return f"COALESCE(({col} -> %s) = ANY(%s::jsonb[]), FALSE)"
        if c.op in _SQL_OPS:
            return _compare_sql(c, col, params)
        if c.op is Op.CONTAINS:
            params.extend([key, key, "[" + exact_json(c.value) + "]"])
            return f"(CASE WHEN jsonb_typeof({col} -> %s) = 'array' THEN ({col} -> %s) @> %s::jsonb ELSE FALSE END)"
        if c.op is Op.TEXT_MATCH:
            _string(c.value)
            params.extend([key, key, c.value])
            return f"(CASE WHEN jsonb_typeof({col} -> %s) = 'string' THEN strpos({col} ->> %s, %s) > 0 ELSE FALSE END)"
    except Unmatchable:
        return "FALSE"
    raise InvalidInputError(f"filter operator {c.op.value} is not supported by the Postgres store")


def _compare_sql(c: Condition, col: str, params: list[Any]) -> str:
    sql_op = _SQL_OPS[c.op]
    v = c.value
    if isinstance(v, str):
        _string(v)
        params.extend([key := c.key, key, v])
        return (
            f"(CASE WHEN jsonb_typeof({col} -> %s) = 'string' "
            f'THEN ({col} ->> %s) COLLATE "C" {sql_op} %s::text ELSE FALSE END)'
        )
    if isinstance(v, float):
        if math.isnan(v):
            raise Unmatchable(v)  # NaN compares false with everything
        operand: Decimal | int = Decimal(v)  # numeric has +-Infinity (PostgreSQL 14+)
    else:
        operand = v
    params.extend([c.key, c.key, operand])
    return (
        f"(CASE WHEN jsonb_typeof({col} -> %s) = 'number' "
        f"THEN ({col} ->> %s)::numeric {sql_op} %s::numeric ELSE FALSE END)"
    )


# ----------------------------------------------------------------------------- names and URIs


def check_schema_name(name: str) -> str:
    """A Postgres schema name kvgraph may create: lower-case letters, digits, underscores."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"Postgres schema name {name!r}: use 1-48 lower-case letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return name


def split_uri(uri: str, own: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Take kvgraph's own query parameters (``own``) out of a connection URI: ``(uri for the driver, own)``."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in query if k in own}
    rest = [(k, v) for k, v in query if k not in own]
    return urlunsplit(parts._replace(query=urlencode(rest))), mine


def redact_uri(uri: str) -> str:
    """A URI fit for messages and logs: the password (and any ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = [(k, "***" if k.lower() in ("password", "sslpassword") else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))
