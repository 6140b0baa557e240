"""Embedders: turn text into vectors. Heavy libraries are imported on first use only."""

from __future__ import annotations

from importlib import import_module

from kvgraph.embed.base import Embedder

# name -> module; imported when first asked for, so `import kvgraph.embed` stays cheap
_LAZY = {
    "CachedEmbedder": "kvgraph.embed.cache",
    "EmbeddingCache": "kvgraph.embed.cache",
    "embedder_from_spec": "kvgraph.embed.factory",
    "HashingEmbedder": "kvgraph.embed.hashing",
    "SentenceTransformerEmbedder": "kvgraph.embed.local",
    "default_model_path": "kvgraph.embed.local",
    "OnnxEmbedder": "kvgraph.embed.onnx",
    "OpenAICompatibleEmbedder": "kvgraph.embed.openai_compat",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kvgraph.embed' has no attribute {name!r}")


__all__ = ["Embedder", *_LAZY]
