"""The default second stage: ``rerank = "auto"`` reorders the first five hits by token vectors.

What it must keep: a reranker that sees the first ``fetch_k`` hits cannot push a later hit out of
a longer list, scores still fall with rank, ``auto`` falls back to no reranking where the model
has no token vectors (or none is used), and one reranker serves many questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph.config import Settings
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.retrieve import RerankingRetriever
from kvgraph.retrieve.tokens import FETCH_K, TokenReranker
from kvgraph.schema import Document, Node, NodeWithScore

DOCS = [
    Document(id="gwet", text="Gwet's AC2 statistic measured inter-rater reliability between the annotators."),
    Document(id="vague", text="Models learn from data; the quality of training data matters a great deal."),
    Document(id="gpu", text="Pretraining used 3.3 million GPU hours on A100 accelerators."),
    Document(id="tok", text="The tokenizer is byte-pair encoding with a vocabulary of 32 thousand tokens."),
    Document(id="ctx", text="The context length was doubled from 2048 to 4096 tokens for Llama 2."),
    Document(id="gqa", text="Grouped-query attention is used by the 34B and 70B models for inference scalability."),
    Document(id="rlhf", text="Reinforcement learning with human feedback used rejection sampling and PPO."),
]


class Listed:
    """A first stage that returns fixed hits (the composition is what is under test)."""

    def __init__(self, scores: Sequence[float]) -> None:
        self.hits = [NodeWithScore(node=Node(id=f"n{i}", text=f"text {i}"), score=s) for i, s in enumerate(scores)]
        self.asked: list[int] = []

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        self.asked.append(k)
        return self.hits[:k]


class Reverse:
    """Puts the candidates it is given in reverse order, scored 1, 0.9, ... (a reranker's own scale)."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def rerank(self, query: str, nodes: Sequence[NodeWithScore], k: int) -> list[NodeWithScore]:
        self.seen.append([h.node.id for h in nodes])
        return [NodeWithScore(node=h.node, score=1.0 - i / 10) for i, h in enumerate(reversed(nodes))][:k]


def test_only_the_first_fetch_k_hits_are_reordered_and_scores_still_fall_with_rank() -> None:
    base, reverse = Listed([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]), Reverse()
    hits = RerankingRetriever(base, reverse, fetch_k=3).retrieve("q", 6)
    assert base.asked == [6] and reverse.seen == [["n0", "n1", "n2"]]
    assert [h.node.id for h in hits] == ["n2", "n1", "n0", "n3", "n4", "n5"]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[:3] == [1.0, 0.9, 0.8]
    # the tail keeps its own gaps, below the reranked head
    assert scores[3] < 0.8 and scores[3] - scores[4] == pytest.approx(1.0) == scores[4] - scores[5]
    # a tail already below the head keeps its scores
    low = RerankingRetriever(Listed([0.5, 0.4, 0.3, 0.2]), Reverse(), fetch_k=2).retrieve("q", 4)
    assert [h.score for h in low] == [1.0, 0.9, 0.3, 0.2]
    # fewer hits wanted than the reranker sees: it still sees fetch_k and keeps k
    base, reverse = Listed([9.0, 8.0, 7.0, 6.0]), Reverse()
    top = RerankingRetriever(base, reverse, fetch_k=4).retrieve("q", 2)
    assert base.asked == [4] and [h.node.id for h in top] == ["n3", "n2"]


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rerank") / "kb"
    with KnowledgeBase.open(path) as kb:
        kb.add_documents(DOCS)
    return path


def test_the_default_reranks_the_first_five_by_token_vectors_and_keeps_one_reranker(kb_path: Path) -> None:
    assert Settings().rerank == "auto" and Settings().rerank_fetch_k == 0 and FETCH_K == 5
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        retriever: Any = kb.retriever()
        assert isinstance(retriever, RerankingRetriever) and isinstance(retriever.reranker, TokenReranker)
        assert retriever.fetch_k == FETCH_K
        hits = kb.search("Which statistic measured inter-rater reliability?", k=7)
        assert hits[0].node.ref_doc_id == "gwet" and len(hits) == 7
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        reranker = retriever.reranker
        cached = len(list(reranker._chunks))
        assert cached == FETCH_K  # only the first five were run through the model
        again: Any = kb.retriever()
        assert again.reranker is reranker  # the token vectors of earlier candidates are kept
        kb.search("Which statistic measured inter-rater reliability?", k=3)
        assert len(list(reranker._chunks)) == cached
        # the lexical-only mode loads no model: nothing to rerank with; mmr orders for diversity,
        # which a relevance reranker would undo
        assert not isinstance(kb.retriever(mode="sparse"), RerankingRetriever)
        assert not isinstance(kb.retriever(mode="mmr"), RerankingRetriever)
        assert isinstance(kb.retriever(mode="dense"), RerankingRetriever)
    with KnowledgeBase.open(kb_path, read_only=True, rerank="tokens") as kb:
        assert isinstance(kb.retriever(mode="mmr"), RerankingRetriever)  # named, it is what runs
    with KnowledgeBase.open(kb_path, read_only=True, rerank="none") as kb:
        first = kb.search("Which statistic measured inter-rater reliability?", k=7)
    # the same five chunks, reordered; their scores on the first stage's span, the rest untouched
    assert {h.node.id for h in hits[:5]} == {h.node.id for h in first[:5]}
    low, high = min(h.score for h in first[:5]), max(h.score for h in first[:5])
    assert all(low - 1e-9 <= h.score <= high + 1e-9 for h in hits[:5])
    assert [(h.node.id, h.score) for h in hits[5:]] == [(h.node.id, h.score) for h in first[5:]]
    with KnowledgeBase.open(kb_path, read_only=True, rerank_fetch_k=7) as kb:
        assert kb.retriever().fetch_k == 7  # type: ignore[attr-defined]
    with KnowledgeBase.open(kb_path, read_only=True, rerank="none") as kb:
        assert not isinstance(kb.retriever(), RerankingRetriever)
    with pytest.raises(InvalidInputError, match=r"rerank_fetch_k must be 0 .* or positive, got -1"):
        KnowledgeBase.open(kb_path, read_only=True, rerank_fetch_k=-1)


def test_auto_does_not_rerank_with_a_model_that_has_no_token_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KVGRAPH_EMBEDDER", "hashing")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add_documents(DOCS[:3])
        assert kb.settings.rerank == "auto"
        assert not isinstance(kb.retriever(), RerankingRetriever)
        assert len(kb.search("inter-rater reliability", k=2)) == 2
    # asked for by name, the same model is a clear error
    with (
        pytest.raises(InvalidInputError, match="rerank = tokens needs the token vectors"),
        KnowledgeBase.open(tmp_path / "kb", read_only=True, rerank="tokens") as kb,
    ):
        kb.search("inter-rater reliability", k=2)


def test_the_per_chunk_cache_serves_many_threads_the_right_arrays() -> None:
    # the HTTP server runs searches on several threads against one knowledge base, and so one reranker
    import time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from kvgraph.retrieve.per_chunk import ChunkArrays

    def compute(nodes: list[Node]) -> list[np.ndarray]:
        time.sleep(0.0005)  # as the model does, give the other threads the interpreter meanwhile
        return [np.full(3, float(n.id[1:])) for n in nodes]

    arrays = ChunkArrays(compute, capacity=4)  # smaller than what the threads ask for: evictions race

    def ask(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            hits = [NodeWithScore(node=Node(id=f"n{i}", text=""), score=0.0) for i in rng.choice(12, 3, replace=False)]
            got = arrays.get(hits)
            if [float(a[0]) for a in got] != [float(h.node.id[1:]) for h in hits]:
                return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, range(8)))
    assert len(list(arrays)) <= 4


