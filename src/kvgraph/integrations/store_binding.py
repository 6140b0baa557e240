"""What a framework adapter writes into: a store, and the one embedding model allowed in it.

An adapter is given a :class:`~kvgraph.kb.KnowledgeBase` (its store, which the knowledge base
may reopen), an open :class:`~kvgraph.store.EmbeddedVectorStore`, or a path to open one at.

A knowledge base records the model that made its vectors in the store meta ``embedding_model``
and refuses to ingest with another one. Adapters write vectors that a framework computed, so
they hold the same line: vectors go in only when the adapter knows which model made them and
that model is the store's. A store that records no model takes the first named writer's (a
knowledge base's configured embedder counts as its model until then).

This module imports no framework.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kvgraph.errors import InvalidInputError
from kvgraph.store.embedded import EmbeddedVectorStore

if TYPE_CHECKING:
    from kvgraph.kb.knowledge_base import KnowledgeBase

__all__ = ["MODEL_META_KEY", "StoreBinding", "declared_model_name"]

MODEL_META_KEY = "embedding_model"  # the key KnowledgeBase records its model under

# What framework embedding classes report when nobody named the model (LlamaIndex's default).
_ANONYMOUS = frozenset({"", "unknown"})


def declared_model_name(embedding: object) -> str | None:
    """The model name an embedding object states, or None.

    ``model_name`` (kvgraph embedders, LlamaIndex and sentence-transformers wrappers) is read
    first, then ``model`` (OpenAI-style clients). LlamaIndex's placeholder ``"unknown"`` counts
    as no name.
    """
    for attr in ("model_name", "model"):
        value = getattr(embedding, attr, None)
        if isinstance(value, str) and value.strip() not in _ANONYMOUS:
            return value
    return None


class StoreBinding:
    """An adapter's store and the model its vectors must come from.

    ``source`` is a KnowledgeBase, an EmbeddedVectorStore (both left open by :meth:`close`) or
    a path, opened with ``open_kwargs`` and closed by :meth:`close`. ``writer_model`` is the
    model the adapter's vectors come from (None: not stated).
    """

    def __init__(
        self,
        source: KnowledgeBase | EmbeddedVectorStore | str | os.PathLike[str],
        writer_model: str | None,
        *,
        adapter: str,
        open_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        from kvgraph.kb.knowledge_base import KnowledgeBase  # lazily: it loads ingestion

        self.writer_model = writer_model
        self.kb: KnowledgeBase | None = None
        self._store: EmbeddedVectorStore | None = None
        self._owned = False
        if open_kwargs and not isinstance(source, (str, os.PathLike)):
            raise InvalidInputError(f"open options {sorted(open_kwargs)} only apply when {adapter} is given a path")
        if isinstance(source, KnowledgeBase):
            self.kb = source
            self.where = f"knowledge base {source.path}"
            source.store  # noqa: B018  # raises now, naming the knowledge base, when nothing was ingested
        elif isinstance(source, EmbeddedVectorStore):
            self._store = source
            self.where = f"store {source.path}"
        elif isinstance(source, (str, os.PathLike)):
            self._store = EmbeddedVectorStore.open(source, **(open_kwargs or {}))
            self._owned = True
            self.where = f"store {self._store.path}"
        else:
            raise InvalidInputError(
                f"{adapter} takes a KnowledgeBase, an EmbeddedVectorStore or a path, got {type(source).__name__}"
            )

    @property
    def store(self) -> EmbeddedVectorStore:
        """The current store (a knowledge base's may have been reopened by ``kb.refresh()``)."""
        if self.kb is not None:
            return self.kb.store
        assert self._store is not None
        return self._store

    def close(self) -> None:
        """Close the store if it was opened from a path."""
        if self._owned and self._store is not None:
            self._store.close()

    def expected_model(self) -> str | None:
        """The model the store's vectors come from: the recorded one, else a knowledge base's configured one."""
        return self._expected(self.store.get_meta(MODEL_META_KEY))

    def _expected(self, recorded: str | None) -> str | None:
        if recorded is None and self.kb is not None:
            return self.kb.embedder.model_name  # building the embedder does not load the model
        return recorded

    def check_model(self, *, writing: bool) -> None:
        """Raise InvalidInputError unless vectors of ``writer_model`` belong in the store.

        Reading (``writing=False``) only refuses a named model that differs from the store's.
        The first write to a store that records no model records the writer's, so a later
        adapter with another model is refused.
        """
        store = self.store
        recorded = store.get_meta(MODEL_META_KEY)
        expected = self._expected(recorded)
        writer = self.writer_model
        if writer is None:
            if expected is not None and writing:
                raise InvalidInputError(
                    f"{self.where} uses embedding model {expected!r}, and the adapter was not told which model "
                    f"made the new vectors; pass embedding_model={expected!r} if it is that model"
                )
            return
        if expected is not None and writer != expected:
            how = f"embed with {expected!r}" + (" (kb.embedder)" if self.kb is not None else "")
            raise InvalidInputError(
                f"{self.where} uses embedding model {expected!r}; refusing vectors of {writer!r}: "
                f"{how} or use a store of its own"
            )
        if writing and recorded is None and not store.read_only:
            store.set_meta(MODEL_META_KEY, writer)
