"""SQuAD answer metrics against hand-computed values, and embedding similarity."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.embed.hashing import HashingEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.eval.answer_metrics import exact_match, normalize_answer, semantic_similarity, token_f1


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    # punctuation is removed before articles, as in the official script
    assert normalize_answer("the-end") == "theend"
    assert normalize_answer("Theatre") == "theatre"  # "the" only as a whole word
    assert normalize_answer("  ") == ""


def test_exact_match() -> None:
    assert exact_match("the Eiffel Tower", "Eiffel tower!") == 1.0
    assert exact_match("Eiffel", ["Eiffel tower", "the Eiffel Tower"]) == 0.0
    assert exact_match("Denver Broncos", ["Carolina Panthers", "denver broncos."]) == 1.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_partial() -> None:
    # pred "the Eiffel Tower in Paris" -> [eiffel, tower, in, paris]; gold "Eiffel Tower" -> [eiffel, tower]
    # common 2: precision 2/4, recall 2/2, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert token_f1("the Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx(2 / 3)
    # pred [denver, broncos, won] vs gold [broncos]: P 1/3, R 1, F1 = 2*(1/3)/(4/3) = 0.5;
    # vs gold [denver, broncos]: P 2/3, R 1, F1 = 0.8 -> max 0.8
    assert token_f1("Denver Broncos won", ["Broncos", "Denver Broncos"]) == pytest.approx(0.8)
    # bag of tokens: a repeated token counts as often as it occurs in both
    # pred [new, new, york] vs gold [new, york]: common 2, P 2/3, R 1 -> 0.8
    assert token_f1("new new york", "New York") == pytest.approx(0.8)
    assert token_f1("the Eiffel Tower", "Eiffel tower!") == 1.0
    assert token_f1("", "Eiffel Tower") == 0.0
    assert token_f1("Paris", "London") == 0.0
    assert token_f1("Paris", []) == 0.0


def test_semantic_similarity() -> None:
    emb = HashingEmbedder(dim=64)
    sims = semantic_similarity(
        emb, ["Paris is in France", "", "x y z", "Paris"], ["Paris is in France", "a", "", "Rome"]
    )
    assert sims.shape == (4,) and sims.dtype == np.float64
    assert sims[0] == pytest.approx(1.0)
    assert sims[1] == 0.0 and sims[2] == 0.0  # blank prediction or reference: 0, not an error
    assert -1.0 <= sims[3] <= 1.0
    assert semantic_similarity(emb, [], []).shape == (0,)
    with pytest.raises(InvalidInputError, match="2 predictions but 1"):
        semantic_similarity(emb, ["a", "b"], ["a"])
