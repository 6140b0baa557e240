"""The default ONNX embedder against the reference sentence-transformers model, and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.embed import CachedEmbedder, EmbeddingCache, OnnxEmbedder, embedder_from_spec
from kvgraph.errors import InvalidInputError

# Lengths from 1 word to past the 256-token window, so batches are padded and truncated.
TEXTS = [
    "Llama 2",
    "Safety fine-tuning uses supervised examples, RLHF and context distillation.",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Pretraining used 2 trillion tokens of publicly available data. " * 12,
    "word " * 400,
    "Ghost attention helps the model follow a system message across many dialogue turns.",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    from kvgraph.embed.local import default_model_path

    model = st.SentenceTransformer(default_model_path(), device="cpu")
    return np.asarray(model.encode(TEXTS, normalize_embeddings=True, batch_size=3), dtype=np.float32)


@pytest.mark.parametrize("quantization,min_cos", [("fp32", 0.9999), ("int8", 0.95)])
def test_matches_sentence_transformers(reference: np.ndarray, quantization: str, min_cos: float) -> None:
    emb = OnnxEmbedder(quantization=quantization, batch_size=4)
    vecs = emb.embed(TEXTS)
    assert vecs.shape == (len(TEXTS), 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (vecs * reference).sum(axis=1)
    assert cos.min() >= min_cos, cos


@pytest.mark.parametrize("quantization", ["int8", "fp32"])
def test_batching_and_order_do_not_change_vectors(quantization: str) -> None:
    # Reproducible vectors: the embedding cache and re-ingest rely on a text's vector not
    # depending on the batch it was embedded in.
    emb = OnnxEmbedder(quantization=quantization)
    one_by_one = np.vstack([emb.embed([t]) for t in TEXTS])
    together = emb.embed(list(reversed(TEXTS)))[::-1]
    np.testing.assert_allclose(one_by_one, together, atol=2e-4)


def test_similar_texts_are_closer() -> None:
    emb = OnnxEmbedder()
    q, a, b = emb.embed(["How many tokens was Llama 2 trained on?", TEXTS[3], TEXTS[2]])
    assert q @ a > q @ b + 0.2


def test_token_counter_uses_the_model_window() -> None:
    emb = OnnxEmbedder()
    counter = emb.token_counter()
    assert counter.max_tokens == 256
    assert counter.count(["word " * 400])[0] == 400  # counting is never truncated


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="quantization"):
        OnnxEmbedder(quantization="int4")
    with pytest.raises(InvalidInputError, match="not a sentence-transformers model directory"):
        OnnxEmbedder("/nonexistent/model")
    with pytest.raises(InvalidInputError, match="single string"):
        OnnxEmbedder().embed("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="unknown embedder"):
        embedder_from_spec("word2vec")
    with pytest.raises(InvalidInputError, match="KVGRAPH_EMBED_BASE_URL"):
        embedder_from_spec("openai:text-embedding-3-small", env={})
    assert OnnxEmbedder().embed([]).shape == (0, 384)


def test_cache_returns_same_vectors_and_counts_hits(tmp_path) -> None:
    inner = OnnxEmbedder()
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    emb = CachedEmbedder(inner, cache)
    first = emb.embed(TEXTS[:4])
    assert (emb.hits, emb.misses) == (0, 4)
    again = emb.embed([TEXTS[1], TEXTS[0], "a new text", TEXTS[1]])
    assert (emb.hits, emb.misses) == (3, 5)
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[3], first[1])
    np.testing.assert_allclose(again[2], inner.embed(["a new text"])[0], atol=1e-6)
    cache.close()
    # persisted: a new process-level cache object sees the entries; another model does not
    reopened = EmbeddingCache(tmp_path / "cache.sqlite")
    assert reopened.count(inner.model_name) == 5
    assert reopened.count("other-model") == 0


def test_model_name_resolves_from_the_users_hugging_face_cache(tmp_path, monkeypatch) -> None:
    import shutil

    from kvgraph.embed.local import default_model_path
    from kvgraph.embed.onnx import resolve_model_dir

    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc123"
    shutil.copytree(default_model_path(), snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_dir("all-MiniLM-L6-v2") == snapshot
    assert resolve_model_dir("sentence-transformers/all-MiniLM-L6-v2") == snapshot
    emb = OnnxEmbedder("all-MiniLM-L6-v2")
    assert emb.model_dir == snapshot and emb.model_name == "all-MiniLM-L6-v2@onnx-int8-v2"
    with pytest.raises(InvalidInputError, match="not a sentence-transformers model directory"):
        OnnxEmbedder("no-such-model")


def test_hashing_embedder_is_deterministic_and_word_sensitive() -> None:
    from kvgraph.embed.hashing import HashingEmbedder

    emb = HashingEmbedder(dim=32)
    a, b, c = emb.embed(["red apples and pears", "red apples and pears", "tax law of 1862"])
    np.testing.assert_array_equal(a, b)
    assert a @ c < 0.5 and abs(np.linalg.norm(a) - 1) < 1e-6
