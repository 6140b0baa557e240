"""OpenAICompatibleEmbedder against a real loopback server speaking the OpenAI protocol."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from kvgraph.embed.base import Embedder
from kvgraph.embed.openai_compat import OpenAICompatibleEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.llm import LLMError, LLMUnavailableError
from kvgraph.testing.openai_server import FakeOpenAIServer, fake_vector

KEY = "sk-embed-SECRET-abcdef0123456789"


def make(server: FakeOpenAIServer, **kw: Any) -> OpenAICompatibleEmbedder:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff_base", 0.01)
    return OpenAICompatibleEmbedder(server.base_url, "embed-model", **kw)


def expected(texts: list[str], dim: int = 8) -> np.ndarray:
    vecs = np.array([fake_vector(t, dim) for t in texts], dtype=np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_embed_request_and_result(openai_server: FakeOpenAIServer) -> None:
    texts = ["alpha", "beta", "gamma"]
    vecs = make(openai_server).embed(texts)
    [req] = openai_server.requests
    assert (req.method, req.path) == ("POST", "/v1/embeddings")
    assert req.body == {"model": "embed-model", "input": texts}
    assert vecs.dtype == np.float32 and vecs.shape == (3, 8)
    # The server lists embeddings in reverse; rows must follow the input order (by index).
    np.testing.assert_allclose(vecs, expected(texts), rtol=1e-6)


def test_vectors_are_unit_length(openai_server: FakeOpenAIServer) -> None:
    raw = np.array(fake_vector("x", 8))
    assert abs(np.linalg.norm(raw) - 1.0) > 0.1  # the server does not normalise
    vecs = make(openai_server).embed(["x", "y", "z"])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)


def test_batching(openai_server: FakeOpenAIServer) -> None:
    texts = [f"text number {i}" for i in range(150)]
    emb = make(openai_server, batch_size=64)
    vecs = emb.embed(texts)
    sizes = [len(r.body["input"]) for r in openai_server.requests]
    assert sizes == [64, 64, 22]
    assert [r.body["input"][0] for r in openai_server.requests] == [texts[0], texts[64], texts[128]]
    np.testing.assert_allclose(vecs, expected(texts), rtol=1e-6)
    assert emb.usage.requests == 3 and emb.usage.prompt_tokens == 450


def test_dim_discovered_from_first_response(openai_server: FakeOpenAIServer) -> None:
    openai_server.embedding_dim = 12
    emb = make(openai_server)
    emb.embed(["a"])
    assert emb.dim == 12
    assert len(openai_server.requests) == 1  # no extra probe once known


def test_dim_property_probes_when_unknown(openai_server: FakeOpenAIServer) -> None:
    openai_server.embedding_dim = 5
    emb = make(openai_server)
    assert emb.dim == 5
    assert len(openai_server.requests) == 1


def test_given_dim_is_checked(openai_server: FakeOpenAIServer) -> None:
    emb = make(openai_server, dim=16)
    assert emb.dim == 16 and openai_server.requests == []
    with pytest.raises(LLMError, match="dimension 8 for model 'embed-model', expected 16"):
        emb.embed(["a"])


def test_empty_input_sends_nothing(openai_server: FakeOpenAIServer) -> None:
    out = make(openai_server, dim=8).embed([])
    assert out.shape == (0, 8) and out.dtype == np.float32
    assert openai_server.requests == []


def test_empty_strings_are_sent_as_space(openai_server: FakeOpenAIServer) -> None:
    vecs = make(openai_server).embed(["", "b"])
    assert openai_server.requests[0].body["input"] == [" ", "b"]
    assert vecs.shape == (2, 8)


def test_single_string_is_rejected(openai_server: FakeOpenAIServer) -> None:
    with pytest.raises(InvalidInputError, match="sequence of texts"):
        make(openai_server).embed("oops")  # a str is a Sequence[str]: easy to pass by mistake


def test_protocol_and_model_name(openai_server: FakeOpenAIServer) -> None:
    emb = make(openai_server, dim=8)
    assert emb.model_name == "openai-compat:embed-model"
    assert isinstance(emb, Embedder)


def test_retries_then_succeeds(openai_server: FakeOpenAIServer, backoff_sleeps: list[float]) -> None:
    openai_server.fail_next(1, 503)
    openai_server.fail_next(1, 429, retry_after="1")
    assert make(openai_server).embed(["a"]).shape == (1, 8)
    assert len(openai_server.requests) == 3
    assert backoff_sleeps[1] == 1.0


def test_no_retry_on_400(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(2, 400)
    with pytest.raises(LLMError, match=r"embedding server .* rejected the request \(HTTP 400\)"):
        make(openai_server).embed(["a"])
    assert len(openai_server.requests) == 1


def test_unknown_model(openai_server: FakeOpenAIServer) -> None:
    emb = OpenAICompatibleEmbedder(openai_server.base_url, "nope")
    with pytest.raises(LLMError, match="model 'nope' or path not found"):
        emb.embed(["a"])


def test_unreachable(unused_port: int) -> None:
    base = f"http://127.0.0.1:{unused_port}/v1"
    emb = OpenAICompatibleEmbedder(base, "m", max_retries=1, backoff_base=0.01)
    with pytest.raises(LLMUnavailableError, match=f"cannot reach the embedding server at {base}/embeddings"):
        emb.embed(["a"])


def test_malformed_json(openai_server: FakeOpenAIServer) -> None:
    openai_server.malformed = True
    with pytest.raises(LLMError, match=r"returned invalid JSON \(HTTP 200\): '\{\"object\": \"list\""):
        make(openai_server).embed(["a"])
    assert len(openai_server.requests) == 1


def _drop_last(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return data[:-1]


def _same_index(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "index": 0} for item in data]


def _no_index(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "index"} for item in reversed(data)]


def _ragged(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "embedding": item["embedding"][: 8 - item["index"]]} for item in data]


def _nan(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "embedding": [float("nan")] * 8} for item in data]


def _empty(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "embedding": []} for item in data]


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (_drop_last, "returned 1 embeddings for 2 inputs"),
        (_same_index, "indices that are not 0..1"),
        (_ragged, "malformed embeddings"),
        (_nan, "non-finite"),
        (_empty, "empty vectors"),
    ],
)
def test_broken_embedding_responses(openai_server: FakeOpenAIServer, hook: Any, message: str) -> None:
    openai_server.embedding_data_hook = hook
    with pytest.raises(LLMError, match=message):
        make(openai_server).embed(["a", "b"])


def test_missing_index_means_input_order(openai_server: FakeOpenAIServer) -> None:
    openai_server.embedding_data_hook = _no_index  # in input order, without "index" fields
    np.testing.assert_allclose(make(openai_server).embed(["a", "b"]), expected(["a", "b"]), rtol=1e-6)


def test_key_never_leaks(openai_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.require_key = KEY
    good = make(openai_server, api_key=KEY)
    assert good.embed(["a"]).shape == (1, 8)
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(good)

    bad_key = KEY + "-wrong"
    bad = make(openai_server, api_key=bad_key)
    with pytest.raises(LLMError, match=r"rejected the API key \(HTTP 401\)") as info:
        bad.embed(["a"])
    for text in (str(info.value), repr(info.value), repr(bad), caplog.text):
        assert bad_key not in text and KEY not in text
