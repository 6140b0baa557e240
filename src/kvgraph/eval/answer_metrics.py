"""Answer metrics: SQuAD's exact match and token F1, and embedding cosine similarity.

``normalize_answer``, ``exact_match`` and ``token_f1`` follow the official SQuAD v1.1 evaluation
script (``evaluate-v1.1.py``) so numbers are comparable with published ones: scores are the maximum
over the reference answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop ASCII punctuation, drop articles (a/an/the), squeeze whitespace.

    The order matters and is the official one: punctuation goes before articles, so ``"the-end"``
    becomes ``"theend"`` and keeps its letters.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(golds: str | Sequence[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def exact_match(pred: str, golds: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0 (also with no references)."""
    norm = normalize_answer(pred)
    return 1.0 if any(norm == normalize_answer(g) for g in _golds(golds)) else 0.0


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    # as in SQuAD v1.1, no overlap (including an empty prediction or reference) scores 0
    if same == 0:
        return 0.0
    p = same / len(pred_tokens)
    r = same / len(gold_tokens)
    return 2 * p * r / (p + r)


def token_f1(pred: str, golds: str | Sequence[str]) -> float:
    """SQuAD token F1: harmonic mean of bag-of-token precision and recall after normalisation, max over references."""
    pred_tokens = normalize_answer(pred).split()
    return max((_f1(pred_tokens, normalize_answer(g).split()) for g in _golds(golds)), default=0.0)


def semantic_similarity(embedder: Embedder, preds: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Cosine similarity of each prediction's embedding with its reference's, as a float64 array.

    ``preds[i]`` is compared with ``refs[i]``. A blank prediction or reference scores 0.0 without being
    embedded: an embedder maps "" to *some* vector, and a non-answer must not look similar to anything.
    A zero vector also scores 0.0. Results are clipped to [-1, 1] against rounding.
    """
    if len(preds) != len(refs):
        raise InvalidInputError(f"semantic_similarity: {len(preds)} predictions but {len(refs)} references")
    out = np.zeros(len(preds), dtype=np.float64)
    keep = [i for i, (p, r) in enumerate(zip(preds, refs)) if p.strip() and r.strip()]
    if not keep:
        return out
    # one embed call for both sides: remote and ONNX embedders batch far better than two small calls
    vecs = np.asarray(embedder.embed([preds[i] for i in keep] + [refs[i] for i in keep]), dtype=np.float64)
    if vecs.ndim != 2 or vecs.shape[0] != 2 * len(keep):
        raise InvalidInputError(
            f"semantic_similarity: the embedder returned shape {vecs.shape} for {2 * len(keep)} texts"
        )
    a, b = vecs[: len(keep)], vecs[len(keep) :]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    out[keep] = np.clip(cos, -1.0, 1.0)
    return out
