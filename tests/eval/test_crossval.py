"""Cross-validation with nested selection and the paired bootstrap (kvgraph.eval.crossval), on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.eval.crossval import (
    cross_validate,
    make_folds,
    paired_bootstrap,
    repeated_cross_validation,
)


def test_folds_partition_the_questions_reproducibly() -> None:
    folds = make_folds(23, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    assert [f.tolist() for f in folds] == [f.tolist() for f in make_folds(23, 5, seed=3)]
    assert [f.tolist() for f in folds] != [f.tolist() for f in make_folds(23, 5, seed=4)]
    with pytest.raises(InvalidInputError, match="folds"):
        make_folds(10, 1)
    with pytest.raises(InvalidInputError, match="cannot split 3"):
        make_folds(3, 5)


def test_a_clearly_best_config_is_chosen_on_every_fold_and_held_out_equals_its_scores() -> None:
    rng = np.random.default_rng(0)
    n = 200
    base = rng.random((6, n)) < 0.5  # six configs of coin flips ...
    base[4] = rng.random(n) < 0.9  # ... and one that is right 90% of the time
    r2 = base.astype(float)
    r5 = np.maximum(r2, rng.random((6, n)) < 0.3).astype(float)
    names = [f"config {i}" for i in range(6)]
    cv = cross_validate({"recall@2": r2, "recall@5": r5}, names, make_folds(n, 5, seed=1))
    assert [c.config for c in cv.choices] == ["config 4"] * 5 and cv.stable()
    assert np.array_equal(cv.held_out["recall@2"], r2[4]) and np.array_equal(cv.held_out["recall@5"], r5[4])
    assert cv.in_sample_config == "config 4"
    assert cv.held_out_means()["recall@2"] == pytest.approx(r2[4].mean())
    assert sum(c.n_test for c in cv.choices) == n
    assert cv.to_dict()["same_choice_on_every_fold"] is True


def test_selection_never_sees_the_held_out_fold() -> None:
    # Config 1 is perfect on questions 0-9 and useless elsewhere; config 0 is fair everywhere. When
    # questions 0-9 are the held-out fold, training cannot know config 1 is perfect there.
    n = 20
    fair = np.full(n, 0.6)
    spiky = np.zeros(n)
    spiky[:10] = 1.0
    folds = [np.arange(10), np.arange(10, 20)]
    cv = cross_validate({"score": np.stack([fair, spiky])}, ["fair", "spiky"], folds)
    # fold 0 (questions 0-9) trains on 10-19, where spiky scores 0: fair is chosen, and scores 0.6 there
    assert cv.choices[0].config == "fair" and cv.choices[0].test_means["score"] == pytest.approx(0.6)
    # fold 1 trains on 0-9, where spiky is perfect: spiky is chosen and scores 0 held out
    assert cv.choices[1].config == "spiky" and cv.choices[1].test_means["score"] == 0.0
    assert cv.held_out_means()["score"] == pytest.approx(0.3)  # far below the in-sample best (0.6)
    assert cv.in_sample_means()["score"] == pytest.approx(0.6)


def test_ties_go_to_the_first_config_in_grid_order_and_the_objective_picks_metrics() -> None:
    n = 10
    a = np.ones((3, n))
    b = np.zeros((3, n))
    b[2] = 1.0  # only the second metric separates the configs
    folds = make_folds(n, 2, seed=0)
    cv = cross_validate({"m1": a, "m2": b}, ["x", "y", "z"], folds, objective=["m1"])
    assert {c.config for c in cv.choices} == {"x"} and all(c.tied_configs == 3 for c in cv.choices)
    cv2 = cross_validate({"m1": a, "m2": b}, ["x", "y", "z"], folds)
    assert {c.config for c in cv2.choices} == {"z"}
    with pytest.raises(InvalidInputError, match="objective"):
        cross_validate({"m1": a}, ["x", "y", "z"], folds, objective=["recall"])
    with pytest.raises(InvalidInputError, match="partition"):
        cross_validate({"m1": a}, ["x", "y", "z"], [np.arange(5)])
    with pytest.raises(InvalidInputError, match="names"):
        cross_validate({"m1": a}, ["x", "y"], folds)


def test_bootstrap_intervals_cover_the_true_difference() -> None:
    # a is better than b by 0.1 on average; noise per question. The 95% interval should contain 0.1
    # in roughly 95% of repeated experiments (percentile bootstrap: somewhat less for small n).
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for t in range(trials):
        b = rng.normal(0.5, 0.2, 80)
        a = b + 0.1 + rng.normal(0, 0.3, 80)
        diff = paired_bootstrap(a, b, seed=t, resamples=1000, scale=1.0)
        covered += diff.ci_low <= 0.1 <= diff.ci_high
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_reports_mean_counts_and_excludes_zero_only_for_a_real_difference() -> None:
    b = np.array([0.0, 0.5, 1.0, 1.0, 0.5] * 20)
    better = np.minimum(b + 0.5, 1.0)
    d = paired_bootstrap(better, b, seed=0)
    assert d.mean_diff == pytest.approx(100 * (better - b).mean())
    assert (d.better, d.worse, d.equal) == (60, 0, 40)
    assert d.excludes_zero() and d.ci_low > 0 and d.p_boot_le_0 == 0.0
    same = paired_bootstrap(b, b[::-1].copy(), seed=0)
    assert not same.excludes_zero()
    assert paired_bootstrap(better, b, seed=0).to_dict() == d.to_dict()  # seeded: reproducible
    assert d.format().startswith("+") and "60/0" in d.format()
    with pytest.raises(InvalidInputError, match="equal"):
        paired_bootstrap(b, b[:3])


def test_repeated_cross_validation_summarises_several_splits() -> None:
    rng = np.random.default_rng(1)
    scores = (rng.random((4, 60)) < np.array([[0.3], [0.5], [0.55], [0.4]])).astype(float)
    rep = repeated_cross_validation({"hit": scores}, list("abcd"), k=5, seeds=range(6))
    each = [
        cross_validate({"hit": scores}, list("abcd"), make_folds(60, 5, s)).held_out_means()["hit"] for s in range(6)
    ]
    assert rep["hit"] == pytest.approx({"mean": np.mean(each), "min": min(each), "max": max(each)})
