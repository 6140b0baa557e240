"""A deterministic hashing embedder, for tests of plumbing only (never for retrieval quality).

Each word is hashed to a few signed buckets (the "hashing trick"), so texts sharing words
get similar vectors and identical texts identical ones, with no model and no randomness.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from kvgraph.embed.tokens import WhitespaceTokenCounter

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    def __init__(self, dim: int = 64, max_tokens: int | None = 512) -> None:
        self.dim = dim
        self.model_name = f"hashing-{dim}"
        self.max_tokens = max_tokens

    def token_counter(self) -> WhitespaceTokenCounter:
        return WhitespaceTokenCounter(max_tokens=self.max_tokens)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = hashlib.blake2b(word.encode(), digest_size=8).digest()
                for j in range(0, 8, 4):
                    bucket = int.from_bytes(h[j : j + 3], "little") % self.dim
                    out[i, bucket] += 1.0 if h[j + 3] & 1 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm > 0 else np.eye(1, self.dim, dtype=np.float32)[0]
        return out
