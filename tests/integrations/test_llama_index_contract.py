"""The vector store contract LlamaIndex tests its own stores for, checked on KvgraphVectorStore.

llama-index-core's tests of SimpleVectorStore (tests/vector_stores/test_simple.py in the
llama_index repository) use three nodes with hand-made 2-d vectors and check top-k order,
every MetadataFilters operator and condition, node_ids, delete, delete_nodes and clear; the
same fixture and expectations are used here. Added: the rest of BasePydanticVectorStore
(get_nodes, async variants) and queries with filters but no embedding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from kvgraph.errors import InvalidInputError
from kvgraph.integrations.llama_index import KvgraphVectorStore

A = "AF3BE6C4-5F43-4D74-B075-6B0E07900DE8"  # weight 1, rank a, source test-0
B = "7D9CD555-846C-445C-A9DD-F8924A01411D"  # weight 2, rank c, source test-1
C = "452D24AB-F185-414C-A352-590B4B9EE51B"  # weight 3, rank c, source test-2


def contract_nodes() -> list[TextNode]:
    rows = [
        (
            A,
            [1.0, 0.0],
            "test-0",
            {"weight": 1.0, "rank": "a", "quality": ["medium", "high"], "identifier": "6FTR78Yun"},
        ),
        (B, [0.0, 1.0], "test-1", {"weight": 2.0, "rank": "c", "quality": ["medium"], "identifier": "6FTR78Ygl"}),
        (
            C,
            [1.0, 1.0],
            "test-2",
            {"weight": 3.0, "rank": "c", "quality": ["low", "medium", "high"], "identifier": "6FTR78Ztl"},
        ),
    ]
    return [
        TextNode(
            text="lorem ipsum",
            id_=node_id,
            embedding=vector,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=source)},
            metadata=metadata,
        )
        for node_id, vector, source, metadata in rows
    ]


@pytest.fixture
def vs(tmp_path: Path) -> Iterator[KvgraphVectorStore]:
    with KvgraphVectorStore(tmp_path / "store") as store:
        store.add(contract_nodes())
        yield store


def query_ids(
    vs: KvgraphVectorStore, filters: MetadataFilters | None = None, k: int = 3, **kwargs: object
) -> list[str]:
    result = vs.query(VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=k, filters=filters, **kwargs))  # type: ignore[arg-type]
    assert result.ids is not None
    return result.ids


def one(key: str, value: object, op: FilterOperator = FilterOperator.EQ) -> MetadataFilters:
    return MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])  # type: ignore[arg-type]


def test_it_is_a_llama_index_vector_store(vs: KvgraphVectorStore) -> None:
    assert isinstance(vs, BasePydanticVectorStore)
    assert vs.stores_text and vs.is_embedding_query


def test_query_without_filters_returns_all_rows_sorted_by_similarity(vs: KvgraphVectorStore) -> None:
    ids = query_ids(vs)
    assert sorted(ids) == sorted([A, B, C])
    assert ids[0] == C


def test_query_with_filters_returns_multiple_matches(vs: KvgraphVectorStore) -> None:
    assert query_ids(vs, one("rank", "c")) == [C, B]


def test_query_with_filter_applies_top_k(vs: KvgraphVectorStore) -> None:
    assert query_ids(vs, one("rank", "c"), k=1) == [C]


def test_query_with_filter_applies_node_id_filter(vs: KvgraphVectorStore) -> None:
    assert query_ids(vs, one("rank", "c"), node_ids=[C]) == [C]


def test_query_with_exact_filters_returns_single_match(vs: KvgraphVectorStore) -> None:
    both = MetadataFilters(filters=[MetadataFilter(key="rank", value="c"), MetadataFilter(key="weight", value=2.0)])
    assert query_ids(vs, both) == [B]


def test_query_with_contradictive_filter_returns_no_matches(vs: KvgraphVectorStore) -> None:
    both = MetadataFilters(filters=[MetadataFilter(key="weight", value=2), MetadataFilter(key="weight", value=3)])
    assert query_ids(vs, both) == []


def test_query_with_filter_on_unknown_field_returns_no_matches(vs: KvgraphVectorStore) -> None:
    assert query_ids(vs, one("unknown_field", "c")) == []


def test_delete_removes_document_from_query_results(vs: KvgraphVectorStore) -> None:
    vs.delete("test-1")
    assert query_ids(vs, k=2) == [C, A]


def test_query_with_filter_conditions(vs: KvgraphVectorStore) -> None:
    pair = [MetadataFilter(key="rank", value="c"), MetadataFilter(key="weight", value=1.0)]
    assert len(query_ids(vs, MetadataFilters(filters=pair, condition=FilterCondition.OR))) == 3
    assert query_ids(vs, MetadataFilters(filters=pair, condition=FilterCondition.AND)) == []
    not_a = MetadataFilters(filters=[MetadataFilter(key="rank", value="a")], condition=FilterCondition.NOT)
    assert sorted(query_ids(vs, not_a)) == sorted([B, C])


# operator, key, value, how many of the three nodes match (llama-index-core's expectations)
OPERATORS = [
    (FilterOperator.EQ, "weight", 1.0, 1),
    (FilterOperator.NE, "weight", 1.0, 2),
    (FilterOperator.GT, "weight", 1.5, 2),
    (FilterOperator.GTE, "weight", 1.0, 3),
    (FilterOperator.LT, "weight", 1.1, 1),
    (FilterOperator.LTE, "weight", 1.0, 1),
    (FilterOperator.IN, "rank", ["a", "c"], 3),
    (FilterOperator.NIN, "rank", ["c"], 1),
    (FilterOperator.CONTAINS, "quality", "high", 2),
    (FilterOperator.TEXT_MATCH, "identifier", "6FTR78Y", 2),
    (FilterOperator.ANY, "quality", ["high", "low"], 2),
    (FilterOperator.ALL, "quality", ["medium", "high"], 2),
    (FilterOperator.IS_EMPTY, "not_existed_key", None, 3),
]


@pytest.mark.parametrize(("op", "key", "value", "matches"), OPERATORS, ids=[o[0].name for o in OPERATORS])
def test_query_with_each_filter_operator(
    vs: KvgraphVectorStore, op: FilterOperator, key: str, value: object, matches: int
) -> None:
    assert len(query_ids(vs, one(key, value, op))) == matches
    # the same filter selects the same nodes in get_nodes and in a filter-only query
    assert len(vs.get_nodes(filters=one(key, value, op))) == matches
    result = vs.query(VectorStoreQuery(filters=one(key, value, op), similarity_top_k=3))
    assert sorted(result.ids or []) == sorted(query_ids(vs, one(key, value, op)))


def test_clear(vs: KvgraphVectorStore) -> None:
    vs.clear()
    assert query_ids(vs) == []
    assert vs.get_nodes() == []


def test_delete_nodes(vs: KvgraphVectorStore) -> None:
    vs.delete_nodes([A, B])
    assert query_ids(vs) == [C]


def test_delete_nodes_with_filters(vs: KvgraphVectorStore) -> None:
    vs.delete_nodes(filters=one("rank", "c"))
    assert query_ids(vs) == [A]
    vs.delete_nodes([A], filters=one("rank", "c"))  # both must hold: A is rank a, kept
    assert query_ids(vs) == [A]


def test_get_nodes(vs: KvgraphVectorStore) -> None:
    nodes = vs.get_nodes([C, A])
    assert [n.node_id for n in nodes] == [C, A]
    assert nodes[0].embedding == pytest.approx([1.0, 1.0], abs=1e-6)  # the vector as it was added
    assert nodes[0].metadata["quality"] == ["low", "medium", "high"]
    assert nodes[0].ref_doc_id == "test-2"
    assert [n.node_id for n in vs.get_nodes(filters=one("rank", "c"))] == sorted([B, C])


# ---------------------------------------------------------------- filter-only queries


def test_filter_only_query_returns_the_matching_nodes(vs: KvgraphVectorStore) -> None:
    result = vs.query(VectorStoreQuery(filters=one("rank", "c"), similarity_top_k=10))
    assert result.ids == [B, C]  # insertion order: there is no similarity to rank by
    assert result.similarities is None
    assert [n.node_id for n in result.nodes or []] == [B, C]
    assert [n.metadata["weight"] for n in result.nodes or []] == [2.0, 3.0]
    # top-k still applies, and so do node_ids and doc_ids, with or without filters
    assert vs.query(VectorStoreQuery(filters=one("rank", "c"), similarity_top_k=1)).ids == [B]
    assert vs.query(VectorStoreQuery(filters=one("rank", "c"), node_ids=[C, A], similarity_top_k=5)).ids == [C]
    assert vs.query(VectorStoreQuery(doc_ids=["test-0", "test-2"], similarity_top_k=5)).ids == [A, C]
    # an empty MetadataFilters is a filter that matches everything
    assert vs.query(VectorStoreQuery(filters=MetadataFilters(filters=[]), similarity_top_k=5)).ids == [A, B, C]
    mmr = VectorStoreQuery(filters=one("rank", "a"), similarity_top_k=5, mode=VectorStoreQueryMode.MMR)
    assert vs.query(mmr).ids == [A]


def test_query_with_nothing_to_search_or_filter_by_is_an_error(vs: KvgraphVectorStore) -> None:
    with pytest.raises(InvalidInputError, match="no query_embedding"):
        vs.query(VectorStoreQuery(similarity_top_k=3))
    with pytest.raises(InvalidInputError, match="similarity_top_k"):
        vs.query(VectorStoreQuery(filters=one("rank", "c"), similarity_top_k=0))


# ---------------------------------------------------------------- async variants


def test_async_variants_do_what_the_sync_ones_do(tmp_path: Path) -> None:
    async def scenario(store: KvgraphVectorStore) -> None:
        assert await store.async_add(contract_nodes()) == [A, B, C]
        result = await store.aquery(VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=1))
        assert result.ids == [C]
        assert [n.node_id for n in await store.aget_nodes(filters=one("rank", "c"))] == sorted([B, C])
        await store.adelete("test-0")
        await store.adelete_nodes([B])
        assert [n.node_id for n in await store.aget_nodes()] == [C]
        await store.aclear()
        assert await store.aget_nodes() == []

    with KvgraphVectorStore(tmp_path / "async") as store:
        asyncio.run(scenario(store))
