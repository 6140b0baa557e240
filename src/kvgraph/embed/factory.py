"""Build an embedder from a one-line spec, as stored in a knowledge base's config.

Specs:

- ``onnx`` / ``onnx-int8`` (default): all-MiniLM-L6-v2 through onnxruntime, int8 weights
- ``onnx-fp32``: the same model with full-precision weights
- ``onnx-int8:/path/to/model`` or ``onnx-fp32:/path``: any local sentence-transformers directory
- ``sentence-transformers`` or ``sentence-transformers:/path-or-name``: torch backend
- ``openai:MODEL``: an OpenAI-compatible ``/v1/embeddings`` server; base URL and key come
  from ``KVGRAPH_EMBED_BASE_URL`` / ``KVGRAPH_EMBED_API_KEY`` (or the LLM's settings)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError

DEFAULT_SPEC = "onnx-int8"


def embedder_from_spec(spec: str | None = None, env: Mapping[str, str] | None = None, threads: int = 0) -> Embedder:
    """``threads``: how many texts a local ONNX model embeds at once (0: one per core)."""
    env = os.environ if env is None else env
    spec = (spec or DEFAULT_SPEC).strip()
    kind, _, arg = spec.partition(":")
    if kind in ("onnx", "onnx-int8", "onnx-fp32"):
        from kvgraph.embed.onnx import OnnxEmbedder

        return OnnxEmbedder(
            arg or None, quantization="fp32" if kind == "onnx-fp32" else "int8", threads=threads or None
        )
    if kind == "hashing":  # tests of plumbing only
        from kvgraph.embed.hashing import HashingEmbedder

        return HashingEmbedder(int(arg) if arg else 64)
    if kind == "sentence-transformers":
        from kvgraph.embed.local import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(arg or None)
    if kind == "openai":
        from kvgraph.embed.openai_compat import OpenAICompatibleEmbedder

        base = env.get("KVGRAPH_EMBED_BASE_URL") or env.get("KVGRAPH_LLM_BASE_URL")
        if not arg or not base:
            raise InvalidInputError(
                f"embedder {spec!r}: write it as openai:MODEL and set KVGRAPH_EMBED_BASE_URL "
                "to the server's API root (for example http://localhost:8000/v1)"
            )
        key = env.get("KVGRAPH_EMBED_API_KEY") or env.get("KVGRAPH_LLM_API_KEY")
        return OpenAICompatibleEmbedder(base, arg, api_key=key)
    raise InvalidInputError(
        f"unknown embedder {spec!r}: use onnx-int8, onnx-fp32, sentence-transformers[:MODEL] or openai:MODEL"
    )
