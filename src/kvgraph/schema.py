"""The data model: nodes (chunks of text with metadata and an embedding) and scored results."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from kvgraph.errors import InvalidInputError

# JSON-compatible metadata values: scalars, or flat lists of scalars.
Scalar = str | int | float | bool | None
MetadataValue = Scalar | list[Scalar]
Metadata = dict[str, MetadataValue]


class NodeRelationship(str, Enum):
    """How a node relates to another node (same vocabulary as LlamaIndex)."""

    SOURCE = "source"
    PREVIOUS = "previous"
    NEXT = "next"
    PARENT = "parent"
    CHILD = "child"


@dataclass
class Node:
    """A unit of retrievable text.

    ``relationships`` maps a relationship name to a node id (or a list of ids for
    ``child``). ``ref_doc_id`` names the document the node came from, so that
    deleting the document deletes all its nodes.
    """

    id: str
    text: str = ""
    metadata: Metadata = field(default_factory=dict)
    embedding: np.ndarray | list[float] | None = None
    ref_doc_id: str | None = None
    relationships: dict[str, str | list[str]] = field(default_factory=dict)

    def embedding_array(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return np.asarray(self.embedding, dtype=np.float32)


@dataclass
class Document:
    """A loaded source document (a file, or one page of a PDF) before splitting.

    ``id`` is deterministic (derived from the file path and, for paged files, the page) so
    that re-loading the same file gives the same ids. ``metadata`` carries provenance such
    as ``file_path``, ``page``, ``total_pages``, ``title`` and ``heading_path``.
    """

    id: str
    text: str
    metadata: Metadata = field(default_factory=dict)


@dataclass
class NodeWithScore:
    node: Node
    score: float


def validate_id(node_id: object, where: str = "node id") -> str:
    if not isinstance(node_id, str):
        raise InvalidInputError(f"{where} must be a non-empty string, got {type(node_id).__name__} {node_id!r}")
    if not node_id:
        raise InvalidInputError(f"{where} must be a non-empty string, got ''")
    return node_id


def _check_scalar(value: object, key: str, node_id: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"node {node_id!r}: metadata[{key!r}] = {value!r} is not a finite number")
        return
    raise InvalidInputError(
        f"node {node_id!r}: metadata[{key!r}] has type {type(value).__name__}; "
        "metadata values must be str, int, float, bool, None or a list of those"
    )


def validate_metadata(metadata: object, node_id: str) -> Metadata:
    """Check that metadata is a flat JSON-compatible dict; return it unchanged."""
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"node {node_id!r}: metadata must be a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"node {node_id!r}: metadata keys must be non-empty strings, got {key!r}")
        if isinstance(value, (list, tuple)):
            for item in value:
                _check_scalar(item, key, node_id)
        else:
            _check_scalar(value, key, node_id)
    return metadata


def metadata_to_json(metadata: Metadata) -> str:
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass
class Citation:
    """Where a numbered part of an answer came from: ``[number]`` in the answer text."""

    number: int
    node_id: str
    source: str  # human label: "llama2.pdf p. 23" or "guide.md > Install"
    file_path: str | None = None
    page: int | None = None
    score: float | None = None


@dataclass
class Answer:
    """An answer with its citations and the retrieved nodes it was made from."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    source_nodes: list[NodeWithScore] = field(default_factory=list)
    mode: str = "extractive"  # or "llm"

    def __str__(self) -> str:
        return self.text


def source_label(metadata: Metadata) -> str:
    """A short, human label for where a node came from: file name, then page or section."""
    name = metadata.get("file_name") or metadata.get("file_path") or "?"
    if isinstance(name, str) and "/" in name:
        name = name.rsplit("/", 1)[-1]
    page = metadata.get("page")
    if page is not None:
        return f"{name} p. {page}"
    heading = metadata.get("heading_path")
    if isinstance(heading, str) and heading:
        return f"{name} > {heading}"
    return str(name)
