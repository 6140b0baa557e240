"""Malformed filters raise InvalidFilterError naming what is wrong; type mismatches are no match."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph import FilterOperator, InvalidFilterError, InvalidInputError, MetadataFilter, MetadataFilters
from kvgraph.filters import parse_filter
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery
from kvgraph.store.columns import MetadataColumns

# (filter, words the message must contain: the offending key and/or operator)
MALFORMED: list[tuple[Any, list[str]]] = [
    ({"page": {"$foo": 3}}, ["$foo"]),
    ({"page": {"$gt": 3, "$foo": 3}}, ["$foo"]),
    ({"$xor": [{"a": 1}, {"b": 2}]}, ["$xor"]),
    ({"$xor": {"a": 1}}, ["$xor"]),
    ({"page": {"$in": 3}}, ["page", "$in"]),
    ({"page": {"$in": "abc"}}, ["page", "$in"]),  # a string is not a list of strings
    ({"page": {"$in": {"a": 1}}}, ["page", "$in"]),
    ({"page": {"$in": [[1, 2]]}}, ["page", "$in"]),  # elements must be scalars
    ({"page": {"$nin": 3}}, ["page", "$nin"]),
    ({"page": {"$gt": [1, 2]}}, ["page", "$gt"]),
    ({"page": {"$gte": {"x": 1}}}, ["page", "$gte"]),
    ({"page": {"$lt": True}}, ["page", "$lt"]),
    ({"page": {"$lte": None}}, ["page", "$lte"]),
    ({"page": {"$exists": 1}}, ["page", "$exists"]),
    ({"page": {"$exists": "yes"}}, ["page", "$exists"]),
    ({"title": {"$text_match": 5}}, ["title", "$text_match"]),
    ({"title": {"$text_match": None}}, ["title", "$text_match"]),
    ({"tags": {"$contains": [1]}}, ["tags", "$contains"]),
    ({"page": {"$eq": {"x": 1}}}, ["page", "$eq"]),
    ({"page": {"$ne": [[1]]}}, ["page", "$ne"]),
    ({"page": {}}, ["page"]),  # empty operator object
    ({"$and": []}, ["$and"]),
    ({"$and": {"a": 1}}, ["$and"]),
    ({"$and": "a"}, ["$and"]),
    ({"$or": []}, ["$or"]),
    ({"$or": 3}, ["$or"]),
    # errors deep inside a tree are found too
    ({"$or": [{"a": 1}, {"$and": [{"b": {"$not": {"$gt": [1]}}}]}]}, ["b", "$gt"]),
    ({"$not": {"c": {"$foo": 1}}}, ["$foo"]),
    # typed form
    (MetadataFilter("page", [1, 2], FilterOperator.GT), ["page", "$gt"]),
    (MetadataFilter("page", 3, "$foo"), ["$foo"]),
    (MetadataFilter("page", 3, "=~"), ["=~"]),
    (MetadataFilters([MetadataFilter("page", 3)], condition="xor"), ["xor"]),
    (MetadataFilters([MetadataFilter("a", 1), MetadataFilter("tags", 1, "in")]), ["tags", "$in"]),
]


@pytest.mark.parametrize(("spec", "words"), MALFORMED)
def test_malformed_filter_names_key_and_operator(spec: Any, words: list[str]) -> None:
    with pytest.raises(InvalidFilterError) as exc:
        parse_filter(spec)
    message = str(exc.value)
    for w in words:
        assert w in message, f"{w!r} not named in: {message}"


@pytest.mark.parametrize("spec", [42, "page", 3.5, True, object()])
def test_non_dict_filter_is_rejected(spec: Any) -> None:
    with pytest.raises(InvalidFilterError) as exc:
        parse_filter(spec)
    assert type(spec).__name__ in str(exc.value)


@pytest.mark.parametrize("spec", [b"x", [1, 2], [{"a": 1}, "b"]])
def test_sequences_of_non_filters_are_rejected(spec: Any) -> None:
    with pytest.raises(InvalidFilterError):
        parse_filter(spec)


def test_invalid_filter_error_is_an_input_error() -> None:
    # Callers catching the broad class (or ValueError) also catch filter errors.
    with pytest.raises(InvalidInputError):
        parse_filter({"a": {"$foo": 1}})
    with pytest.raises(ValueError):
        parse_filter({"a": {"$foo": 1}})


@pytest.mark.parametrize(
    "spec",
    [
        {"page": {"$gt": 0, "$lt": 100}},
        {"page": {"$gt": "a"}},  # strings compare with strings: well-formed
        {"page": {"$in": []}},
        {"page": {"$in": (1, "a", None, True)}},
        {"page": {"$exists": False}},
        {"tags": {"$contains": None}},
        {"page": [1, "a", None]},
        {"page": {"$not": 3}},
        MetadataFilters([]),
        MetadataFilters([MetadataFilter("page", 3, ">")], condition="or"),
        None,
        {},
    ],
)
def test_well_formed_filters_parse(spec: Any) -> None:
    parse_filter(spec)  # no exception


# ---- through the store ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedVectorStore]:
    s = EmbeddedVectorStore.open(tmp_path / "store", dim=4)
    rng = np.random.default_rng(7)
    metas = [
        {"title": "alpha", "page": 1},
        {"title": "beta", "page": 2.5},
        {"title": "gamma", "page": "3"},
        {"title": "delta", "tags": ["x", 5]},
        {"page": True},
    ]
    s.add_arrays([f"n{i}" for i in range(len(metas))], rng.normal(size=(len(metas), 4)), metadatas=metas)
    yield s
    s.close()


Q = [0.3, -0.2, 0.5, 0.1]


def ids_for(store: EmbeddedVectorStore, spec: Any) -> list[str]:
    q = VectorStoreQuery(query_embedding=Q, similarity_top_k=10, filters=spec, exact=True)
    return store.query(q).ids


@pytest.mark.parametrize("spec", [bad for bad, _ in MALFORMED])
def test_bad_filter_in_query_leaves_store_intact(store: EmbeddedVectorStore, spec: Any) -> None:
    before_count = store.count()
    before = store.query(VectorStoreQuery(query_embedding=Q, similarity_top_k=10, exact=True))
    before_filtered = ids_for(store, {"page": {"$gte": 1}})
    with pytest.raises(InvalidFilterError):
        store.query(VectorStoreQuery(query_embedding=Q, similarity_top_k=10, filters=spec))
    with pytest.raises(InvalidFilterError):
        store.query_batch(np.array([Q]), similarity_top_k=3, filters=spec)
    assert store.count() == before_count
    after = store.query(VectorStoreQuery(query_embedding=Q, similarity_top_k=10, exact=True))
    assert after.ids == before.ids
    assert np.allclose(after.similarities, before.similarities)
    assert ids_for(store, {"page": {"$gte": 1}}) == before_filtered
    assert set(before_filtered) == {"n0", "n1"}  # numbers only: "3" and True are other types


def test_bad_filter_in_sparse_query_raises(store: EmbeddedVectorStore) -> None:
    with pytest.raises(InvalidFilterError, match=r"\$foo"):
        store.query(
            VectorStoreQuery(mode="sparse", query_str="alpha", similarity_top_k=3, filters={"title": {"$foo": 1}})
        )
    assert store.count() == 5


@pytest.mark.parametrize(
    "spec",
    [
        {"title": {"$gt": 5}},  # string field compared with a number
        {"title": {"$lte": 1e9}},
        {"title": 5},
        {"title": {"$in": [1, 2, True, None]}},
        {"page": {"$gt": "0"}, "title": "alpha"},  # page 1 is a number; "0" is a string
        {"page": {"$text_match": "1"}},  # text_match sees strings only
        {"tags": {"$gt": 1}},  # comparisons never look inside lists
        {"tags": "x"},
        {"title": {"$contains": "a"}},  # $contains is list membership, not substring
        {"page": 1.0, "title": "beta"},
        {"nope": {"$gte": 0}},
    ],
)
def test_type_mismatch_is_no_match_not_error(store: EmbeddedVectorStore, spec: Any) -> None:
    assert ids_for(store, spec) == []
    cols = MetadataColumns()
    cols.append([{"title": "alpha", "page": 1}, {"tags": ["x", 5]}])
    assert not cols.mask(parse_filter(spec)).any()


def test_negated_mismatch_matches_everything(store: EmbeddedVectorStore) -> None:
    # $ne / $nin / $not are negations, so a type mismatch under them matches every node.
    everyone = {f"n{i}" for i in range(5)}
    assert set(ids_for(store, {"title": {"$ne": 5}})) == everyone
    assert set(ids_for(store, {"title": {"$nin": [1, 2]}})) == everyone
    assert set(ids_for(store, {"$not": {"title": {"$gt": 5}}})) == everyone
    assert set(ids_for(store, {"title": {"$not": {"$gt": 5}}})) == everyone
    # and the sensible string comparison still works
    assert set(ids_for(store, {"title": {"$gt": "beta"}})) == {"n2", "n3"}  # "gamma", "delta"
