"""Embedders: turn text into vectors. Heavy libraries are imported on first use only."""

from kvgraph.embed.base import Embedder
from kvgraph.embed.cache import CachedEmbedder, EmbeddingCache
from kvgraph.embed.factory import embedder_from_spec
from kvgraph.embed.local import SentenceTransformerEmbedder, default_model_path
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.embed.openai_compat import OpenAICompatibleEmbedder

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "OnnxEmbedder",
    "OpenAICompatibleEmbedder",
    "SentenceTransformerEmbedder",
    "default_model_path",
    "embedder_from_spec",
]
