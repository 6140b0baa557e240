"""Late interaction (``rerank = "tokens"``): the ONNX model's token vectors, MaxSim, the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.retrieve.tokens import TokenReranker, maxsim
from kvgraph.schema import Document, Node, NodeWithScore


def _hit(text: str, score: float, node_id: str) -> NodeWithScore:
    return NodeWithScore(node=Node(id=node_id, text=text), score=score)


def test_token_vectors_are_unit_rows_one_per_token_the_model_sees(embedder: OnnxEmbedder) -> None:
    texts = ["a short one", "A longer text, with several more words than the first.", ""]
    vectors = embedder.token_vectors(texts)
    counts = [sum(e.attention_mask) for e in embedder._tok().encode_batch(texts)]  # [CLS], [SEP] included
    assert [len(v) for v in vectors] == counts and counts[2] == 2
    for v in vectors:
        assert v.shape[1] == embedder.dim and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the same text in another batch (other padding) gives the same vectors
    again = embedder.token_vectors([texts[0]])[0]
    np.testing.assert_allclose(again, vectors[0], atol=1e-4)
    # each token has its own vector (contextual, not one per text)
    assert float((vectors[1] @ vectors[1].T).min()) < 0.9
    with pytest.raises(InvalidInputError, match="list of texts"):
        embedder.token_vectors("one string")  # type: ignore[arg-type]


def test_maxsim_averages_each_query_tokens_best_match() -> None:
    q = np.eye(3, dtype=np.float32)[:2]  # tokens along axes 0 and 1
    chunk = np.array([[1, 0, 0], [0, 0.6, 0.8]], dtype=np.float16)
    assert maxsim(q, chunk) == pytest.approx((1.0 + 0.6) / 2, rel=1e-3)  # float16 chunk vectors
    assert maxsim(q, np.zeros((0, 3), np.float16)) == 0.0


def test_the_chunk_that_uses_the_questions_words_rises(embedder: OnnxEmbedder) -> None:
    vague = _hit("Models learn from data, and the quality of the training data matters a great deal.", 0.9, "vague")
    answer = _hit("Gwet's AC2 statistic measured inter-rater reliability between the annotators.", 0.5, "answer")
    question = "Which statistic measured inter-rater reliability?"
    ranked = TokenReranker(embedder, weight=0.6).rerank(question, [vague, answer], 2)
    assert [h.node.id for h in ranked] == ["answer", "vague"]
    assert ranked[0].score > ranked[1].score  # scores are the combined ones
    # weight 0 keeps the first stage's order; 1 follows MaxSim alone
    assert [h.node.id for h in TokenReranker(embedder, weight=0.0).rerank(question, [vague, answer], 2)] == [
        "vague",
        "answer",
    ]
    assert TokenReranker(embedder, weight=1.0).rerank(question, [vague, answer], 1)[0].node.id == "answer"


def test_token_vectors_are_kept_for_the_most_recent_chunks(embedder: OnnxEmbedder) -> None:
    seen: list[list[str]] = []

    class Counting:
        dim = embedder.dim

        def token_vectors(self, texts: list[str]) -> list[np.ndarray]:
            seen.append(list(texts))
            return embedder.token_vectors(texts)

    reranker = TokenReranker(Counting(), cache_chunks=2)  # type: ignore[arg-type]
    hits = [_hit(f"chunk number {i} about rivers", 1.0 - i / 10, f"c{i}") for i in range(3)]
    reranker.rerank("rivers", hits[:2], 2)
    reranker.rerank("rivers", hits[:2], 2)  # both cached: only the question runs
    assert seen == [["rivers"], ["chunk number 0 about rivers", "chunk number 1 about rivers"], ["rivers"]]
    reranker.rerank("rivers", hits[1:], 2)  # c2 is new; c0 is the oldest and goes
    assert seen[-1] == ["chunk number 2 about rivers"] and [k.split(":")[0] for k in reranker._chunks] == ["c1", "c2"]


def test_a_chunk_whose_embedded_text_changed_is_not_served_stale_vectors(embedder: OnnxEmbedder) -> None:
    # the knowledge base keeps one reranker across questions; a chunk's id follows its own text,
    # but the text it is compared by also holds its title, which a document can change
    titles = {"c0": "Rivers"}

    def text_of(node: Node) -> str:
        return f"{titles[node.id]}\n\n{node.text}"

    reranker = TokenReranker(embedder, text_of=text_of)
    hit = _hit("chunk about rivers", 1.0, "c0")
    reranker.rerank("rivers", [hit], 1)
    first = reranker._chunks.get([hit])[0]
    titles["c0"] = "Mountains"
    changed = reranker._chunks.get([hit])[0]
    assert len(list(reranker._chunks)) == 2 and not np.array_equal(first, changed)


def test_bad_weight_and_an_embedder_without_token_vectors_are_refused(embedder: OnnxEmbedder) -> None:
    for weight in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(InvalidInputError, match="weight must be between 0 and 1"):
            TokenReranker(embedder, weight=weight)  # type: ignore[arg-type]

    class PooledOnly:
        dim = 3

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 3), np.float32)

    with pytest.raises(InvalidInputError, match=r"rerank = tokens needs the token vectors.*PooledOnly has none"):
        TokenReranker(PooledOnly())  # type: ignore[arg-type]


def test_rerank_tokens_is_a_setting(tmp_path: Path) -> None:
    docs = [
        Document(id="vague", text="Models learn from data; the quality of training data matters a great deal."),
        Document(id="gwet", text="Gwet's AC2 statistic measured inter-rater reliability between the annotators."),
        Document(id="gpu", text="Pretraining used 3.3 million GPU hours on A100 accelerators."),
    ]
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add_documents(docs)
    with pytest.raises(InvalidInputError, match="rerank must be auto, none, mmr, sentences, tokens"):
        KnowledgeBase.open(tmp_path / "kb", read_only=True, rerank="token")
    with KnowledgeBase.open(tmp_path / "kb", read_only=True, rerank="tokens") as kb:
        retriever: Any = kb.retriever()
        assert isinstance(retriever.reranker, TokenReranker)
        hits = kb.search("Which statistic measured inter-rater reliability?", k=2)
        assert hits[0].node.ref_doc_id == "gwet" and len(hits) == 2
