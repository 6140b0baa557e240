"""Token counters: how many tokens a text costs in the embedder's own tokenizer.

Chunk sizes are counted in the embedding model's tokens (not characters or words), so
that a chunk of ``chunk_size`` tokens really fits the model's window. Counts exclude
special tokens ([CLS]/[SEP]); a model adds those itself, which is why the splitter
checks ``chunk_size + 2 <= max_tokens``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from kvgraph.errors import InvalidInputError


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of texts, without special tokens.

    ``max_tokens`` is the model's window including special tokens (None when unknown).
    """

    max_tokens: int | None

    def count(self, texts: Sequence[str]) -> list[int]: ...


class HFTokenCounter:
    """Counts tokens with a Hugging Face ``tokenizers`` tokenizer loaded from ``tokenizer.json``.

    The tokenizer's truncation and padding are switched off: sentence-transformers'
    ``tokenizer.json`` files often truncate and pad to the model window (128 for
    all-MiniLM-L6-v2), which would make every long text look exactly that long.
    """

    def __init__(self, tokenizer_json_path: str | os.PathLike[str], max_tokens: int | None = None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - tokenizers is a core dependency
            from kvgraph.embed.onnx_build import MissingPackageError

            raise MissingPackageError("tokenizers", "counts the model's tokens", "pip install tokenizers") from e
        path = os.fspath(tokenizer_json_path)
        if not os.path.isfile(path):
            raise InvalidInputError(f"tokenizer file {path!r} does not exist; pass the path of a tokenizer.json")
        if max_tokens is not None and max_tokens <= 2:
            raise InvalidInputError(f"max_tokens must be > 2 (room for [CLS]/[SEP]), got {max_tokens}")
        # from_file gives a fresh object, so turning truncation/padding off affects no one else.
        self._tokenizer: Any = Tokenizer.from_file(path)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        # encode_batch_fast skips computing offsets, which we do not need (tokenizers >= 0.20).
        self._encode_batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        self.max_tokens = max_tokens
        self.path = path

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._encode_batch(list(texts), add_special_tokens=False)
        return [len(enc.ids) for enc in encodings]


class WhitespaceTokenCounter:
    """Counts whitespace-separated words. For plumbing tests only: no model tokenizes like this."""

    def __init__(self, max_tokens: int | None = None) -> None:
        self.max_tokens = max_tokens

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]