def test_reranked_scores_stay_on_the_first_stage_scale_and_ties_are_still_ordered(embedder: Any) -> None:
    question = "Which statistic measured inter-rater reliability?"
    vague = NodeWithScore(node=Node(id="vague", text=DOCS[1].text), score=0.5)
    answer = NodeWithScore(node=Node(id="answer", text=DOCS[0].text), score=0.5)
    # equal first-stage scores: MaxSim alone decides the order, and both keep the shared score
    tied = TokenReranker(embedder).rerank(question, [vague, answer], 2)
    assert [h.node.id for h in tied] == ["answer", "vague"] and [h.score for h in tied] == [0.5, 0.5]
    spread = TokenReranker(embedder, weight=0.7).rerank(
        question, [replace(vague, score=0.8), replace(answer, score=0.6)], 2
    )
    assert [h.node.id for h in spread] == ["answer", "vague"]
    assert 0.6 <= spread[1].score < spread[0].score <= 0.8


def test_graph_mode_seeds_from_the_first_stage_alone_and_a_bad_rerank_is_refused(tmp_path: Path) -> None:
    # the walk's defaults were chosen with unreranked seeds; the seeds stay what they were
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add_documents(DOCS)
        kb.graph.build()
        walk: Any = kb.graph.retriever()
        assert not isinstance(walk.base, RerankingRetriever)
        kb.settings.rerank = "tokens"  # a reranker the user names still reranks the seeds
        named: Any = kb.graph.retriever()
        assert isinstance(named.base, RerankingRetriever)
        kb.settings.rerank = "auto"
        assert kb.search("Which statistic measured inter-rater reliability?", k=2, mode="graph")
        assert not isinstance(kb.retriever(rerank="none"), RerankingRetriever)
        assert isinstance(kb.retriever(), RerankingRetriever)
        with pytest.raises(InvalidInputError, match="rerank must be auto, none"):
            kb.retriever(rerank="colbert")


def test_the_sentence_reranker_does_not_serve_a_replaced_node_its_old_vectors(embedder: Any) -> None:
    from kvgraph.retrieve.sentences import SentenceReranker

    reranker = SentenceReranker(embedder)
    old = NodeWithScore(node=Node(id="n", text="Rivers carry sediment to the sea."), score=0.5)
    new = NodeWithScore(node=Node(id="n", text="Grouped-query attention speeds up inference."), score=0.5)
    reranker.rerank("attention", [old], 1)
    first = reranker._vectors.get([old])[0]
    replaced = reranker._vectors.get([new])[0]
    assert len(list(reranker._vectors)) == 2 and not np.array_equal(first, replaced)
