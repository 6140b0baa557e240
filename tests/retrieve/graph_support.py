"""A knowledge base of titled passages and its document graph, for the graph retriever's tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kvgraph.docgraph.build import DocGraph, build_doc_graph
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document


@contextmanager
def passages_kb(path: Path, passages: Mapping[str, str]) -> Iterator[KnowledgeBase]:
    """A knowledge base holding one document per passage, titled by its id."""
    with KnowledgeBase.open(path, expand_neighbors=False) as kb:
        kb.add_documents([Document(id=pid, text=text, metadata={"title": pid}) for pid, text in passages.items()])
        yield kb


def doc_graph_of(kb: KnowledgeBase) -> DocGraph:
    """The document graph built from every chunk of ``kb``, entity names embedded by its embedder."""
    nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
    return build_doc_graph(nodes, np.stack([n.embedding_array() for n in nodes]), embedder=kb.embedder)
