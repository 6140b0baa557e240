"""Metadata filters checked against an independent brute-force evaluator.

The reference below is written from the documented semantics (kvgraph/filters.py and
docs/filters.md), not from the columnar implementation: it walks the filter as written,
one metadata dict at a time, in plain Python. Random metadata and random filter trees
are then evaluated by ``MetadataColumns`` directly and by a real ``EmbeddedVectorStore``
(with deletes, upserts, cache round trips and vacuum), and must agree with it.
"""

from __future__ import annotations

import itertools
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgraph import FilterOperator, MetadataFilter, MetadataFilters
from kvgraph.filters import parse_filter
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery
from kvgraph.store.columns import MetadataColumns

# ---------------------------------------------------------------------------------------------
# the reference evaluator (documented semantics, written independently of columns.py)
# ---------------------------------------------------------------------------------------------


def type_class(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):  # before int: bool is not a number
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    raise TypeError(f"not a metadata value: {v!r}")


def ref_equal(a: Any, b: Any) -> bool:
    """``$eq``: same type class and equal; numbers numerically; lists element by element."""
    ta = type_class(a)
    if ta != type_class(b):
        return False
    if ta == "list":
        return len(a) == len(b) and all(ref_equal(x, y) for x, y in zip(a, b))
    return a == b  # int/float compare numerically in Python; nan never equals anything


# Spellings of each operator accepted by the typed form (docs/filters.md), mapped by hand.
SPELLINGS = {
    "$eq": ["$eq", "eq", "=="],
    "$ne": ["$ne", "ne", "!="],
    "$gt": ["$gt", "gt", ">"],
    "$gte": ["$gte", "gte", ">="],
    "$lt": ["$lt", "lt", "<"],
    "$lte": ["$lte", "lte", "<="],
    "$in": ["$in", "in"],
    "$nin": ["$nin", "nin"],
    "$contains": ["$contains", "contains"],
    "$text_match": ["$text_match", "text_match"],
    "$exists": ["$exists", "exists"],
}
CANONICAL = {spelling: op for op, spellings in SPELLINGS.items() for spelling in spellings}


def canonical_op(op: Any) -> str:
    if isinstance(op, FilterOperator):
        return op.value
    return CANONICAL[op]


def ref_condition(key: str, op: str, operand: Any, md: dict[str, Any]) -> bool:
    op = canonical_op(op)
    if op == "$exists":
        return (key in md) == operand
    if op == "$ne":
        return not ref_condition(key, "$eq", operand, md)
    if op == "$nin":
        return not ref_condition(key, "$in", operand, md)
    if key not in md:
        return False
    value = md[key]
    if op == "$eq":
        return ref_equal(value, operand)
    if op == "$in":
        return any(ref_equal(value, o) for o in operand)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        tc = type_class(value)
        if tc not in ("number", "string") or tc != type_class(operand):
            return False
        if op == "$gt":
            return value > operand
        if op == "$gte":
            return value >= operand
        if op == "$lt":
            return value < operand
        return value <= operand
    if op == "$contains":
        return type_class(value) == "list" and any(ref_equal(e, operand) for e in value)
    if op == "$text_match":
        return type_class(value) == "string" and operand in value
    raise AssertionError(f"reference does not know {op}")


def ref_field(key: str, spec: Any, md: dict[str, Any]) -> bool:
    """The value of a field in dict form: an operator object (AND of its entries) or a plain value."""
    if isinstance(spec, dict):
        results = []
        for op, operand in spec.items():
            if op == "$not":
                results.append(not ref_field(key, operand, md))
            else:
                results.append(ref_condition(key, op, operand, md))
        return all(results)
    return ref_condition(key, "$eq", spec, md)


def ref_match(spec: Any, md: dict[str, Any]) -> bool:
    """Does metadata ``md`` match filter ``spec`` (dict form or typed form)?"""
    if spec is None:
        return True
    if isinstance(spec, MetadataFilter):
        return ref_condition(spec.key, spec.operator, spec.value, md)
    if isinstance(spec, MetadataFilters):
        results = [ref_match(f, md) for f in spec.filters]
        if spec.condition == "and":
            return all(results)
        if spec.condition == "or":
            return any(results)
        assert spec.condition == "not"
        return not any(results)  # "not" = none of the filters
    results = []
    for key, value in spec.items():  # several entries: AND
        if key == "$and":
            results.append(all(ref_match(s, md) for s in value))
        elif key == "$or":
            results.append(any(ref_match(s, md) for s in value))
        elif key == "$not":
            results.append(not ref_match(value, md))
        else:
            results.append(ref_field(key, value, md))
    return all(results)


