"""Retrieval stages that sit between the store's top-k and the answerer."""

from kvgraph.retrieve.neighbors import expand_neighbors

__all__ = ["expand_neighbors"]
