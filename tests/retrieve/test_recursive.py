"""RecursiveRetriever, the store retrievers and rerankers over a real store and the real embedder."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph import InvalidInputError, Node, NodeWithScore
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import MissingDependencyError
from kvgraph.ingest.references import embed_nodes
from kvgraph.retrieve import (
    BM25Retriever,
    CrossEncoderReranker,
    HybridRetriever,
    MMRReranker,
    RecursiveRetriever,
    RerankingRetriever,
    RetrievedNode,
    Retriever,
    VectorRetriever,
)
from kvgraph.store import EmbeddedVectorStore

TOPICS = {
    "gpu": "The largest model was pretrained for 1.7 million GPU hours on A100 accelerators.",
    "optimizer": "We trained with the AdamW optimizer and a cosine learning rate schedule with warmup.",
    "safety": "Safety context distillation prefixes a safety preprompt to adversarial prompts.",
    "tokens": "The pretraining corpus holds two trillion tokens from publicly available sources.",
    "ghost": "Ghost Attention keeps a system instruction in force over many dialogue turns.",
    "reward": "Two reward models were trained, one for helpfulness and one for safety.",
}


@pytest.fixture
def store(tmp_path: Path, embedder: OnnxEmbedder) -> Iterator[EmbeddedVectorStore]:
    with EmbeddedVectorStore.open(tmp_path / "store", dim=embedder.dim) as s:
        yield s


def node(node_id: str, text: str, ref: str | None = None, role: str = "chunk", doc: str = "doc") -> Node:
    rel: dict[str, str | list[str]] = {"source": doc}
    if ref is not None:
        rel["ref"] = ref
    return Node(id=node_id, text=text, metadata={"role": role}, ref_doc_id=doc, relationships=rel)


def add(store: EmbeddedVectorStore, embedder: OnnxEmbedder, nodes: Sequence[Node]) -> None:
    embed_nodes(nodes, embedder)
    store.add(nodes)


class Scripted:
    """A base retriever with fixed hits (nodes read from the store), recording the k it was asked for."""

    def __init__(self, store: EmbeddedVectorStore, scored: Sequence[tuple[str, float]]) -> None:
        found = store.get([i for i, _ in scored])
        assert all(n is not None for n in found)
        self.hits = [NodeWithScore(n, s) for n, (_, s) in zip(found, scored) if n is not None]
        self.asked: list[int] = []

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        self.asked.append(k)
        return self.hits[:k]


class CountingStore:
    """Forwards to a store and records each get() call's ids."""

    def __init__(self, store: EmbeddedVectorStore) -> None:
        self.store = store
        self.gets: list[list[str]] = []

    def get(self, ids: Sequence[str]) -> list[Node | None]:
        self.gets.append(list(ids))
        return self.store.get(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


# ---------------------------------------------------------------------- following references


def test_follows_references_to_depth_three_from_a_real_dense_hit(
    store: EmbeddedVectorStore, embedder: OnnxEmbedder
) -> None:
    # question -> child -> parent -> section: the question matches, the section comes back.
    add(
        store,
        embedder,
        [
            node("section", "Section 2: pretraining.\n" + " ".join(TOPICS.values())),
            node("parent", TOPICS["gpu"] + " " + TOPICS["tokens"], ref="section", role="parent"),
            node("child", TOPICS["gpu"], ref="parent", role="child"),
            node(
                "question", "How many GPU hours did pretraining the largest model take?", ref="child", role="question"
            ),
            *(node(f"plain-{key}", text) for key, text in TOPICS.items() if key != "gpu"),
        ],
    )
    base = VectorRetriever(store, embedder, filters={"role": "question"})
    out = RecursiveRetriever(base, store).retrieve("How many GPU hours did pretraining the largest model take?", 1)
    assert len(out) == 1
    top = out[0]
    assert isinstance(top, RetrievedNode) and isinstance(top, NodeWithScore)
    assert top.node.id == "section" and top.path == ["question", "child", "parent", "section"]
    assert top.hit is not None and top.hit.id == "question"
    assert top.score == pytest.approx(
        base.retrieve("How many GPU hours did pretraining the largest model take?", 1)[0].score
    )
    assert top.node.embedding is None  # like query results
    # max_depth bounds the walk; 0 returns the hit itself.
    assert RecursiveRetriever(base, store, max_depth=2).retrieve("GPU hours", 1)[0].path == [
        "question",
        "child",
        "parent",
    ]
    zero = RecursiveRetriever(base, store, max_depth=0).retrieve("GPU hours", 1)[0]
    assert zero.node.id == "question" and zero.path == ["question"]


def test_cycle_stops_at_the_last_new_node(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    add(store, embedder, [node("a", TOPICS["gpu"], ref="b"), node("b", TOPICS["tokens"], ref="a")])
    add(store, embedder, [node("self", TOPICS["ghost"], ref="self")])
    out = RecursiveRetriever(Scripted(store, [("a", 0.9), ("b", 0.8), ("self", 0.7)]), store).retrieve("q", 3)
    assert [(r.node.id, r.path) for r in out] == [("b", ["a", "b"]), ("a", ["b", "a"]), ("self", ["self"])]


def test_dangling_reference_stops_at_the_last_resolvable_node(
    store: EmbeddedVectorStore, embedder: OnnxEmbedder
) -> None:
    add(
        store,
        embedder,
        [
            node("x", TOPICS["gpu"], ref="missing"),
            node("y", TOPICS["tokens"], ref="z"),
            node("z", TOPICS["ghost"], ref="gone"),
        ],
    )
    out = RecursiveRetriever(Scripted(store, [("x", 0.9), ("y", 0.8)]), store).retrieve("q", 5)
    assert [(r.node.id, r.path, r.score) for r in out] == [("x", ["x"], 0.9), ("z", ["y", "z"], 0.8)]
    # A node deleted after its references were made is a dangling reference too.
    store.delete(["z"])
    out = RecursiveRetriever(Scripted(store, [("y", 0.8)]), store).retrieve("q", 5)
    assert [(r.node.id, r.path) for r in out] == [("y", ["y"])]


def test_hits_reaching_one_node_merge_with_the_best_score_and_its_path(
    store: EmbeddedVectorStore, embedder: OnnxEmbedder
) -> None:
    add(
        store,
        embedder,
        [
            node("p", TOPICS["gpu"] + " " + TOPICS["optimizer"], role="parent"),
            node("c1", TOPICS["gpu"], ref="p", role="child"),
            node("c2", TOPICS["optimizer"], ref="p", role="child"),
            node("q", "Which optimizer was used?", ref="c2", role="question"),
            node("plain", TOPICS["safety"]),
        ],
    )
    base = Scripted(store, [("c2", 0.7), ("q", 0.95), ("plain", 0.9), ("c1", 0.8), ("p", 0.5)])
    out = RecursiveRetriever(base, store, fetch_factor=5).retrieve("q", 3)
    assert [r.node.id for r in out] == ["p", "plain"]
    assert out[0].score == 0.95 and out[0].path == ["q", "c2", "p"] and out[0].hit is not None
    assert out[0].hit.id == "q"
    assert base.asked == [15]  # k * fetch_factor
    assert [r.node.id for r in RecursiveRetriever(base, store, fetch_factor=5).retrieve("q", 1)] == ["p"]


def test_refetches_when_hits_merge_into_fewer_than_k(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    nodes = [node("A", "parent A", role="parent"), node("B", "parent B", role="parent")]
    nodes += [node(f"a{i}", f"child {i} of A", ref="A", role="child") for i in range(5)]
    nodes.append(node("b0", "child of B", ref="B", role="child"))
    add(store, embedder, nodes)
    base = Scripted(store, [*((f"a{i}", 0.9 - i / 100) for i in range(5)), ("b0", 0.5)])
    out = RecursiveRetriever(base, store, fetch_factor=1).retrieve("q", 2)
    assert [r.node.id for r in out] == ["A", "B"] and out[0].score == 0.9
    assert base.asked == [2, 4, 8]  # 2 hits -> 1 parent, 4 -> 1, 8 (all 6) -> 2
    base.asked.clear()
    assert [r.node.id for r in RecursiveRetriever(base, store, fetch_factor=1, refetch_rounds=0).retrieve("q", 2)] == [
        "A"
    ]
    assert base.asked == [2]


def test_ties_keep_the_base_order(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    add(store, embedder, [node(k, t) for k, t in TOPICS.items()])
    order = ["tokens", "gpu", "ghost", "safety"]
    out = RecursiveRetriever(Scripted(store, [(k, 0.5) for k in order]), store).retrieve("q", 4)
    assert [r.node.id for r in out] == order


def test_lookups_are_batched_one_get_per_level(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    nodes = []
    for i in range(10):
        nodes += [
            node(f"p{i}", f"parent {i}: " + TOPICS["gpu"], role="parent"),
            node(f"c{i}", f"child {i}: " + TOPICS["gpu"], ref=f"p{i}", role="child"),
            node(f"q{i}", f"question {i} about GPU hours?", ref=f"c{i}", role="question"),
        ]
    nodes.append(node("shared", TOPICS["tokens"], ref="p0", role="child"))  # a second way to p0
    add(store, embedder, nodes)
    counting = CountingStore(store)
    base = Scripted(store, [(f"q{i}", 1.0 - i / 100) for i in range(10)] + [("shared", 0.1)])
    out = RecursiveRetriever(base, counting, fetch_factor=1).retrieve("q", 11)  # type: ignore[arg-type]
    assert [r.node.id for r in out] == [f"p{i}" for i in range(10)]
    assert len(counting.gets) == 2  # children, then parents; nothing left at the third level
    assert sorted(counting.gets[0]) == sorted([*(f"c{i}" for i in range(10)), "p0"])
    assert len(counting.gets[1]) == len(set(counting.gets[1])) == 9  # p0 was already fetched for "shared"


def test_other_relationships_can_be_followed(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    add(
        store,
        embedder,
        [node("p", TOPICS["gpu"], role="parent"), Node("c", TOPICS["gpu"], relationships={"parent": "p"})],
    )
    base = Scripted(store, [("c", 0.9)])
    assert RecursiveRetriever(base, store).retrieve("q", 1)[0].node.id == "c"  # "parent" is not followed by default
    assert RecursiveRetriever(base, store, follow=("ref", "parent")).retrieve("q", 1)[0].path == ["c", "p"]


def test_invalid_arguments_are_rejected(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    base = VectorRetriever(store, embedder)
    with pytest.raises(InvalidInputError, match="max_depth"):
        RecursiveRetriever(base, store, max_depth=-1)
    with pytest.raises(InvalidInputError, match="fetch_factor"):
        RecursiveRetriever(base, store, fetch_factor=0)
    with pytest.raises(InvalidInputError, match="follow"):
        RecursiveRetriever(base, store, follow=())
    assert RecursiveRetriever(base, store, follow="ref").follow == ("ref",)
    for retriever in (base, BM25Retriever(store), HybridRetriever(store, embedder), RecursiveRetriever(base, store)):
        with pytest.raises(InvalidInputError, match="k must be"):
            retriever.retrieve("query", 0)
        with pytest.raises(InvalidInputError, match="query"):
            retriever.retrieve("  ", 3)
    with pytest.raises(InvalidInputError, match="alpha"):
        HybridRetriever(store, embedder, alpha=1.5)


# ---------------------------------------------------------------------- store retrievers and composition


def test_store_retrievers_rank_the_matching_node_first(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    add(store, embedder, [node(k, t) for k, t in TOPICS.items()])
    for retriever in (
        VectorRetriever(store, embedder),
        BM25Retriever(store),
        HybridRetriever(store, embedder),
        HybridRetriever(store, embedder, alpha=0.5, sparse_top_k=10),
    ):
        assert isinstance(retriever, Retriever)
        out = retriever.retrieve("AdamW optimizer learning rate schedule", 2)
        assert out[0].node.id == "optimizer"
        # BM25 returns only nodes sharing a word with the query; the others always fill k.
        assert len(out) == (1 if isinstance(retriever, BM25Retriever) else 2)
        assert all(a.score >= b.score for a, b in itertools.pairwise(out))
    only = VectorRetriever(store, embedder, filters={"role": {"$ne": "chunk"}})
    assert only.retrieve("AdamW", 3) == []


def test_hybrid_base_with_recursion_returns_parents(store: EmbeddedVectorStore, embedder: OnnxEmbedder) -> None:
    nodes = []
    for key, text in TOPICS.items():
        nodes.append(node(f"p-{key}", f"Parent on {key}. {text} More context follows here.", role="parent"))
        nodes.append(node(f"c-{key}", text, ref=f"p-{key}", role="child"))
        nodes.append(node(f"s-{key}", f"Summary: {text}", ref=f"p-{key}", role="summary"))
    add(store, embedder, nodes)
    base = HybridRetriever(store, embedder, filters={"role": {"$in": ["child", "summary"]}})
    out = RecursiveRetriever(base, store).retrieve("Which optimizer and learning rate schedule were used?", 3)
    assert out[0].node.id == "p-optimizer"
    assert [r.node.metadata["role"] for r in out] == ["parent"] * 3
    assert len({r.node.id for r in out}) == 3
    for r in out:
        assert isinstance(r, RetrievedNode) and r.hit is not None and r.hit.metadata["role"] in ("child", "summary")
        assert r.path[-1] == r.node.id and r.path[0] == r.hit.id
    # Reranking composes with recursion: the result keeps its type and path.
    mmr = RerankingRetriever(RecursiveRetriever(base, store), MMRReranker(embedder, lambda_=0.7), fetch_k=6)
    reranked = mmr.retrieve("Which optimizer and learning rate schedule were used?", 2)
    assert reranked[0].node.id == "p-optimizer" and isinstance(reranked[0], RetrievedNode)
    assert len(reranked) == 2 and reranked[0].path == out[0].path


def test_mmr_reranker_prefers_diverse_results(embedder: OnnxEmbedder) -> None:
    texts = [
        TOPICS["optimizer"],
        "We trained with the AdamW optimizer and a cosine learning-rate schedule with a warmup.",
        TOPICS["gpu"],
    ]
    hits = [NodeWithScore(Node(f"n{i}", t), 1.0 - i / 10) for i, t in enumerate(texts)]
    hits[2].node.embedding = embedder.embed([texts[2]])[0]  # a given embedding is used as it is
    query = "optimizer and training compute"
    cosine = embedder.embed(texts) @ embedder.embed([query])[0]
    relevant = MMRReranker(embedder, lambda_=1.0).rerank(query, hits, 2)
    assert [h.node.id for h in relevant] == [f"n{i}" for i in np.argsort(-cosine)[:2]]
    diverse = MMRReranker(embedder, lambda_=0.3).rerank(query, hits, 2)
    assert "n2" in {h.node.id for h in diverse}  # not both near-duplicates
    assert [h.score for h in diverse] == [hits[int(h.node.id[1])].score for h in diverse]  # scores kept
    assert MMRReranker(embedder).rerank(query, [], 3) == []
    with pytest.raises(InvalidInputError, match="lambda_"):
        MMRReranker(embedder, lambda_=2.0)


def test_cross_encoder_needs_a_local_model_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="never downloads"):
        CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")
    with pytest.raises(InvalidInputError, match="not a local cross-encoder"):
        CrossEncoderReranker(tmp_path)


def test_cross_encoder_reranks_by_its_scores(embedder: OnnxEmbedder) -> None:
    pytest.importorskip("sentence_transformers")
    try:
        # A bi-encoder directory loads as a cross-encoder with a fresh (random) head: enough to
        # check the plumbing, from a local path, without a download.
        reranker = CrossEncoderReranker(embedder.model_dir)
    except (MissingDependencyError, OSError) as e:  # torch missing, or an incomplete directory
        pytest.skip(f"cannot load a cross-encoder here: {e}")
    hits = [NodeWithScore(Node(k, t), 0.0) for k, t in TOPICS.items()]
    out = reranker.rerank("Which optimizer was used?", hits, 3)
    expected = np.asarray(reranker.model.predict([("Which optimizer was used?", h.node.text) for h in hits]))
    expected = expected.reshape(len(hits), -1)[:, -1]
    assert [h.node.id for h in out] == [hits[i].node.id for i in np.argsort(-expected, kind="stable")[:3]]
    assert [h.score for h in out] == pytest.approx(sorted(expected.tolist(), reverse=True)[:3], abs=1e-5)