def ref_mask(spec: Any, metas: list[dict[str, Any]]) -> np.ndarray:
    return np.array([ref_match(spec, md) for md in metas], dtype=bool)


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------

# Small pools so that equal values (and therefore matches) are common; ints and floats overlap
# numerically (1 and 1.0), strings share prefixes, "1" looks like a number, True like 1.
# -0.0 is included: it must equal 0 everywhere, inside lists too.
INTS = st.sampled_from([-1, 0, 1, 2, 3, 10])
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 2.5, -1.5]),
    st.floats(-20, 20, allow_nan=False, allow_infinity=False),
)
# Integers where float64 is not exact (above 2**53: nanosecond timestamps, snowflake ids) and
# the floats next to them. 1733363000123456789 and ...700 round to the same float64 (...768),
# which is also in the pool as an int and as a float; 2**63 and beyond leave int64.
TS = 1733363000123456789
BIG_INTS = st.sampled_from(
    [2**53, 2**53 + 1, 2**53 - 1, TS, TS - 89, TS - 21, 2**63 - 1, 2**63 - 2, -(2**63), 2**63, 2**64 + 1, -(10**20)]
)
BIG_FLOATS = st.sampled_from([2.0**53, float(TS), math.nextafter(float(TS), 0), 2.0**63, -(2.0**63), 1e20, 9.5e18])
NUMBERS = st.one_of(INTS, INTS, FLOATS, BIG_INTS, BIG_FLOATS)
STRINGS = st.sampled_from(["", "a", "ab", "abc", "abd", "b", "ba", "B", "Ab", "AB", "1", "é", "ab c", "x"])
SCALARS = st.one_of(NUMBERS, STRINGS, st.booleans(), st.none())
SMALL_SCALARS = st.one_of(
    st.sampled_from([0, -0.0, 1, 2, 1.0, 2.5]), st.sampled_from(["a", "ab", "b", "1"]), st.booleans(), st.none()
)
LISTS = st.one_of(st.lists(SMALL_SCALARS, max_size=3), st.lists(SCALARS, max_size=4))
VALUES = st.one_of(SCALARS, LISTS)

META_KEYS = ["a", "b", "c", "tags"]
FILTER_KEYS = st.sampled_from([*META_KEYS, *META_KEYS, "zz"])  # "zz" never occurs in metadata

# Operands that the filter operators only ever see as parameters (never stored): also nan/inf.
ODD_NUMBERS = st.sampled_from([math.inf, -math.inf, math.nan, 10**309, -(10**309), 2**1100, TS + 1])


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any]:
    md: dict[str, Any] = {}
    for key in META_KEYS:
        if draw(st.integers(0, 4)) == 0:
            continue  # missing key
        md[key] = draw(LISTS) if key == "tags" and draw(st.integers(0, 2)) else draw(VALUES)
    return md


