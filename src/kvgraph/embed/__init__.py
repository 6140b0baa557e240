"""Embedders: turn text into vectors. Heavy libraries are imported on first use only."""

from kvgraph.embed.base import Embedder
from kvgraph.embed.local import SentenceTransformerEmbedder, default_model_path

__all__ = ["Embedder", "SentenceTransformerEmbedder", "default_model_path"]
