"""Pathological filters get a clear InvalidFilterError, never RecursionError, OverflowError or TypeError.

Also: integers of any size in metadata and operands, through a real store and its cache file,
including a columns cache written before integers were kept exact (it must be rebuilt).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph import InvalidFilterError, MetadataFilter, MetadataFilters
from kvgraph.fileio import read_arrays, write_arrays
from kvgraph.filters import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_NODES,
    Condition,
    FilterOperator,
    Not,
    Or,
    parse_expression,
    parse_filter,
)
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery

TS = 1733363000123456789


def nested_dict(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"page": 1}
    for i in range(depth):
        spec = {"$not": spec} if i % 2 else {"$and": [spec]}
    return spec


def test_nesting_up_to_the_limit_parses() -> None:
    parse_filter(nested_dict(MAX_FILTER_DEPTH - 2))


@pytest.mark.parametrize("depth", [MAX_FILTER_DEPTH + 1, 1000, 100_000])
def test_deep_dict_filter_is_refused_clearly(depth: int) -> None:
    with pytest.raises(InvalidFilterError, match=f"more than {MAX_FILTER_DEPTH} levels deep"):
        parse_filter(nested_dict(depth))


def test_deep_typed_and_tree_filters_are_refused_clearly() -> None:
    typed = MetadataFilters([MetadataFilter("page", 1)])
    for _ in range(1000):
        typed = MetadataFilters([typed], condition="or")
    with pytest.raises(InvalidFilterError, match="levels deep"):
        parse_filter(typed)
    tree: Any = Condition("page", FilterOperator.EQ, 1)
    for _ in range(100_000):  # built without recursion, checked without recursion
        tree = Not(tree)
    with pytest.raises(InvalidFilterError, match="levels deep"):
        parse_filter(tree)
    with pytest.raises(InvalidFilterError, match="Condition, And, Or and Not"):
        parse_filter(Or(("page",)))  # type: ignore[arg-type]


def test_self_referencing_filter_is_refused() -> None:
    spec: dict[str, Any] = {}
    spec["$not"] = spec
    with pytest.raises(InvalidFilterError, match="levels deep"):
        parse_filter(spec)


def test_huge_filter_is_refused_and_points_to_in() -> None:
    parse_filter({"$or": [{"id": i} for i in range(MAX_FILTER_NODES // 4)]})
    with pytest.raises(InvalidFilterError, match=r"more than 10000 .*\$in"):
        parse_filter({"$or": [{"id": i} for i in range(MAX_FILTER_NODES)]})
    parse_filter({"id": {"$in": list(range(200_000))}})  # the way to say it: one condition


def test_deep_json_expression_is_refused_clearly() -> None:
    with pytest.raises(InvalidFilterError, match="nests too deeply"):
        parse_expression('{"$not": ' * 100_000 + "{}" + "}" * 100_000)
    with pytest.raises(InvalidFilterError, match="levels deep"):
        parse_expression(json.dumps(nested_dict(200)))


def test_integers_of_any_size_compare_without_overflow() -> None:
    with pytest.raises(InvalidFilterError, match="5000 digits is too long"):
        parse_expression("page>=" + "9" * 5000)
    assert parse_expression("page>=1" + "0" * 309) == {"page": {"$gte": 10**309}}
    # An operand far beyond float range, in every operator, and in messages (shortened).
    for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$contains"):
        parse_filter({"page": {op: [10**5000] if op == "$in" else 10**5000}})
    with pytest.raises(InvalidFilterError) as info:
        parse_filter({"page": {"$gt": [10**5000]}})
    assert len(str(info.value)) < 300


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = EmbeddedVectorStore.open(tmp_path / "store", dim=4)
    try:
        yield s
    finally:
        s.close()


METAS: list[dict[str, Any]] = [
    {"v": TS},
    {"v": TS - 89},
    {"v": float(TS)},
    {"v": 10**400},  # beyond float64 range entirely
    {"v": -(2**63)},
    {"v": 2**63},  # one past int64
    {"v": [TS, 10**400]},
    {"v": 2.5},
]
QUERIES: list[tuple[dict[str, Any], set[int]]] = [
    ({"v": TS}, {0}),
    ({"v": {"$gt": TS - 89}}, {0, 2, 3, 5}),
    ({"v": {"$gte": 10**309}}, {3}),
    ({"v": {"$lt": -(10**309)}}, set()),
    ({"v": {"$lte": -(2**63)}}, {4}),
    ({"v": {"$gt": 2**63 - 1}}, {3, 5}),
    ({"v": {"$in": [2**63, TS - 89, 2.5]}}, {1, 5, 7}),
    ({"v": {"$contains": 10**400}}, {6}),
    ({"v": {"$contains": float(TS)}}, set()),
    ({"v": {"$gt": math.inf}}, set()),
    ({"v": {"$lt": math.inf}}, {0, 1, 2, 3, 4, 5, 7}),  # 10**400 < inf, as in Python
    ({"v": {"$ne": float(TS)}}, {0, 1, 3, 4, 5, 6, 7}),
]


def matching(s: EmbeddedVectorStore, spec: dict[str, Any]) -> set[int]:
    res = s.query(VectorStoreQuery(query_embedding=np.ones(4, np.float32), similarity_top_k=100, filters=spec))
    return {int(i.removeprefix("n")) for i in res.ids}


def test_store_filters_exact_through_cache_and_old_cache_is_rebuilt(store: EmbeddedVectorStore) -> None:
    ids = [f"n{i}" for i in range(len(METAS))]
    store.add_arrays(ids, np.random.default_rng(0).normal(size=(len(ids), 4)), metadatas=METAS)
    for spec, want in QUERIES:
        assert matching(store, spec) == want, spec
    store.checkpoint()
    path = store.path
    store.close()
    cache = path / "cache" / "columns.kvg"
    arrays, meta = read_arrays(cache)
    assert meta["columns"]["format"] == 2
    with EmbeddedVectorStore.open(path) as again:  # columns from the cache file
        for spec, want in QUERIES:
            assert matching(again, spec) == want, spec
    # A cache in the old layout (ints kept as float64) must not be trusted: it is rebuilt.
    old_meta = {**meta, "columns": {k: v for k, v in meta["columns"].items() if k != "format"}}
    old_arrays = dict(arrays)
    for name in list(old_arrays):
        if name.endswith(".int"):  # what the old layout had: the ints rounded into the float column
            old_arrays[name.removesuffix(".int") + ".num"] = old_arrays.pop(name).astype(np.float64)
    write_arrays(cache, old_arrays, old_meta)
    with EmbeddedVectorStore.open(path) as rebuilt:
        for spec, want in QUERIES:
            assert matching(rebuilt, spec) == want, spec