def observed(metas: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Values that occur in the metadata, so that filters can be drawn to hit them often."""
    scalars: list[Any] = []
    lists: list[Any] = []
    for md in metas:
        for v in md.values():
            if isinstance(v, list):
                lists.append(v)
                scalars += v
            else:
                scalars.append(v)
    return {
        "scalars": scalars,
        "lists": lists,
        "numbers": [v for v in scalars if type_class(v) == "number"],
        "strings": [v for v in scalars if type_class(v) == "string"],
    }


def biased(pool: dict[str, list[Any]] | None, name: str, generic: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    if pool and pool[name]:
        return st.one_of(st.sampled_from(pool[name]), generic)
    return generic


# Every operator, with the ones whose behaviour depends most on the data drawn more often.
OPS_WEIGHTED = [*SPELLINGS, "$text_match", "$text_match", "$contains", "$in", "$gt", "$lte"]


@st.composite
def substring(draw: st.DrawFn, pool: dict[str, list[Any]] | None) -> str:
    s = draw(biased(pool, "strings", STRINGS))
    i = draw(st.integers(0, len(s)))
    j = draw(st.integers(i, len(s)))
    return s[i:j]


@st.composite
def condition(draw: st.DrawFn, pool: dict[str, list[Any]] | None = None) -> tuple[str, Any]:
    """(operator, operand) with a well-formed operand, often one that occurs in the metadata."""
    scalar = biased(pool, "scalars", SCALARS)
    op = draw(st.sampled_from(OPS_WEIGHTED))
    if op in ("$eq", "$ne"):
        operand = draw(st.one_of(scalar, biased(pool, "lists", LISTS), ODD_NUMBERS))
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        operand = draw(st.one_of(biased(pool, "numbers", NUMBERS), biased(pool, "strings", STRINGS), ODD_NUMBERS))
    elif op in ("$in", "$nin"):
        operand = draw(st.lists(st.one_of(scalar, ODD_NUMBERS), max_size=4))
    elif op == "$contains":
        operand = draw(scalar)
    elif op == "$text_match":
        operand = draw(substring(pool))
    else:
        operand = draw(st.booleans())
    return op, operand


@st.composite
def field_spec(draw: st.DrawFn, pool: dict[str, list[Any]] | None = None, allow_not: bool = True) -> Any:
    """What may follow a field key: a plain value (exact-match shorthand) or an operator object."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(biased(pool, "scalars", SCALARS), biased(pool, "lists", LISTS)))
    conds = draw(st.lists(condition(pool), min_size=1, max_size=2, unique_by=lambda c: c[0]))
    spec: dict[str, Any] = dict(conds)
    if allow_not and draw(st.integers(0, 3)) == 0:
        spec["$not"] = draw(field_spec(pool, allow_not=False))
        if draw(st.booleans()):  # sometimes $not alone
            spec = {"$not": spec["$not"]}
    return spec


@st.composite
def dict_filter(draw: st.DrawFn, pool: dict[str, list[Any]] | None = None, depth: int = 3) -> dict[str, Any]:
    """A dict-form filter tree, at most ``depth`` logical levels deep."""
    shape = draw(
        st.sampled_from(
            ["field", "field", "fields", "$and", "$or", "$not", "mixed"] if depth else ["field", "field", "fields"]
        )
    )
    if shape == "field":
        return {draw(FILTER_KEYS): draw(field_spec(pool))}
    if shape == "fields":  # several keys in one dict: AND
        keys = draw(st.lists(FILTER_KEYS, min_size=2, max_size=3, unique=True))
        return {k: draw(field_spec(pool)) for k in keys}
    if shape == "$not":
        return {"$not": draw(dict_filter(pool, depth - 1))}
    if shape in ("$and", "$or"):
        return {shape: draw(st.lists(dict_filter(pool, depth - 1), min_size=1, max_size=3))}
    # logical operators and fields side by side in one dict (all ANDed); may be {} (matches all)
    spec: dict[str, Any] = {}
    for key in draw(st.lists(FILTER_KEYS, max_size=1)):
        spec[key] = draw(field_spec(pool))
    for logical in draw(st.lists(st.sampled_from(["$and", "$or", "$not"]), max_size=2, unique=True)):
        if logical == "$not":
            spec["$not"] = draw(dict_filter(pool, depth - 1))
        else:
            spec[logical] = draw(st.lists(dict_filter(pool, depth - 1), min_size=1, max_size=2))
    return spec


@st.composite
def typed_filter(draw: st.DrawFn, pool: dict[str, list[Any]] | None = None, depth: int = 3) -> MetadataFilters:
    children: list[MetadataFilter | MetadataFilters] = []
    for _ in range(draw(st.integers(0, 3))):
        if depth > 0 and draw(st.integers(0, 2)) == 0:
            children.append(draw(typed_filter(pool, depth - 1)))
        else:
            op, operand = draw(condition(pool))
            spelling = draw(st.sampled_from([FilterOperator(op), *SPELLINGS[op]]))
            children.append(MetadataFilter(draw(FILTER_KEYS), operand, spelling))
    return MetadataFilters(children, condition=draw(st.sampled_from(["and", "or", "not"])))


def any_filter(pool: dict[str, list[Any]] | None = None) -> st.SearchStrategy[Any]:
    return st.one_of(dict_filter(pool), typed_filter(pool))


@st.composite
def metas_and_filters(
    draw: st.DrawFn, min_rows: int = 8, max_rows: int = 30, max_filters: int = 4
) -> tuple[list[dict[str, Any]], list[Any]]:
    metas = draw(st.lists(metadata(), min_size=min_rows, max_size=max_rows))
    pool = observed(metas)
    return metas, draw(st.lists(any_filter(pool), min_size=1, max_size=max_filters))


def with_subfilters(spec: Any) -> list[Any]:
    """The filter and every filter nested inside it, each of which must also agree on its own."""
    out = [spec]
    if isinstance(spec, MetadataFilters):
        for f in spec.filters:
            out += with_subfilters(f)
    elif isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("$and", "$or"):
                for f in value:
                    out += with_subfilters(f)
            elif key == "$not":
                out += with_subfilters(value)
            elif len(spec) > 1:
                out.append({key: value})
    return out


def show(spec: Any, metas: list[dict[str, Any]], got: np.ndarray, want: np.ndarray) -> str:
    bad = np.flatnonzero(got != want)[:5]
    rows = "\n".join(f"  slot {i}: {metas[i]!r} implementation={got[i]} reference={want[i]}" for i in bad)
    return f"filter {spec!r} disagrees with the reference on:\n{rows}"


# ---------------------------------------------------------------------------------------------
# hand-checked examples (expected sets worked out from the documentation, by hand)
# ---------------------------------------------------------------------------------------------

EXAMPLE_METAS: list[dict[str, Any]] = [
    {"page": 3, "lang": "en", "tags": ["safety", "intro"]},  # 0
    {"page": 3.0, "lang": "de", "tags": []},  # 1
    {"page": "3", "lang": "en"},  # 2  page is a string
    {"page": True, "tags": ["Safety", 1]},  # 3  page is a bool
    {"page": 25, "lang": None, "tags": "safety"},  # 4  tags is a string, not a list
    {},  # 5
    {"page": [3, 25], "lang": "english"},  # 6  page is a list
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"page": 3}, {0, 1}),  # 3 == 3.0; "3", True and [3, 25] are other type classes
        ({"page": {"$ne": 3}}, {2, 3, 4, 5, 6}),  # negation: missing keys and other types match
        ({"page": {"$gt": 1, "$lt": 30}}, {0, 1, 4}),  # numbers only; never inside the list
        ({"page": {"$gte": "3"}}, {2}),  # string comparison sees only strings
        ({"page": {"$in": [25, "3", True]}}, {2, 3, 4}),
        ({"page": {"$nin": [3]}}, {2, 3, 4, 5, 6}),
        ({"tags": {"$contains": "safety"}}, {0}),  # case-sensitive; the string "safety" is no list
        ({"tags": {"$contains": 1.0}}, {3}),  # element compared numerically
        ({"tags": {"$contains": True}}, set()),  # True is not the number 1
        ({"tags": []}, {1}),  # a list operand compares whole lists
        ({"lang": {"$text_match": "en"}}, {0, 2, 6}),
        ({"lang": {"$text_match": "En"}}, set()),
        ({"lang": None}, {4}),  # null matches only an explicit null, not a missing key
        ({"lang": {"$exists": False}}, {3, 5}),
        ({"lang": {"$exists": True}}, {0, 1, 2, 4, 6}),  # null counts as present
        ({"lang": "en", "page": 3}, {0}),  # several keys: AND
        ({"lang": {"$not": {"$text_match": "en"}}}, {1, 3, 4, 5}),  # field-level $not
        ({"$or": [{"page": 25}, {"lang": "de"}]}, {1, 4}),
        ({"$not": {"$or": [{"page": 25}, {"lang": "de"}]}}, {0, 2, 3, 5, 6}),
        ({"$and": [{"page": {"$exists": True}}, {"$not": {"page": {"$lte": 3}}}]}, {2, 3, 4, 6}),
        ({"missing": {"$gt": 0}}, set()),
        ({}, {0, 1, 2, 3, 4, 5, 6}),
        (MetadataFilters([MetadataFilter("page", 3, ">="), MetadataFilter("lang", "en")]), {0}),
        (MetadataFilters([MetadataFilter("page", 25), MetadataFilter("lang", "de")], condition="or"), {1, 4}),
        (MetadataFilters([MetadataFilter("page", 25), MetadataFilter("lang", "de")], condition="not"), {0, 2, 3, 5, 6}),
        (
            MetadataFilters(
                [
                    MetadataFilter("tags", "safety", FilterOperator.CONTAINS),
                    MetadataFilters([MetadataFilter("page", 10, "<")], condition="not"),
                ]
            ),
            set(),
        ),
    ],
)
def test_hand_checked_examples(spec: Any, expected: set[int]) -> None:
    # The reference itself must agree with the hand-worked answer, so that it is trustworthy ...
    assert set(np.flatnonzero(ref_mask(spec, EXAMPLE_METAS)).tolist()) == expected
    # ... and so must the implementation.
    cols = MetadataColumns()
    cols.append(EXAMPLE_METAS)
    assert set(np.flatnonzero(cols.mask(parse_filter(spec))).tolist()) == expected


