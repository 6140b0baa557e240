"""Worker pipelines for the Ray tests (shipped to the workers by value, see test_ray_ingest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvgraph.kb.backends import SettingsPipeline
from kvgraph.schema import Document, Node


@dataclass
class DyingSplitter:
    """Splits like ``inner``, but the first time it meets ``poison`` its worker process dies (a real crash:
    ``os._exit``), leaving ``marker`` behind so that the retry on a fresh worker goes through."""

    inner: Any
    poison: str
    marker: str

    def split_many(self, docs: Iterable[Document]) -> list[Node]:
        docs = list(docs)
        if any(str(d.metadata.get("file_name", "")) == self.poison for d in docs) and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(17)
        return list(self.inner.split_many(docs))


@dataclass(frozen=True)
class DyingPipeline:
    """The knowledge base's pipeline with a worker that dies on one file, once."""

    base: SettingsPipeline
    poison: str
    marker: str

    @property
    def key(self) -> str:
        return "dying|" + self.base.key

    def build(self) -> tuple[Any, Any]:
        splitter, embedder = self.base.build()
        return DyingSplitter(splitter, self.poison, self.marker), embedder
