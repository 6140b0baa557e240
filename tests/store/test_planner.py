"""The planner's rule, as a pure function of sizes."""

import math

import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.store.planner import ANN_COST_PER_EF, FILTER_POOL_FACTOR, MAX_EF, choose_plan


def plan(**kw):
    args = dict(k=10, n_slots=1_000_000, n_live=1_000_000, n_allowed=None, indexed=1_000_000, ef_search=128)
    args.update(kw)
    return choose_plan(**args)


def test_no_index_means_exact():
    assert plan(indexed=0).kind == "exact"
    assert plan(indexed=0, strategy="ann").kind == "exact"


def test_partial_index_is_used_only_past_half_or_when_forced():
    assert plan(indexed=400_000).kind == "exact"
    assert plan(indexed=600_000).kind == "ann"
    assert plan(indexed=400_000, strategy="ann").kind == "ann"


def test_unfiltered_uses_ann_at_base_depth():
    p = plan()
    assert p.kind == "ann" and p.ef == 128
    assert plan(k=500).ef == 500  # depth never below k


def test_depth_grows_as_the_filter_narrows():
    broad, narrower = plan(n_allowed=500_000), plan(n_allowed=100_000)
    assert broad.kind == narrower.kind == "ann"
    assert narrower.ef > broad.ef
    # depth for a pool holding FILTER_POOL_FACTOR * k allowed nodes, never below ef_search
    assert narrower.ef == min(MAX_EF, max(128, math.ceil(FILTER_POOL_FACTOR * 10 / 0.1)))
    assert broad.ef == max(128, math.ceil(FILTER_POOL_FACTOR * 10 / 0.5))
    assert plan(k=50, n_allowed=100_000).ef > narrower.ef  # deeper for more results


def test_selective_filters_go_exact():
    # 1% of 1M: 10k rows exact is cheaper than ef capped at MAX_EF
    assert plan(n_allowed=10_000).kind == "exact"
    assert plan(n_allowed=1_000).kind == "exact"
    assert plan(n_allowed=0).kind == "exact"


def test_crossover_follows_the_cost_constant():
    # at the crossover, exact cost (allowed rows) equals ANN_COST_PER_EF * ef
    for n_allowed in (20_000, 50_000, 100_000, 200_000):
        ef = min(MAX_EF, max(128, math.ceil(FILTER_POOL_FACTOR * 10 * 1_000_000 / n_allowed)))
        expected = "exact" if n_allowed <= ANN_COST_PER_EF * ef else "ann"
        assert plan(n_allowed=n_allowed).kind == expected


def test_forcing():
    assert plan(n_allowed=10, strategy="ann").kind == "ann"
    assert plan(strategy="exact").kind == "exact"
    assert plan(n_allowed=100_000, ef_override=50).ef == 50
    with pytest.raises(InvalidInputError, match="strategy"):
        plan(strategy="fast")