# ---------------------------------------------------------------------------------------------
# MetadataColumns against the reference
# ---------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(case=metas_and_filters(), cuts=st.lists(st.integers(0, 30), max_size=3))
def test_columns_match_reference(case: tuple[list[dict[str, Any]], list[Any]], cuts: list[int]) -> None:
    metas, filters = case
    cols = MetadataColumns()
    # Append in several batches, so that keys and sub-columns appear after rows exist.
    bounds = sorted({0, len(metas), *(min(c, len(metas)) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        cols.append(metas[lo:hi])
    assert cols.n == len(metas)
    for top in filters:
        for spec in with_subfilters(top):
            got = cols.mask(parse_filter(spec))
            want = ref_mask(spec, metas)
            assert got.shape == (len(metas),)
            assert np.array_equal(got, want), show(spec, metas, got, want)


@settings(max_examples=100, deadline=None)
@given(case=metas_and_filters(max_rows=20), more=st.lists(metadata(), max_size=10))
def test_columns_survive_persistence(case: tuple[list[dict[str, Any]], list[Any]], more: list[dict[str, Any]]) -> None:
    metas, filters = case
    specs = [spec for top in filters for spec in with_subfilters(top)]
    cols = MetadataColumns()
    cols.append(metas)
    arrays, meta = cols.to_arrays()
    # Copy the arrays, as a file round trip would, so nothing is shared with the original.
    restored = MetadataColumns.from_arrays({k: np.array(v) for k, v in arrays.items()}, meta)
    assert restored.n == cols.n
    for spec in specs:
        tree = parse_filter(spec)
        assert np.array_equal(restored.mask(tree), cols.mask(tree)), spec
    # A restored index keeps growing correctly: appending equals building from scratch.
    restored.append(more)
    all_metas = metas + more
    for spec in specs:
        got = restored.mask(parse_filter(spec))
        want = ref_mask(spec, all_metas)
        assert np.array_equal(got, want), show(spec, all_metas, got, want)


def test_parse_is_shared_by_both_forms() -> None:
    # The same condition written in either form selects the same rows.
    cols = MetadataColumns()
    cols.append(EXAMPLE_METAS)
    for op, spellings in SPELLINGS.items():
        operand = {
            "$in": [3, "en"],
            "$nin": [3, "en"],
            "$exists": True,
            "$text_match": "en",
            "$contains": "safety",
        }.get(op, 3)
        for key in ("page", "lang", "tags"):
            want = cols.mask(parse_filter({key: {op: operand}}))
            assert np.array_equal(want, ref_mask({key: {op: operand}}, EXAMPLE_METAS))
            for spelling in spellings:
                typed = MetadataFilters([MetadataFilter(key, operand, spelling)])
                assert np.array_equal(cols.mask(parse_filter(typed)), want), (key, spelling)


def test_negative_zero_in_lists_is_numerically_zero() -> None:
    metas = [{"v": [-0.0]}, {"v": -0.0}]
    cols = MetadataColumns()
    cols.append(metas)
    assert cols.mask(parse_filter({"v": 0.0})).tolist() == [False, True]  # scalar: numeric (passes)
    assert cols.mask(parse_filter({"v": {"$contains": 0.0}})).tolist() == [True, False]
    assert cols.mask(parse_filter({"v": [0]})).tolist() == [True, False]


# ---------------------------------------------------------------------------------------------
# integers over the whole int64 range (and beyond), mixed with floats: exact, like Python
# ---------------------------------------------------------------------------------------------


@st.composite
def int64_neighbourhood(draw: st.DrawFn) -> list[Any]:
    """Numbers clustered around a few anchors anywhere in int64: the anchor, its int neighbours,
    the floats nearest to it, and sometimes a value outside int64."""
    values: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        x = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**60), 2**60), BIG_INTS))
        f = float(x)
        values += [x, x + 1, x - 1, f, math.nextafter(f, math.inf), math.nextafter(f, -math.inf), int(f)]
    return values


