"""Hierarchical chunking: big parent chunks, each split into smaller children, level by level.

This follows LlamaIndex's ``HierarchicalNodeParser``: level 0 splits the document at the
first chunk size, and each further level splits every node of the level above at the
next size. All levels are returned in one flat list; a child's ``parent`` relationship
names the node it was cut from, a parent's ``child`` relationship lists its children,
and ``previous``/``next`` link siblings of the same parent.

Only the last (leaf) level is checked against the counter's ``max_tokens``: with the
default sizes (1024, 512, 256, 128) the upper levels are longer than a 256-token embedder
window on purpose. They are not meant to be embedded; retrieval embeds the leaves and
returns (merges up to) their parents for context.

Offsets (``char_start``/``char_end``) of every level are offsets into the original
document, so ``doc.text[char_start:char_end]`` is the node's text at every level.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from kvgraph.embed.tokens import TokenCounter
from kvgraph.errors import InvalidInputError
from kvgraph.ingest.splitter import Chunk, SentenceSplitter, SpanCounter
from kvgraph.schema import Document, Node, NodeRelationship

_CHILD = NodeRelationship.CHILD.value
_PARENT = NodeRelationship.PARENT.value


class HierarchicalSplitter:
    """Split documents into a tree of chunks, one level per entry of ``chunk_sizes`` (largest first)."""

    def __init__(
        self,
        counter: TokenCounter,
        chunk_sizes: Sequence[int] = (1024, 512, 256, 128),
        chunk_overlap: int = 20,
    ) -> None:
        sizes = list(chunk_sizes)
        if any(isinstance(size, bool) or not isinstance(size, int) for size in sizes):
            raise InvalidInputError(f"chunk_sizes must be ints, got {sizes!r}")
        if not sizes:
            raise InvalidInputError("chunk_sizes must name at least one chunk size")
        if any(a <= b for a, b in itertools.pairwise(sizes)):
            raise InvalidInputError(f"chunk_sizes must be strictly decreasing (largest level first), got {sizes}")
        last = len(sizes) - 1
        # Overlap is validated against every level by SentenceSplitter (it must be < each size).
        self.splitters = [
            SentenceSplitter(counter, size, chunk_overlap, enforce_max_tokens=level == last)
            for level, size in enumerate(sizes)
        ]
        self.chunk_sizes = tuple(sizes)
        self.chunk_overlap = chunk_overlap

    def split(self, doc: Document) -> list[Node]:
        return self.split_many([doc])

    def split_many(self, docs: Iterable[Document]) -> list[Node]:
        """All nodes of all levels: for each document, level 0 first, then level 1, and so on.

        Each level is computed for all documents at once, so token counting is batched.
        """
        docs = list(docs)
        # levels[d][level] = nodes of document d at that level
        levels: list[list[list[Node]]] = [[] for _ in docs]
        # What the current level splits: (document index, parent node or None, start, end).
        pending: list[tuple[int, Node | None, int, int]] = [(d, None, 0, len(doc.text)) for d, doc in enumerate(docs)]
        counts = SpanCounter(self.splitters[0].counter)  # sentences are counted once, not once per level
        for level, splitter in enumerate(self.splitters):
            all_chunks = splitter.chunk_regions([(docs[d].text, start, end) for d, _, start, end in pending], counts)
            per_doc: list[list[Node]] = [[] for _ in docs]
            next_pending: list[tuple[int, Node | None, int, int]] = []
            for (d, parent, _, _), chunks in zip(pending, all_chunks):
                nodes = self._nodes(docs[d], level, parent, chunks, splitter)
                per_doc[d].extend(nodes)
                next_pending.extend((d, node, chunk.start, chunk.end) for node, chunk in zip(nodes, chunks))
            for d, nodes in enumerate(per_doc):
                levels[d].append(nodes)
            pending = next_pending
        return [node for doc_levels in levels for nodes in doc_levels for node in nodes]

    def _nodes(
        self, doc: Document, level: int, parent: Node | None, chunks: Sequence[Chunk], splitter: SentenceSplitter
    ) -> list[Node]:
        # The parent id is part of the salt: two parents that overlap can have children with
        # the same text, and those must still be distinct nodes.
        salt = f"h{level}:{self.chunk_sizes[level]}:{parent.id if parent else ''}"
        nodes = splitter.make_nodes(
            doc, chunks, salt=salt, extra={"level": level, "chunk_size": self.chunk_sizes[level]}
        )
        if parent is not None:
            parent.relationships[_CHILD] = [node.id for node in nodes]
            for node in nodes:
                node.relationships[_PARENT] = parent.id
        return nodes


def leaf_nodes(nodes: Iterable[Node]) -> list[Node]:
    """Nodes without children (the ones to embed)."""
    return [node for node in nodes if not node.relationships.get(_CHILD)]


def root_nodes(nodes: Iterable[Node]) -> list[Node]:
    """Nodes without a parent (the top level)."""
    return [node for node in nodes if _PARENT not in node.relationships]
