"""Ingest documents as node references: the splitter a knowledge base uses when ``references`` is set.

``kind`` chooses what each document becomes (see :mod:`kvgraph.ingest.references`):

* ``chunk``: parents of ``parent_size`` tokens and their children of each ``sub_sizes``;
* ``metadata``: parents, and per parent a summary and ``n_questions`` questions;
* ``both``: parents, children, summaries and questions.

Every node keeps its document's ``ref_doc_id``, so replacing or deleting a document
replaces or deletes its references with it, in the same store commit.

As for plain chunks, tiny Markdown sections are merged first (``min_section_chars``) and, with
``context_headers``, children carry their document's ``title > heading path`` header, which
the pipeline embeds before their text (:mod:`kvgraph.ingest.context`). Parents are returned,
not searched, and extractive summaries and questions are embedded as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from kvgraph.errors import InvalidInputError
from kvgraph.ingest.references import chunk_references, metadata_references, parent_chunks, parent_nodes
from kvgraph.schema import Document, Node

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder
    from kvgraph.embed.tokens import TokenCounter
    from kvgraph.ingest.references import MetadataProgress
    from kvgraph.llm.base import LLM

REFERENCE_KINDS = ("none", "chunk", "metadata", "both")


class ReferenceSplitter:
    """A :class:`~kvgraph.ingest.pipeline.Splitter` that emits reference nodes instead of flat chunks."""

    def __init__(
        self,
        kind: str,
        counter: TokenCounter,
        embedder: Embedder,
        parent_size: int = 1024,
        sub_sizes: Sequence[int] = (128, 256, 512),
        overlap: int = 20,
        n_questions: int = 5,
        llm: LLM | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        progress: Callable[[MetadataProgress], None] | None = None,
        context_headers: bool = False,
        min_section_chars: int = 0,
    ) -> None:
        if kind not in REFERENCE_KINDS[1:]:
            raise InvalidInputError(f"references must be one of {', '.join(REFERENCE_KINDS[1:])}, got {kind!r}")
        self.kind = kind
        self.counter = counter
        self.embedder = embedder
        self.parent_size = parent_size
        self.sub_sizes = list(sub_sizes)
        self.overlap = overlap
        self.n_questions = n_questions
        self.llm = llm
        self.cache_path = cache_path
        self.progress = progress
        self.context_headers = context_headers
        self.min_section_chars = min_section_chars

    def split_many(self, docs: Iterable[Document]) -> list[Node]:
        docs = list(docs)
        if self.min_section_chars > 0:
            from kvgraph.ingest.loaders.markdown import merge_small_sections

            docs = merge_small_sections(docs, self.min_section_chars)
        if self.kind == "metadata":
            nodes = parent_chunks(docs, self.counter, self.parent_size, self.overlap)
        else:
            nodes = chunk_references(docs, self.counter, self.parent_size, self.sub_sizes, self.overlap)
        if self.kind in ("metadata", "both"):
            nodes += metadata_references(
                parent_nodes(nodes),
                self.embedder,
                n_questions=self.n_questions,
                llm=self.llm,
                cache_path=self.cache_path,
                progress=self.progress,
            )
        if self.context_headers:
            from kvgraph.ingest.context import HEADER_KEY, chunk_header

            for node in nodes:
                header = chunk_header(node.metadata) if node.metadata.get("role") == "child" else ""
                if header:
                    node.metadata[HEADER_KEY] = header
        return nodes
