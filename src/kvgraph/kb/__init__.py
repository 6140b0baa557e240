"""The knowledge base: one directory, the front door of the Python API, the CLI and the HTTP API.

:class:`KnowledgeBase` (in :mod:`kvgraph.kb.knowledge_base`) wires the store, the file registry,
the embedder, the retrievers and the answerers; ``kb.graph`` (:mod:`kvgraph.kb.graph`) is its
graph side; :mod:`kvgraph.kb.layout` names the files on disk. Everything above this package (the
CLI, the server, evaluation) goes through :class:`KnowledgeBase`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvgraph.kb.layout import DEFAULT_KB, default_kb_path

if TYPE_CHECKING:
    from kvgraph.kb.knowledge_base import KnowledgeBase


def __getattr__(name: str) -> object:
    # KnowledgeBase pulls in ingestion and storage; load it only when asked for.
    if name == "KnowledgeBase":
        from kvgraph.kb.knowledge_base import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'kvgraph.kb' has no attribute {name!r}")


__all__ = ["DEFAULT_KB", "KnowledgeBase", "default_kb_path"]
