"""Contextual chunk headers: what a chunk is about, embedded with it but never shown as its text.

A chunk cut from the middle of a section ("We use three techniques: ...") does not say which
document or section it belongs to, so a question naming the section ("safety fine-tuning in
Llama 2") misses it. With ``context_headers`` on, the splitter writes the chunk's *header* into
its metadata (``context_header``: the document title and the heading path, ``Title > Section >
Subsection``, each name once) and the embedder sees ``header + "\\n\\n" + text``. The node's
``text`` (what search shows, what answers quote, what BM25 indexes) stays the chunk's own text.

The splitter reserves the header's tokens out of ``chunk_size``, so header and chunk together
still fit the model's window; a header longer than :data:`MAX_HEADER_TOKENS` is cut to its
first words. Anything that embeds stored nodes again (re-embedding, a new model) must embed
:func:`embedding_text` of the node, not its text, to get the same vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvgraph.schema import Node

__all__ = ["HEADER_KEY", "MAX_HEADER_TOKENS", "SEPARATOR", "chunk_header", "embedding_text"]

HEADER_KEY = "context_header"
SEPARATOR = " > "
# At most this many tokens of a 254-token chunk go to its header: a deep heading path should not
# crowd out the text it labels.
MAX_HEADER_TOKENS = 48


def _clean(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, str) else ""


def chunk_header(metadata: Mapping[str, Any]) -> str:
    """``title > heading path`` of a document's metadata, each name once; "" when it has neither.

    A heading path that starts with the title (a Markdown file's level-1 heading is both) is
    not repeated after it.
    """
    title = _clean(metadata.get("title"))
    path = [p for p in (_clean(x) for x in _clean(metadata.get("heading_path")).split(SEPARATOR.strip())) if p]
    parts: list[str] = [title] if title else []
    for part in path:
        if part not in parts:
            parts.append(part)
    return SEPARATOR.join(parts)


def embedding_text(node: Node) -> str:
    """The text a node's vector is computed from: its header (when it has one), a blank line, its text."""
    header = node.metadata.get(HEADER_KEY)
    return f"{header}\n\n{node.text}" if isinstance(header, str) and header else node.text
