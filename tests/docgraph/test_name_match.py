"""NameMatcher: the projection bound prunes rows but never changes the answer of the full product."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.docgraph import name_match
from kvgraph.docgraph.build import packed_unit_rows, quantize_rows
from kvgraph.docgraph.name_match import NameMatcher


def unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def names_like(n: int, dim: int, seed: int) -> np.ndarray:
    """Anisotropic unit rows, as sentence embeddings are: a few strong directions plus noise."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((48, dim)) * 3.0
    return unit(topics[rng.integers(0, 48, n)] + rng.standard_normal((n, dim)))


def full_product(vectors: np.ndarray, queries: np.ndarray, threshold: float) -> list[int]:
    sims = queries @ vectors.T
    best = sims.argmax(axis=1)
    return [int(b) if sims[i, b] >= threshold else -1 for i, b in enumerate(best)]


@pytest.mark.parametrize("threshold", [0.5, 0.85, 0.95])
def test_the_bounded_search_gives_the_full_products_answers(threshold: float) -> None:
    vectors = names_like(name_match.PROJECT_FROM + 5000, 384, seed=1)
    rng = np.random.default_rng(2)
    noise = unit(rng.standard_normal((40, 384))) * np.linspace(0.05, 1.5, 40)[:, None]  # cosines ~1.0 down to ~0.5
    near = unit(vectors[rng.integers(0, len(vectors), 40)] + noise)
    far = names_like(40, 384, seed=3)
    queries = np.concatenate([near, far])
    matcher = NameMatcher(vectors)
    assert matcher.basis is not None  # the projected path, not the small-matrix one
    got = matcher.best(queries, threshold)
    assert got == full_product(vectors, queries, threshold)
    assert 0 < sum(g >= 0 for g in got) < len(queries)  # both matches and misses were exercised


def test_exact_duplicates_and_small_matrices() -> None:
    vectors = names_like(name_match.PROJECT_FROM + 10, 384, seed=4)
    vectors[7] = vectors[3]  # a tie: the lower row wins, as argmax over every row picks
    assert NameMatcher(vectors).best(vectors[[3, 10, 20]], 0.99) == [3, 10, 20]
    small = vectors[:100]
    matcher = NameMatcher(small)
    assert matcher.basis is None
    assert matcher.best(small[[5]], 0.99) == [5]
    assert matcher.best(np.zeros((0, 384), np.float32), 0.5) == []
    assert NameMatcher(np.zeros((0, 384), np.float32)).best(small[[1]], 0.5) == [-1]


def test_packed_int8_rows_give_the_same_answers_as_their_floats() -> None:
    vectors = names_like(name_match.PROJECT_FROM + 3000, 384, seed=7)
    packed = quantize_rows(vectors)
    floats = packed_unit_rows(packed)  # what a saved graph's rows are once unpacked
    rng = np.random.default_rng(8)
    noise = unit(rng.standard_normal((30, 384))) * np.linspace(0.05, 1.2, 30)[:, None]
    queries = unit(floats[rng.integers(0, len(floats), 30)] + noise)
    from_packed = NameMatcher(packed=packed)
    assert from_packed.vectors is None and from_packed.basis is not None  # never unpacked whole
    # Projected from the int8 rows and scaled after, the bound's columns are those of the floats.
    np.testing.assert_allclose(from_packed.projected, NameMatcher(floats).projected, atol=1e-5)
    got = from_packed.best(queries, 0.85)
    assert got == NameMatcher(floats).best(queries, 0.85) == full_product(floats, queries, 0.85)
    assert any(g >= 0 for g in got) and any(g < 0 for g in got)
    small = NameMatcher(packed=packed[:50])  # small: unpacked once
    assert small.vectors is not None and small.best(floats[[4]], 0.99) == [4]
    with pytest.raises(ValueError, match="no name vectors"):
        NameMatcher()
