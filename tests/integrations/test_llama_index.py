"""kvgraph's store and embedder used from the real llama-index-core, with a real embedding model.

No network: the LLM is MockLLM (it answers with the prompt it was given, which shows what the
query engine put in the context), the embedding model is passed explicitly everywhere, and
OPENAI_API_KEY is unset, so any fall-back to LlamaIndex's OpenAI defaults would fail loudly.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Settings, StorageContext, VectorStoreIndex
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from kvgraph.embed import Embedder
from kvgraph.embed.hashing import HashingEmbedder
from kvgraph.errors import InvalidFilterError, InvalidInputError
from kvgraph.integrations.llama_index import KvgraphEmbedding, KvgraphVectorStore, to_kvgraph_filters
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document as KvgraphDocument
from kvgraph.store import EmbeddedVectorStore

# id, text, ref doc, metadata
PASSAGES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "eiffel",
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, completed in 1889.",
        "doc-travel",
        {"topic": "travel", "year": 1889, "tags": ["landmark", "france"], "author": "Ann"},
    ),
    (
        "photosynthesis",
        "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose and oxygen.",
        "doc-science",
        {"topic": "science", "year": 1960, "tags": ["biology", "plants"], "author": "Bo"},
    ),
    (
        "jupiter",
        "Jupiter is the largest planet in the solar system, a gas giant with a huge red storm.",
        "doc-science",
        {"topic": "science", "year": 1979, "tags": ["astronomy"], "author": ""},
    ),
    (
        "sourdough",
        "A sourdough loaf needs a lively starter, flour, water and salt, and a long, slow proof.",
        "doc-food",
        {"topic": "food", "year": 2015, "tags": ["baking", "bread"], "author": "Cy"},
    ),
    (
        "python",
        "The Python interpreter raises a KeyError when a dictionary lookup uses a key that is missing.",
        "doc-tech",
        {"topic": "tech", "year": 2020, "tags": ["code", "python"]},
    ),
    (
        "exercise",
        "Regular aerobic exercise such as running strengthens the heart and lowers blood pressure.",
        "doc-health",
        {"topic": "health", "year": 2001, "tags": [], "author": None},
    ),
]
META = {pid: md for pid, _, _, md in PASSAGES}
TEXT = {pid: text for pid, text, _, _ in PASSAGES}

# paraphrased questions -> the passage that answers them
QUESTIONS = {
    "Which famous iron landmark stands in the French capital?": "eiffel",
    "How do green leaves make sugar out of light?": "photosynthesis",
    "What is the biggest world orbiting the sun?": "jupiter",
    "What do I need to bake naturally leavened bread?": "sourdough",
    "Why does my program crash when I read a dict entry that isn't there?": "python",
    "Is jogging good for cardiovascular health?": "exercise",
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def embed_model(embedder: Embedder) -> KvgraphEmbedding:
    return KvgraphEmbedding(embedder)


@pytest.fixture(autouse=True)
def offline_llama_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenAI: no key, and LlamaIndex's global LLM is the mock (its default would be OpenAI)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(Settings, "_llm", MockLLM())


def make_nodes() -> list[TextNode]:
    nodes = []
    for i, (pid, text, doc, md) in enumerate(PASSAGES):
        rels: dict[NodeRelationship, Any] = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)}
        if i > 0:
            rels[NodeRelationship.PREVIOUS] = RelatedNodeInfo(node_id=PASSAGES[i - 1][0])
        if i + 1 < len(PASSAGES):
            rels[NodeRelationship.NEXT] = RelatedNodeInfo(node_id=PASSAGES[i + 1][0])
        nodes.append(TextNode(id_=pid, text=text, metadata=dict(md), relationships=rels))
    return nodes


@pytest.fixture(scope="module")
def embedded_nodes(embed_model: KvgraphEmbedding) -> list[TextNode]:
    """The passages with their embeddings computed once for the module (each test copies them)."""
    nodes = make_nodes()
    vectors = embed_model.get_text_embedding_batch([n.get_content() for n in nodes])
    for n, v in zip(nodes, vectors):
        n.embedding = v
    return nodes


@pytest.fixture
def nodes(embedded_nodes: list[TextNode]) -> list[TextNode]:
    return [n.model_copy(deep=True) for n in embedded_nodes]


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[KvgraphVectorStore]:
    vs = KvgraphVectorStore(tmp_path / "kb", dim=384)
    yield vs
    vs.close()


@pytest.fixture
def index(adapter: KvgraphVectorStore, nodes: list[TextNode], embed_model: KvgraphEmbedding) -> VectorStoreIndex:
    storage = StorageContext.from_defaults(vector_store=adapter)
    return VectorStoreIndex(nodes, storage_context=storage, embed_model=embed_model)


def retrieved_ids(index: VectorStoreIndex, question: str, **kwargs: Any) -> list[str]:
    return [r.node.node_id for r in index.as_retriever(**kwargs).retrieve(question)]


def expected(pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {pid for pid, md in META.items() if pred(md)}


# ---------------------------------------------------------------- building and retrieving


def test_index_writes_into_kvgraph_store(index: VectorStoreIndex, adapter: KvgraphVectorStore) -> None:
    store = adapter.client
    assert isinstance(store, EmbeddedVectorStore)
    assert store.count() == len(PASSAGES)
    stored = store.get(["jupiter"])[0]
    assert stored is not None
    assert stored.text == TEXT["jupiter"]
    assert stored.metadata == META["jupiter"]
    assert stored.ref_doc_id == "doc-science"
    assert stored.relationships == {"source": "doc-science", "previous": "photosynthesis", "next": "sourdough"}
    # the text-storing store keeps LlamaIndex's docstore empty
    assert not index.docstore.docs


def test_retriever_finds_paraphrased_passages(index: VectorStoreIndex) -> None:
    for question, pid in QUESTIONS.items():
        assert retrieved_ids(index, question, similarity_top_k=1) == [pid], question


def test_from_vector_store_retrieves_with_scores(
    adapter: KvgraphVectorStore, index: VectorStoreIndex, embed_model: KvgraphEmbedding
) -> None:
    reopened = VectorStoreIndex.from_vector_store(adapter, embed_model=embed_model)
    results = reopened.as_retriever(similarity_top_k=3).retrieve("What is the biggest world orbiting the sun?")
    assert results[0].node.node_id == "jupiter"
    scores = [r.score for r in results]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    top = results[0].node
    assert isinstance(top, TextNode)
    assert top.text == TEXT["jupiter"]
    assert top.metadata == META["jupiter"]


def test_query_engine_answers_from_kvgraph_nodes(
    adapter: KvgraphVectorStore, index: VectorStoreIndex, embed_model: KvgraphEmbedding
) -> None:
    engine = VectorStoreIndex.from_vector_store(adapter, embed_model=embed_model).as_query_engine(
        llm=MockLLM(), response_mode="compact", similarity_top_k=2
    )
    response = engine.query("What do I need to bake naturally leavened bread?")
    assert isinstance(response, Response)
    assert response.source_nodes[0].node.node_id == "sourdough"
    assert len(response.source_nodes) == 2
    # MockLLM echoes its prompt: the texts kvgraph returned reached the LLM's context
    assert response.response is not None
    for source in response.source_nodes:
        assert TEXT[source.node.node_id] in response.response


def test_async_retrieval(index: VectorStoreIndex) -> None:
    results = asyncio.run(index.as_retriever(similarity_top_k=1).aretrieve("Is jogging good for the heart?"))
    assert [r.node.node_id for r in results] == ["exercise"]


# ---------------------------------------------------------------- metadata filters


FILTER_CASES: list[tuple[str, MetadataFilters, Callable[[dict[str, Any]], bool]]] = [
    ("eq", MetadataFilters(filters=[MetadataFilter(key="topic", value="science")]), lambda m: m["topic"] == "science"),
    (
        "gte",
        MetadataFilters(filters=[MetadataFilter(key="year", value=2001, operator=FilterOperator.GTE)]),
        lambda m: m["year"] >= 2001,
    ),
    (
        "in",
        MetadataFilters(filters=[MetadataFilter(key="topic", value=["food", "health"], operator=FilterOperator.IN)]),
        lambda m: m["topic"] in ("food", "health"),
    ),
    (
        "nested or",  # travel, or (after 1970 and tagged code)
        MetadataFilters(
            filters=[
                MetadataFilter(key="topic", value="travel"),
                MetadataFilters(
                    filters=[
                        MetadataFilter(key="year", value=1970, operator=FilterOperator.GT),
                        MetadataFilter(key="tags", value="code", operator=FilterOperator.CONTAINS),
                    ],
                    condition=FilterCondition.AND,
                ),
            ],
            condition=FilterCondition.OR,
        ),
        lambda m: m["topic"] == "travel" or (m["year"] > 1970 and "code" in m["tags"]),
    ),
    (
        "ne/lt and",
        MetadataFilters(
            filters=[
                MetadataFilter(key="topic", value="science", operator=FilterOperator.NE),
                MetadataFilter(key="year", value=2015, operator=FilterOperator.LTE),
            ]
        ),
        lambda m: m["topic"] != "science" and m["year"] <= 2015,
    ),
    (
        "not",
        MetadataFilters(
            filters=[
                MetadataFilter(key="topic", value="science"),
                MetadataFilter(key="year", value=1900, operator=FilterOperator.LT),
            ],
            condition=FilterCondition.NOT,
        ),
        lambda m: not (m["topic"] == "science" or m["year"] < 1900),
    ),
    (
        "nin",
        MetadataFilters(filters=[MetadataFilter(key="author", value=["Ann", "Bo"], operator=FilterOperator.NIN)]),
        lambda m: m.get("author") not in ("Ann", "Bo"),  # missing key: not in the list
    ),
    (
        "text_match",
        MetadataFilters(filters=[MetadataFilter(key="topic", value="ien", operator=FilterOperator.TEXT_MATCH)]),
        lambda m: "ien" in m["topic"],
    ),
    (
        "is_empty",
        MetadataFilters(filters=[MetadataFilter(key="author", value=None, operator=FilterOperator.IS_EMPTY)]),
        lambda m: m.get("author") in (None, "", []),
    ),
    (
        "is_empty list",
        MetadataFilters(filters=[MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY)]),
        lambda m: m.get("tags") in (None, "", []),
    ),
    (
        "any/all",
        MetadataFilters(
            filters=[
                MetadataFilter(key="tags", value=["bread", "astronomy"], operator=FilterOperator.ANY),
                MetadataFilter(key="tags", value=["landmark", "france"], operator=FilterOperator.ALL),
            ],
            condition=FilterCondition.OR,
        ),
        lambda m: bool({"bread", "astronomy"} & set(m["tags"])) or {"landmark", "france"} <= set(m["tags"]),
    ),
    ("empty", MetadataFilters(filters=[]), lambda m: True),
]


@pytest.mark.parametrize(("name", "filters", "pred"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_metadata_filters_restrict_retrieval(
    index: VectorStoreIndex, name: str, filters: MetadataFilters, pred: Callable[[dict[str, Any]], bool]
) -> None:
    want = expected(pred)
    assert 0 < len(want) < len(PASSAGES) or name == "empty"
    got = retrieved_ids(index, "Which famous iron landmark stands in Paris?", similarity_top_k=10, filters=filters)
    assert set(got) == want
    assert len(got) == len(want)


def test_filtered_retrieval_ranks_within_the_allowed_nodes(index: VectorStoreIndex) -> None:
    science = MetadataFilters(filters=[MetadataFilter(key="topic", value="science")])
    # the best match overall (sourdough) is excluded; the best science passage wins
    got = retrieved_ids(index, "What do I need to bake bread?", similarity_top_k=1, filters=science)
    assert got in (["photosynthesis"], ["jupiter"])
    assert retrieved_ids(index, "a giant planet", similarity_top_k=1, filters=science) == ["jupiter"]


def test_filter_translation() -> None:
    f = MetadataFilters(
        filters=[
            MetadataFilter(key="a", value=1),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="b", value=[1, 2], operator=FilterOperator.IN),
                    MetadataFilter(key="c", value="x", operator=FilterOperator.NE),
                ],
                condition=FilterCondition.OR,
            ),
        ],
        condition=FilterCondition.AND,
    )
    assert to_kvgraph_filters(f) == {
        "$and": [{"a": {"$eq": 1}}, {"$or": [{"b": {"$in": [1, 2]}}, {"c": {"$ne": "x"}}]}]
    }
    assert to_kvgraph_filters(None) is None
    assert to_kvgraph_filters(MetadataFilters(filters=[])) is None


def test_unsupported_filter_operator_is_a_clear_error(index: VectorStoreIndex) -> None:
    f = MetadataFilters(
        filters=[MetadataFilter(key="topic", value="SCIENCE", operator=FilterOperator.TEXT_MATCH_INSENSITIVE)]
    )
    with pytest.raises(InvalidFilterError, match="text_match_insensitive"):
        retrieved_ids(index, "plants", filters=f)


# ---------------------------------------------------------------- deleting, reading back


def test_delete_ref_doc_removes_the_documents_nodes(index: VectorStoreIndex, adapter: KvgraphVectorStore) -> None:
    assert retrieved_ids(index, "How do green leaves make sugar out of light?", similarity_top_k=1) == [
        "photosynthesis"
    ]
    index.delete_ref_doc("doc-science")
    assert adapter.client.count() == len(PASSAGES) - 2
    assert adapter.get_nodes(["photosynthesis", "jupiter", "eiffel"])[0].node_id == "eiffel"
    assert len(adapter.get_nodes(["photosynthesis", "jupiter"])) == 0
    got = retrieved_ids(index, "How do green leaves make sugar out of light?", similarity_top_k=10)
    assert set(got) == set(META) - {"photosynthesis", "jupiter"}
    adapter.delete("no-such-doc")  # unknown documents are ignored
    assert adapter.client.count() == len(PASSAGES) - 2


def test_relationships_round_trip(index: VectorStoreIndex, adapter: KvgraphVectorStore) -> None:
    [node] = adapter.get_nodes(["jupiter"])
    assert node.ref_doc_id == "doc-science"
    assert node.relationships[NodeRelationship.SOURCE].node_id == "doc-science"  # type: ignore[union-attr]
    assert node.relationships[NodeRelationship.PREVIOUS].node_id == "photosynthesis"  # type: ignore[union-attr]
    assert node.relationships[NodeRelationship.NEXT].node_id == "sourdough"  # type: ignore[union-attr]
    assert NodeRelationship.PARENT not in node.relationships
    # a retrieved node carries them too
    [hit] = index.as_retriever(similarity_top_k=1).retrieve("Why does my program crash on a missing dict key?")
    assert hit.node.prev_node is not None and hit.node.prev_node.node_id == "sourdough"
    assert hit.node.next_node is not None and hit.node.next_node.node_id == "exercise"


def test_child_lists_and_llama_index_only_fields_round_trip(
    adapter: KvgraphVectorStore, embedded_nodes: list[TextNode]
) -> None:
    parent = TextNode(
        id_="parent",
        text="Parent chunk about towers.",
        metadata={"file_path": "/secret/path.txt", "topic": "travel"},
        excluded_llm_metadata_keys=["file_path"],
        excluded_embed_metadata_keys=["file_path", "topic"],
        start_char_idx=10,
        end_char_idx=36,
        relationships={
            NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-x"),
            NodeRelationship.CHILD: [RelatedNodeInfo(node_id="c1"), RelatedNodeInfo(node_id="c2")],
        },
        embedding=embedded_nodes[0].embedding,
    )
    adapter.add([parent])
    assert adapter.client.get(["parent"])[0].relationships == {  # type: ignore[union-attr]
        "source": "doc-x",
        "child": ["c1", "c2"],
    }
    [back] = adapter.get_nodes(["parent"])
    assert isinstance(back, TextNode)
    assert [c.node_id for c in back.child_nodes or []] == ["c1", "c2"]
    assert back.metadata == {"file_path": "/secret/path.txt", "topic": "travel"}
    assert back.excluded_llm_metadata_keys == ["file_path"]
    assert back.excluded_embed_metadata_keys == ["file_path", "topic"]
    assert (back.start_char_idx, back.end_char_idx) == (10, 36)
    assert back.embedding is not None
    assert back.embedding == pytest.approx(parent.embedding, abs=1e-5)
    # the LLM's view of a retrieved node honours the restored exclusions
    result = adapter.query(VectorStoreQuery(query_embedding=parent.embedding, similarity_top_k=1))
    assert result.nodes is not None
    llm_text = result.nodes[0].get_content(metadata_mode="llm")  # type: ignore[arg-type]
    assert "topic: travel" in llm_text
    assert "/secret/path.txt" not in llm_text


def test_get_nodes_and_delete_nodes_with_filters(index: VectorStoreIndex, adapter: KvgraphVectorStore) -> None:
    recent = MetadataFilters(filters=[MetadataFilter(key="year", value=2001, operator=FilterOperator.GTE)])
    got = adapter.get_nodes(filters=recent)
    assert [n.node_id for n in got] == sorted(expected(lambda m: m["year"] >= 2001))
    assert all(n.embedding is not None and len(n.embedding) == 384 for n in got)
    # node_ids and filters together: both must hold, order of node_ids kept
    got = adapter.get_nodes(node_ids=["sourdough", "eiffel", "python", "nope"], filters=recent)
    assert [n.node_id for n in got] == ["sourdough", "python"]
    assert [n.node_id for n in adapter.get_nodes(node_ids=["python", "nope", "eiffel"])] == ["python", "eiffel"]
    assert [n.node_id for n in adapter.get_nodes()] == sorted(META)

    adapter.delete_nodes(node_ids=["python", "eiffel"], filters=recent)
    assert {n.node_id for n in adapter.get_nodes()} == set(META) - {"python"}
    adapter.delete_nodes(filters=recent)
    assert {n.node_id for n in adapter.get_nodes()} == set(META) - expected(lambda m: m["year"] >= 2001)
    with pytest.raises(InvalidInputError, match="clear"):
        adapter.delete_nodes()
    adapter.clear()
    assert adapter.client.count() == 0
    assert adapter.get_nodes() == []
    assert retrieved_ids(index, "anything at all", similarity_top_k=3) == []


def test_listing_does_not_trust_a_stale_count(
    index: VectorStoreIndex, adapter: KvgraphVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only store can see nodes another process committed after count() was read:
    # the listing must keep widening until it has them all.
    monkeypatch.setattr(adapter.client, "count", lambda: 1)
    assert [n.node_id for n in adapter.get_nodes()] == sorted(META)


def test_data_persists_across_close_and_reopen(
    tmp_path: Path, nodes: list[TextNode], embed_model: KvgraphEmbedding
) -> None:
    path = tmp_path / "persisted"
    first = KvgraphVectorStore(path)
    index = VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=first), embed_model=embed_model
    )
    index.storage_context.persist(persist_dir=str(tmp_path / "li-storage"))  # the store's persist() is a no-op
    before = {q: index.as_retriever(similarity_top_k=3).retrieve(q) for q in QUESTIONS}
    first.close()
    with pytest.raises(Exception, match="closed"):
        first.client.count()

    with KvgraphVectorStore(path) as second:
        assert second.client.count() == len(PASSAGES)
        again = VectorStoreIndex.from_vector_store(second, embed_model=embed_model)
        for q, old in before.items():
            new = again.as_retriever(similarity_top_k=3).retrieve(q)
            assert [r.node.node_id for r in new] == [r.node.node_id for r in old]
            assert [r.score for r in new] == pytest.approx([r.score for r in old], abs=1e-5)
            assert [r.node.get_content() for r in new] == [r.node.get_content() for r in old]


def test_adapter_over_an_open_store_leaves_it_open(tmp_path: Path, nodes: list[TextNode]) -> None:
    store = EmbeddedVectorStore.open(tmp_path / "kb")
    try:
        with KvgraphVectorStore(store) as vs:
            assert vs.add(nodes[:2]) == ["eiffel", "photosynthesis"]
            assert vs.client is store
        assert store.count() == 2  # still open
        with pytest.raises(InvalidInputError, match="only apply"):
            KvgraphVectorStore(store, dim=384)
    finally:
        store.close()


# ---------------------------------------------------------------- query modes


def test_sparse_mode_uses_bm25_on_the_query_string(index: VectorStoreIndex) -> None:
    # a rare exact term: BM25 finds it without any embedding
    assert retrieved_ids(index, "KeyError", similarity_top_k=1, vector_store_query_mode="sparse") == ["python"]
    assert retrieved_ids(index, "sourdough starter", similarity_top_k=1, vector_store_query_mode="text_search") == [
        "sourdough"
    ]
    # no query term appears in any passage: BM25 returns nothing (dense search would return something)
    assert retrieved_ids(index, "jogging cardiovascular", similarity_top_k=3, vector_store_query_mode="sparse") == []


def test_sparse_mode_does_not_embed_the_query(adapter: KvgraphVectorStore, index: VectorStoreIndex) -> None:
    sparse_index = VectorStoreIndex.from_vector_store(adapter, embed_model=KvgraphEmbedding(_RefusingEmbedder()))
    hits = sparse_index.as_retriever(vector_store_query_mode=VectorStoreQueryMode.SPARSE).retrieve("Jupiter storm")
    assert hits[0].node.node_id == "jupiter"
    with pytest.raises(AssertionError, match="must not embed"):  # the dense mode does embed
        sparse_index.as_retriever().retrieve("Jupiter storm")


class _RefusingEmbedder:
    model_name = "refusing"
    dim = 384

    def embed(self, texts: Any) -> Any:
        raise AssertionError("sparse retrieval must not embed the query")


def test_hybrid_top_k_sets_the_number_of_fused_results(adapter: KvgraphVectorStore, index: VectorStoreIndex) -> None:
    [probe] = adapter.get_nodes(["python"])
    q = VectorStoreQuery(
        query_embedding=probe.embedding,
        query_str="KeyError dictionary",
        similarity_top_k=1,
        hybrid_top_k=3,
        mode=VectorStoreQueryMode.HYBRID,
        alpha=0.5,
    )
    result = adapter.query(q)
    assert result.ids is not None and len(result.ids) == 3
    assert result.ids[0] == "python"
    assert result.similarities == sorted(result.similarities or [], reverse=True)


def test_mmr_mode_trades_relevance_for_diversity(index: VectorStoreIndex) -> None:
    twin = TextNode(
        id_="eiffel-twin",
        text="Completed in 1889, the Eiffel Tower is a wrought-iron lattice tower in Paris on the Champ de Mars.",
        metadata={"topic": "travel", "year": 1889, "tags": []},
    )
    index.insert_nodes([twin])
    q = "Which famous iron landmark stands in the French capital?"
    dense = retrieved_ids(index, q, similarity_top_k=2)
    assert set(dense) == {"eiffel", "eiffel-twin"}
    relevance_only = retrieved_ids(
        index, q, similarity_top_k=2, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": 1.0}
    )
    assert relevance_only == dense
    diverse = retrieved_ids(
        index, q, similarity_top_k=2, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": 0.3}
    )
    assert diverse[0] in ("eiffel", "eiffel-twin")
    assert len(set(diverse) & {"eiffel", "eiffel-twin"}) == 1  # the near-duplicate gave way


def test_unsupported_mode_and_unknown_kwargs_are_errors(adapter: KvgraphVectorStore, index: VectorStoreIndex) -> None:
    q = VectorStoreQuery(query_embedding=[0.1] * 384, similarity_top_k=2, mode=VectorStoreQueryMode.SVM)
    with pytest.raises(InvalidInputError, match="svm"):
        adapter.query(q)
    q = VectorStoreQuery(query_embedding=[0.1] * 384, similarity_top_k=2)
    with pytest.raises(InvalidInputError, match="mmr_treshold"):
        adapter.query(q, mmr_treshold=0.3)
    assert len(adapter.query(q, exact=True, ef_search=64).ids or []) == 2


def test_doc_ids_restrict_the_search(adapter: KvgraphVectorStore, index: VectorStoreIndex) -> None:
    got = retrieved_ids(index, "bread", similarity_top_k=10, doc_ids=["doc-science", "doc-tech"])
    assert set(got) == {"photosynthesis", "jupiter", "python"}


# ---------------------------------------------------------------- input validation


def test_non_flat_metadata_is_rejected_before_writing(adapter: KvgraphVectorStore, nodes: list[TextNode]) -> None:
    bad = nodes[1].model_copy(deep=True)
    bad.metadata = {"nested": {"a": 1}}
    with pytest.raises(InvalidInputError, match=r"'nested'.*flatten"):
        adapter.add([nodes[0], bad])
    assert adapter.client.count() == 0  # all or nothing
    reserved = nodes[1].model_copy(deep=True)
    reserved.metadata = {"_start_char_idx": 3}
    with pytest.raises(InvalidInputError, match="reserved"):
        adapter.add([reserved])


def test_tuples_and_numpy_scalars_are_converted(adapter: KvgraphVectorStore, nodes: list[TextNode]) -> None:
    node = nodes[0]
    node.metadata = {"pair": (1, 2), "score": np.float32(0.5), "n": np.int64(7)}
    adapter.add([node])
    [back] = adapter.get_nodes([node.node_id])
    assert back.metadata == {"pair": [1, 2], "score": 0.5, "n": 7}
    assert type(back.metadata["n"]) is int


def test_node_without_embedding_is_a_clear_error(adapter: KvgraphVectorStore) -> None:
    with pytest.raises(InvalidInputError, match="no embedding"):
        adapter.add([TextNode(id_="x", text="no vector")])
    assert adapter.add([]) == []


# ---------------------------------------------------------------- the embedding wrapper


def test_embedding_wrapper_matches_the_kvgraph_embedder(embedder: Embedder, embed_model: KvgraphEmbedding) -> None:
    texts = [TEXT["eiffel"], TEXT["jupiter"], TEXT["python"]]
    direct = embedder.embed(texts)
    assert direct.shape == (3, 384)
    np.testing.assert_allclose(embed_model.get_text_embedding_batch(texts), direct, atol=1e-6)
    np.testing.assert_allclose(embed_model.get_query_embedding(texts[1]), direct[1], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(embed_model.aget_query_embedding(texts[2])), direct[2], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(embed_model.aget_text_embedding_batch(texts)), direct, atol=1e-6)
    assert embed_model.model_name == embedder.model_name
    with pytest.raises(InvalidInputError, match="Embedder"):
        KvgraphEmbedding(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------- one embedding model per store


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    """A knowledge base with the passages ingested (its own embedder: the default model)."""
    with KnowledgeBase.open(tmp_path_factory.mktemp("li-kb") / "kb") as kb:
        kb.add_documents([KvgraphDocument(id=pid, text=text, metadata=dict(md)) for pid, text, _, md in PASSAGES[:4]])
        yield kb


def test_knowledge_base_refuses_vectors_of_another_model(kb: KnowledgeBase, nodes: list[TextNode]) -> None:
    recorded = kb.store.get_meta("embedding_model")
    assert recorded == kb.embedder.model_name
    before = kb.store.count()
    with pytest.raises(InvalidInputError) as err:
        KvgraphVectorStore(kb, KvgraphEmbedding(HashingEmbedder(384)))
    assert recorded in str(err.value) and "hashing-384" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InvalidInputError, match="hashing-384"):
        KvgraphVectorStore(kb, embedding_model="hashing-384")
    # an adapter not told its model may read, but not write
    unnamed = KvgraphVectorStore(kb)
    with pytest.raises(InvalidInputError, match=f"embedding_model='{recorded}'"):
        unnamed.add(nodes[4:])
    assert kb.store.count() == before
    hit = unnamed.query(VectorStoreQuery(query_embedding=nodes[2].embedding, similarity_top_k=1))
    assert hit.nodes is not None and "Jupiter" in hit.nodes[0].get_content()


def test_knowledge_base_takes_its_own_models_vectors(kb: KnowledgeBase) -> None:
    embed_model = KvgraphEmbedding(kb.embedder)
    vector_store = KvgraphVectorStore(kb, embed_model)
    assert vector_store.embedding_model == kb.embedder.model_name
    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
    saturn = TextNode(id_="saturn", text="Saturn's rings are made of ice and rock.", metadata={"topic": "science"})
    index.insert_nodes([saturn])
    try:
        assert kb.search("What are the rings of Saturn made of?", k=1)[0].node.id == "saturn"
        kb.refresh()  # the knowledge base reopens its store; the adapter follows it
        assert [n.node_id for n in vector_store.get_nodes(["saturn"])] == ["saturn"]
    finally:
        vector_store.delete_nodes(["saturn"])


def test_a_bare_store_takes_the_first_named_model(tmp_path: Path, nodes: list[TextNode], embedder: Embedder) -> None:
    path = tmp_path / "bare"
    with KvgraphVectorStore(path) as unnamed:
        unnamed.add(nodes[:1])  # no model recorded, none stated: nothing to check against
        assert unnamed.client.get_meta("embedding_model") is None
    with KvgraphVectorStore(path, KvgraphEmbedding(embedder)) as named:
        named.add(nodes[1:2])
        assert named.client.get_meta("embedding_model") == embedder.model_name
    with pytest.raises(InvalidInputError, match="hashing-384"):
        KvgraphVectorStore(path, KvgraphEmbedding(HashingEmbedder(384)))
    with KvgraphVectorStore(path) as unnamed:
        with pytest.raises(InvalidInputError, match="not told"):
            unnamed.add(nodes[2:3])
        assert unnamed.client.count() == 2
    with KvgraphVectorStore(path, embedding_model=embedder.model_name) as by_name:
        by_name.add(nodes[2:3])
        assert by_name.client.count() == 3


# ---------------------------------------------------------------- imports


def test_kvgraph_never_imports_llama_index_and_missing_dependency_is_named() -> None:
    code = (
        "import sys\n"
        "import kvgraph, kvgraph.store, kvgraph.embed, kvgraph.integrations\n"
        "assert not any(m.split('.')[0] == 'llama_index' for m in sys.modules), 'kvgraph imported llama_index'\n"
        "sys.modules['llama_index'] = None\n"
        "from kvgraph.errors import MissingDependencyError\n"
        "try:\n"
        "    import kvgraph.integrations.llama_index\n"
        "except MissingDependencyError as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "llama-index-core is not installed" in out.stdout
