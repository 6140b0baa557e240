"""Embeddings from any OpenAI-compatible server (vLLM, TEI, Ollama, llama.cpp, LM Studio, OpenAI).

``base_url`` must include the API prefix, as for the openai SDK (``http://localhost:8000/v1``);
requests go to ``{base_url}/embeddings``. Errors, retries and API-key handling are those of
:class:`kvgraph.llm.OpenAICompatibleLLM`: failures raise ``kvgraph.llm.LLMError`` and, for an
unreachable server, ``LLMUnavailableError``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np

from kvgraph.errors import InvalidInputError, LLMError
from kvgraph.transport import ApiClient, Usage

_DIM_PROBE = "dimension probe"


class OpenAICompatibleEmbedder:
    """The Embedder protocol over ``POST {base_url}/embeddings``.

    Texts are sent ``batch_size`` at a time. Vectors come back in input order (the server's
    ``index`` decides, not the order of its list) as float32 rows scaled to unit L2 length, so
    dot product equals cosine similarity whatever the server does; all-zero vectors stay zero.

    ``dim`` is the vector dimension: checked against every response when given, else learnt
    from the first response. Reading ``dim`` before any embedding sends one probe request;
    note that on Python 3.11 ``isinstance(x, Embedder)`` reads it too.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dim: int | None = None,
        batch_size: int = 64,
        timeout: float = 60.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        *,
        extra_headers: Mapping[str, str] | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if dim is not None and dim < 1:
            raise InvalidInputError(f"dim must be >= 1, got {dim}")
        self.model = model
        self.model_name = f"openai-compat:{model}"
        self.batch_size = batch_size
        self.usage = Usage()
        self._dim = dim
        self._http = ApiClient(
            base_url,
            model=model,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            transport=transport,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_after_max=retry_after_max,
            what="embedding",
            url_setting="base_url",
            key_setting="api_key",
        )

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed([_DIM_PROBE])
        assert self._dim is not None  # set by embed()
        return self._dim

    def __repr__(self) -> str:
        key = "'***'" if self._http.has_key else "None"
        return f"OpenAICompatibleEmbedder(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    def close(self) -> None:
        self._http.close()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order of ``texts``."""
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of texts, not a single string")
        rows = [self._embed_batch(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        vecs = np.concatenate(rows) if len(rows) > 1 else rows[0]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        # OpenAI and some local servers reject empty strings; a space embeds as "nothing" too.
        inputs = [t if t else " " for t in texts]
        url = self._http.url("embeddings")
        data = self._http.post_json("embeddings", {"model": self.model, "input": inputs})
        items = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(items, list) or len(items) != len(inputs):
            got = len(items) if isinstance(items, list) else "no"
            raise LLMError(f"the embedding server at {url} returned {got} embeddings for {len(inputs)} inputs")
        try:
            if all("index" not in item for item in items):
                ordered = items  # servers that omit ``index`` list the embeddings in input order
            else:
                ordered = sorted(items, key=lambda item: int(item["index"]))
                if [int(item["index"]) for item in ordered] != list(range(len(inputs))):
                    raise LLMError(f"the embedding server at {url} returned indices that are not 0..{len(inputs) - 1}")
            vecs = np.array([_vector(item["embedding"]) for item in ordered], dtype=np.float32)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise LLMError(
                f"the embedding server at {url} returned malformed embeddings: {self._http.quote(repr(e))}"
            ) from None
        if vecs.ndim != 2 or vecs.shape[1] == 0 or not np.isfinite(vecs).all():
            raise LLMError(f"the embedding server at {url} returned empty vectors or non-finite values")
        if self._dim is None:
            self._dim = int(vecs.shape[1])
        elif vecs.shape[1] != self._dim:
            raise LLMError(
                f"the embedding server at {url} returned vectors of dimension {vecs.shape[1]} for model "
                f"{self.model!r}, expected {self._dim}"
            )
        self.usage.add(data.get("usage"))
        return vecs


def _vector(value: Any) -> np.ndarray:
    """A JSON embedding: a list of numbers, or base64 of little-endian float32 (encoding_format=base64)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    if not isinstance(value, list):
        raise TypeError(f"embedding is a {type(value).__name__}, not a list of numbers")
    return np.asarray(value, dtype=np.float32)