@settings(max_examples=200, deadline=None)
@given(data=st.data(), pool=int64_neighbourhood())
def test_numbers_over_the_whole_int64_range_compare_exactly(data: st.DataObject, pool: list[Any]) -> None:
    values = st.sampled_from(pool)
    metas = data.draw(
        st.lists(
            st.one_of(
                st.fixed_dictionaries({"v": values}),
                st.fixed_dictionaries({"v": st.lists(values, max_size=3)}),
                st.fixed_dictionaries({"v": STRINGS}),
                st.just({}),
            ),
            min_size=1,
            max_size=25,
        ),
        label="metas",
    )
    operand = st.one_of(values, values, ODD_NUMBERS)
    cols = MetadataColumns()
    cols.append(metas[: len(metas) // 2])  # two appends: columns appear after rows exist
    cols.append(metas[len(metas) // 2 :])
    arrays, meta = cols.to_arrays()
    restored = MetadataColumns.from_arrays({k: np.array(v) for k, v in arrays.items()}, meta)
    for _ in range(6):
        op = data.draw(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains"]))
        if op in ("$in", "$nin"):
            spec: Any = {"v": {op: data.draw(st.lists(operand, max_size=4))}}
        elif op == "$eq" and data.draw(st.booleans()):
            spec = {"v": data.draw(st.lists(values, max_size=3))}  # a whole list, element by element
        else:
            spec = {"v": {op: data.draw(operand)}}
        want = ref_mask(spec, metas)
        tree = parse_filter(spec)
        got = cols.mask(tree)
        assert np.array_equal(got, want), show(spec, metas, got, want)
        assert np.array_equal(restored.mask(tree), want), show(spec, metas, restored.mask(tree), want)


def test_nanosecond_timestamps_are_not_rounded() -> None:
    """The audit's case: two timestamps 89 ns apart share a float64; filters must tell them apart."""
    metas = [{"ts_ns": TS}, {"ts_ns": TS - 89}, {"ts_ns": float(TS)}, {"ts_ns": [TS]}]
    cols = MetadataColumns()
    cols.append(metas)
    for spec in (
        {"ts_ns": TS},
        {"ts_ns": TS - 89},
        {"ts_ns": {"$gt": TS - 89}},
        {"ts_ns": {"$gte": TS}},
        {"ts_ns": {"$lt": TS}},
        {"ts_ns": {"$in": [TS - 89, 2**63]}},
        {"ts_ns": {"$ne": TS}},
        {"ts_ns": {"$contains": TS - 89}},
        {"ts_ns": {"$contains": float(TS)}},
        {"ts_ns": float(TS)},
    ):
        assert np.array_equal(cols.mask(parse_filter(spec)), ref_mask(spec, metas)), spec
    assert cols.mask(parse_filter({"ts_ns": TS})).tolist() == [True, False, False, False]
    assert cols.mask(parse_filter({"ts_ns": {"$gt": TS - 89}})).tolist() == [True, False, True, False]


# ---------------------------------------------------------------------------------------------
# a million slots: vectorised evaluation, checked against numpy-computed expectations
# ---------------------------------------------------------------------------------------------

N_BIG = 1_000_000
LANGS = np.array(["en", "de", "fr", "english", "", "en-GB"])
TAGS = ["x", "y", "z"]


@pytest.fixture(scope="module")
def big() -> tuple[MetadataColumns, dict[str, np.ndarray]]:
    rng = np.random.default_rng(12345)
    page = rng.integers(0, 1000, N_BIG)
    # kind of the "page" value: 0 missing, 1 string, 2 null, 3 bool, 4 float (+0.5), else int
    page_kind = rng.integers(0, 12, N_BIG)
    lang_idx = rng.integers(0, len(LANGS) + 1, N_BIG)  # == len(LANGS): missing
    flag = rng.integers(0, 3, N_BIG)  # 0 False, 1 True, 2 missing
    tag_bits = rng.integers(0, 8, N_BIG)  # bit i set: TAGS[i] in the list; 0 = empty list
    has_tags = rng.random(N_BIG) < 0.7

    page_l, kind_l, lang_l, flag_l = page.tolist(), page_kind.tolist(), lang_idx.tolist(), flag.tolist()
    bits_l, has_l, langs = tag_bits.tolist(), has_tags.tolist(), LANGS.tolist()
    tag_lists = [[t for i, t in enumerate(TAGS) if b >> i & 1] for b in range(8)]
    metas: list[dict[str, Any]] = []
    for i in range(N_BIG):
        md: dict[str, Any] = {}
        k = kind_l[i]
        if k == 1:
            md["page"] = str(page_l[i])
        elif k == 2:
            md["page"] = None
        elif k == 3:
            md["page"] = page_l[i] % 2 == 1
        elif k == 4:
            md["page"] = page_l[i] + 0.5
        elif k != 0:
            md["page"] = page_l[i]
        if lang_l[i] < len(langs):
            md["lang"] = langs[lang_l[i]]
        if flag_l[i] != 2:
            md["flag"] = flag_l[i] == 1
        if has_l[i]:
            md["tags"] = tag_lists[bits_l[i]]
        metas.append(md)
    cols = MetadataColumns()
    for s in range(0, N_BIG, 250_000):  # several appends, like a growing store
        cols.append(metas[s : s + 250_000])
    truth = {
        "page": page,
        "page_kind": page_kind,
        "lang_idx": lang_idx,
        "flag": flag,
        "tag_bits": tag_bits,
        "has_tags": has_tags,
    }
    return cols, truth


def count_python_lines(fn: Any) -> tuple[Any, int]:
    """Run fn() and count the Python source lines it executes (a loop over n rows executes >= n)."""
    lines = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = fn()
    finally:
        sys.settrace(previous)
    return result, lines


def test_million_slots_compound_filter(big: tuple[MetadataColumns, dict[str, np.ndarray]]) -> None:
    cols, t = big
    page, kind = t["page"], t["page_kind"]
    is_num = kind >= 4
    num_value = np.where(kind == 4, page + 0.5, page.astype(np.float64))
    lang_present = t["lang_idx"] < len(LANGS)
    has_x = t["has_tags"] & (t["tag_bits"] & 1 == 1)
    flag_true = t["flag"] == 1

    spec = {
        "$or": [
            {"page": {"$gte": 100, "$lt": 200.5}},
            {"$and": [{"lang": {"$text_match": "en"}}, {"tags": {"$contains": "x"}}]},
        ],
        "$not": {"flag": True},
        "page": {"$ne": 150},
    }
    tree = parse_filter(spec)
    got, lines = count_python_lines(lambda: cols.mask(tree))

    in_range = is_num & (num_value >= 100) & (num_value < 200.5)
    # substring test per distinct language, broadcast by index (a "missing" entry appended last)
    en_in_lang = np.array(["en" in s for s in LANGS.tolist()] + [False])
    text_en = lang_present & en_in_lang[t["lang_idx"]]
    want = (in_range | (text_en & has_x)) & ~flag_true & ~(is_num & (num_value == 150))
    assert got.shape == (N_BIG,)
    assert 0 < want.sum() < N_BIG
    assert np.array_equal(got, want)
    # No Python loop over the million nodes: far fewer lines run than there are rows.
    assert lines < 20_000, f"{lines} Python lines executed for one filter over {N_BIG} slots"


def test_million_slots_string_range_and_types(big: tuple[MetadataColumns, dict[str, np.ndarray]]) -> None:
    cols, t = big
    page, kind = t["page"], t["page_kind"]
    # String comparison only sees the string-typed pages (by code point: "5" > "499").
    spec = {"page": {"$gt": "499", "$lte": "7"}}
    got, lines = count_python_lines(lambda: cols.mask(parse_filter(spec)))
    as_str = np.array([str(i) for i in range(1000)])
    str_ok = (as_str > "499") & (as_str <= "7")
    want = (kind == 1) & str_ok[page]
    assert np.array_equal(got, want)
    assert want.sum() > 0
    assert lines < 20_000
    # $in mixes type classes: number 7, string "7", bool True and null each match only their own kind.
    got = cols.mask(parse_filter({"page": {"$in": [7, "7", True, None]}}))
    want = ((kind >= 5) & (page == 7)) | ((kind == 1) & (page == 7)) | ((kind == 3) & (page % 2 == 1)) | (kind == 2)
    assert np.array_equal(got, want)
    # $exists and a whole-list $ne over a missing-heavy key
    got = cols.mask(parse_filter({"$and": [{"tags": {"$exists": True}}, {"tags": {"$ne": []}}]}))
    assert np.array_equal(got, t["has_tags"] & (t["tag_bits"] != 0))


# ---------------------------------------------------------------------------------------------
# through a real EmbeddedVectorStore: deletes, upserts, cache round trips, vacuum
# ---------------------------------------------------------------------------------------------

DIM = 4


@st.composite
def store_ops(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """A list of ("upsert", {id: metadata}) / ("delete", [ids]) / ("vacuum", None) operations."""
    ids = st.sampled_from([f"n{i}" for i in range(16)])
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["upsert", "upsert", "delete", "vacuum"]))
        if kind == "upsert":
            ops.append(("upsert", draw(st.dictionaries(ids, metadata(), min_size=1, max_size=8))))
        elif kind == "delete":
            ops.append(("delete", draw(st.lists(ids, min_size=1, max_size=4, unique=True))))
        else:
            ops.append(("vacuum", None))
    return ops


def apply_ops(
    store: EmbeddedVectorStore, model: dict[str, dict[str, Any]], ops: list[tuple[str, Any]], rng: np.random.Generator
) -> None:
    for kind, arg in ops:
        if kind == "upsert":
            ids = list(arg)
            store.add_arrays(ids, rng.normal(size=(len(ids), DIM)).astype(np.float32), metadatas=[arg[i] for i in ids])
            model.update(arg)
        elif kind == "delete":
            store.delete(arg)
            for i in arg:
                model.pop(i, None)
        else:
            store.vacuum()


def run_queries(store: EmbeddedVectorStore, filters: list[Any], q: np.ndarray) -> list[tuple[list[str], list[float]]]:
    k = max(store.count(), 1)
    out = []
    for spec in filters:
        res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=k, filters=spec, exact=True))
        out.append((res.ids, res.similarities))
    return out


def check_against_model(
    results: list[tuple[list[str], list[float]]], filters: list[Any], model: dict[str, dict[str, Any]]
) -> None:
    for spec, (ids, _sims) in zip(filters, results):
        want = {i for i, md in model.items() if ref_match(spec, md)}
        assert len(ids) == len(set(ids)), f"duplicate ids in {ids}"
        assert set(ids) == want, f"filter {spec!r}: store returned {sorted(ids)}, reference {sorted(want)}"


def same_results(a: list[tuple[list[str], list[float]]], b: list[tuple[list[str], list[float]]]) -> None:
    assert len(a) == len(b)
    for (ids_a, sims_a), (ids_b, sims_b) in zip(a, b):
        assert ids_a == ids_b
        assert np.allclose(sims_a, sims_b, rtol=1e-6, atol=1e-7)


def draw_filters(data: st.DataObject, metas: list[dict[str, Any]], max_filters: int = 3) -> list[Any]:
    tops = data.draw(st.lists(any_filter(observed(metas)), min_size=1, max_size=max_filters), label="filters")
    return [spec for top in tops for spec in with_subfilters(top)]


def metas_of(ops: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [md for kind, arg in ops if kind == "upsert" for md in arg.values()]


SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_OK)
@given(before=store_ops(), after=store_ops(), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_store_filters_match_reference(
    before: list[tuple[str, Any]], after: list[tuple[str, Any]], data: st.DataObject, seed: int
) -> None:
    filters = draw_filters(data, metas_of(before + after))
    rng = np.random.default_rng(seed)
    q = rng.normal(size=DIM).astype(np.float32)
    model: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store"
        store = EmbeddedVectorStore.open(path, dim=DIM)
        try:
            apply_ops(store, model, before, rng)
            first = run_queries(store, filters, q)  # builds the columns from the records
            check_against_model(first, filters, model)

            store.checkpoint()
            store.close()
            store = EmbeddedVectorStore.open(path, dim=DIM)
            if model:
                assert (path / "cache" / "columns.kvg").exists()
            again = run_queries(store, filters, q)  # columns come from the cache file
            same_results(first, again)

            apply_ops(store, model, after, rng)  # cache-loaded columns extended incrementally
            check_against_model(run_queries(store, filters, q), filters, model)

            store.close()
            store = EmbeddedVectorStore.open(path, dim=DIM)
            assert store.count() == len(model)
            third = run_queries(store, filters, q)
            check_against_model(third, filters, model)
        finally:
            store.close()


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_OK)
@given(
    metas=st.lists(metadata(), min_size=4, max_size=12),
    new_metas=st.lists(metadata(), min_size=1, max_size=12),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_store_upsert_matches_only_new_metadata(
    metas: list[dict[str, Any]], new_metas: list[dict[str, Any]], data: st.DataObject, seed: int
) -> None:
    """Every node is replaced once; its old metadata must never make it match again."""
    filters = draw_filters(data, metas + new_metas)
    rng = np.random.default_rng(seed)
    q = rng.normal(size=DIM).astype(np.float32)
    ids = [f"n{i}" for i in range(len(metas))]
    with tempfile.TemporaryDirectory() as d, EmbeddedVectorStore.open(Path(d) / "s", dim=DIM) as store:
        store.add_arrays(ids, rng.normal(size=(len(ids), DIM)), metadatas=metas)
        check_against_model(run_queries(store, filters, q), filters, dict(zip(ids, metas)))
        # the columns exist now, so the upsert takes the incremental path
        new = {ids[i]: new_metas[i % len(new_metas)] for i in range(len(ids))}
        store.add_arrays(ids, rng.normal(size=(len(ids), DIM)), metadatas=[new[i] for i in ids])
        assert store.count() == len(ids)
        check_against_model(run_queries(store, filters, q), filters, new)
        store.delete(ids[::2])
        remaining = {i: new[i] for i in ids[1::2]}
        check_against_model(run_queries(store, filters, q), filters, remaining)
