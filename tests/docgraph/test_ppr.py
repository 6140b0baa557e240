"""Personalized PageRank and k-hop expansion against hand computations and a dense reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kvgraph.docgraph.csr import Csr, first_seen
from kvgraph.docgraph.ppr import (
    _owner_then_heaviest,
    k_hop,
    personalized_pagerank,
    personalized_pagerank_undirected,
    transition_matrix,
)
from kvgraph.errors import InvalidInputError


def undirected(n: int, edges: list[tuple[int, int, float]]) -> Csr:
    rows = [a for a, b, _ in edges] + [b for a, b, _ in edges]
    cols = [b for a, b, _ in edges] + [a for a, b, _ in edges]
    data = [w for *_, w in edges] * 2
    return Csr.from_edges(np.array(rows), np.array(cols), np.array(data), (n, n))


def dense_reference(adjacency: np.ndarray, s: np.ndarray, damping: float) -> np.ndarray:
    """Solve p = d (T p + dangling mass * s) + (1 - d) s exactly with a dense linear solve."""
    n = adjacency.shape[0]
    out = adjacency.sum(axis=1)
    t = np.zeros((n, n))
    for i in range(n):
        if out[i] > 0:
            t[:, i] = adjacency[i] / out[i]
        else:
            t[:, i] = s / s.sum()  # dangling column: back to the personalization
    s = s / s.sum()
    return np.linalg.solve(np.eye(n) - damping * t, (1 - damping) * s)


def test_two_nodes_by_hand() -> None:
    # 0 <-> 1, restart at 0: p0 = (1-d) + d p1, p1 = d p0  =>  p0 = 1/(1+d), p1 = d/(1+d)
    t, dangling = transition_matrix(undirected(2, [(0, 1, 1.0)]))
    for d in (0.5, 0.85):
        p = personalized_pagerank(t, np.array([1.0, 0.0]), damping=d, tol=1e-12, max_iter=500, dangling=dangling)
        assert p == pytest.approx([1 / (1 + d), d / (1 + d)], abs=1e-9)


def test_star_by_hand_mass_splits_by_weight() -> None:
    # centre 0 with leaves 1 (weight 3) and 2 (weight 1); restart at 0, d = 0.5
    # p1 = d * 3/4 * p0, p2 = d * 1/4 * p0, p0 = (1-d) + d (p1 + p2) = 1/2 + p0/4  =>  p0 = 2/3
    t, dangling = transition_matrix(undirected(3, [(0, 1, 3.0), (0, 2, 1.0)]))
    p = personalized_pagerank(t, np.array([1.0, 0, 0]), damping=0.5, tol=1e-12, dangling=dangling)
    assert p == pytest.approx([2 / 3, 0.25, 1 / 12], abs=1e-9)


def test_matches_dense_reference_on_random_directed_graph_with_dangling_nodes() -> None:
    rng = np.random.default_rng(7)
    n = 30
    a = (rng.random((n, n)) < 0.1) * rng.random((n, n))
    a[[3, 11, 20]] = 0.0  # three dangling nodes: no out-edges
    s = np.zeros(n)
    s[[0, 3, 5]] = [0.5, 0.3, 0.2]
    t, dangling = transition_matrix(Csr.from_dense(a))
    assert dangling[[3, 11, 20]].all()
    for d in (0.3, 0.5, 0.85):
        p = personalized_pagerank(t, s, damping=d, tol=1e-13, max_iter=1000, dangling=dangling)
        assert p.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(p, dense_reference(a, s, d), atol=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_conjugate_gradients_match_the_dense_reference_on_undirected_graphs(seed: int) -> None:
    """The bounded walk's solver: isolated nodes (the walk's dangling ones) and uneven weights."""
    rng = np.random.default_rng(seed)
    n = 40
    a = np.triu((rng.random((n, n)) < 0.12) * rng.random((n, n)) * 5, k=1)
    a = a + a.T
    a[[4, 17], :] = 0.0  # isolated: one holds restart weight, the other none
    a[:, [4, 17]] = 0.0
    s = np.zeros(n)
    s[[0, 4, 9]] = [0.6, 0.1, 0.3]
    for d in (0.0, 0.5, 0.7, 0.85):
        exact = dense_reference(a, s, d)
        p = personalized_pagerank_undirected(Csr.from_dense(a), s, damping=d, tol=1e-12)
        assert p.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(p, exact, atol=1e-10)
        # the default stopping point is closer to the exact walk than power iteration at 1e-6
        t, dangling = transition_matrix(Csr.from_dense(a))
        power = personalized_pagerank(t, s, damping=d, tol=1e-6, dangling=dangling)
        default = personalized_pagerank_undirected(Csr.from_dense(a), s, damping=d)
        assert np.abs(default - exact).sum() <= max(np.abs(power - exact).sum(), 1e-12)
    with pytest.raises(InvalidInputError, match="not all zero"):
        personalized_pagerank_undirected(Csr.from_dense(a), np.zeros(n))
    with pytest.raises(InvalidInputError, match="damping"):
        personalized_pagerank_undirected(Csr.from_dense(a), s, damping=1.0)


def test_transition_columns_sum_to_one_except_dangling() -> None:
    a = Csr.from_dense(np.array([[0, 2.0, 2.0], [1.0, 0, 0], [0, 0, 0]]))
    t, dangling = transition_matrix(a)
    assert t.toarray().sum(axis=0) == pytest.approx([1, 1, 0])
    assert dangling.tolist() == [False, False, True]


def test_converges_early_and_max_iter_bounds_work() -> None:
    t, dangling = transition_matrix(undirected(3, [(0, 1, 1.0), (1, 2, 1.0)]))
    s = np.array([1.0, 0, 0])
    one_step = personalized_pagerank(t, s, damping=0.5, max_iter=1, dangling=dangling)
    converged = personalized_pagerank(t, s, damping=0.5, tol=1e-12, max_iter=1000, dangling=dangling)
    # one step from p = s moves half the mass to node 1 and none yet to node 2
    assert one_step == pytest.approx([0.5, 0.5, 0.0])
    assert converged[2] > 0
    np.testing.assert_allclose(converged, dense_reference(undirected(3, [(0, 1, 1), (1, 2, 1)]).toarray(), s, 0.5))


def test_damping_zero_returns_the_personalization() -> None:
    t, dangling = transition_matrix(undirected(3, [(0, 1, 1.0), (1, 2, 1.0)]))
    p = personalized_pagerank(t, np.array([2.0, 0, 2.0]), damping=0.0, dangling=dangling)
    assert p == pytest.approx([0.5, 0, 0.5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"personalization": np.zeros(3)},
        {"personalization": np.array([1.0, -1.0, 0])},
        {"personalization": np.array([1.0, 0])},
        {"personalization": np.array([1.0, 0, 0]), "damping": 1.0},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    t, _ = transition_matrix(undirected(3, [(0, 1, 1.0)]))
    with pytest.raises(InvalidInputError):
        personalized_pagerank(t, **kwargs)


def test_negative_weights_rejected() -> None:
    with pytest.raises(InvalidInputError, match="negative"):
        transition_matrix(Csr.from_dense(np.array([[0, -1.0], [1.0, 0]])))


def chain(n: int) -> Csr:
    return undirected(n, [(i, i + 1, 1.0) for i in range(n - 1)])


def test_k_hop_bounded_by_hops_with_paths() -> None:
    exp = k_hop(chain(6), [0], max_hops=2)
    assert exp.nodes.tolist() == [0, 1, 2]
    assert exp.hops.tolist() == [0, 1, 2]
    assert exp.path(2) == [0, 1, 2]
    assert 3 not in exp
    with pytest.raises(KeyError):
        exp.path(3)


def test_k_hop_zero_hops_is_the_seeds() -> None:
    exp = k_hop(chain(4), [2, 2, 0], max_hops=0)
    assert exp.nodes.tolist() == [2, 0]
    assert exp.path(0) == [0]


def test_k_hop_max_nodes_prefers_earlier_seeds_and_heavier_edges() -> None:
    # seeds 0 and 5; 0 has neighbours 1 (w 1) and 2 (w 5); 5 has neighbour 6
    g = undirected(7, [(0, 1, 1.0), (0, 2, 5.0), (5, 6, 1.0), (2, 3, 1.0)])
    exp = k_hop(g, [0, 5], max_hops=3, max_nodes=4)
    assert exp.nodes.tolist() == [0, 5, 2, 1]
    full = k_hop(g, [0, 5], max_hops=3)
    assert set(full.nodes.tolist()) == {0, 1, 2, 3, 5, 6}
    assert full.path(3) == [0, 2, 3]
    assert full.path(6) == [5, 6]


def test_k_hop_shortest_paths_on_random_graph_match_bfs() -> None:
    rng = np.random.default_rng(3)
    n = 40
    a = Csr.from_dense((rng.random((n, n)) < 0.06).astype(float))
    exp = k_hop(a, [0], max_hops=n)
    # reference BFS distances
    dist = {0: 0}
    frontier = [0]
    while frontier:
        nxt = []
        for u in frontier:
            for v in a.indices[a.indptr[u] : a.indptr[u + 1]]:
                if int(v) not in dist:
                    dist[int(v)] = dist[u] + 1
                    nxt.append(int(v))
        frontier = nxt
    assert dict(zip(exp.nodes.tolist(), exp.hops.tolist())) == dist
    for v in exp.nodes.tolist():
        path = exp.path(v)
        assert len(path) == dist[v] + 1
        assert all(a.toarray()[x, y] > 0 for x, y in itertools.pairwise(path))


def reference_k_hop(
    a: Csr, seeds: list[int], max_hops: int, max_nodes: int | None, max_edges: int | None
) -> tuple[list[int], list[int], list[int]]:
    """k_hop's documented order, one node and one edge at a time: per step, frontier nodes in order
    (only those whose rows fit the edge budget), each row's neighbours heaviest first (ties: column
    order), a node kept the first time it is seen, until ``max_nodes``."""
    nodes = list(dict.fromkeys(seeds))
    hops, preds = [0] * len(nodes), [-1] * len(nodes)
    seen, frontier, budget = set(nodes), list(nodes), max_edges
    for hop in range(1, max_hops + 1):
        if not frontier or (max_nodes is not None and len(nodes) >= max_nodes):
            break
        expanded = []
        for u in frontier:
            length = int(a.indptr[u + 1] - a.indptr[u])
            if budget is not None:
                if length > budget:
                    break
                budget -= length
            expanded.append(u)
        new: list[int] = []
        for u in expanded:
            lo, hi = int(a.indptr[u]), int(a.indptr[u + 1])
            row = sorted(zip(a.indices[lo:hi].tolist(), a.data[lo:hi].tolist()), key=lambda cw: -cw[1])
            for v, _ in row:
                if v not in seen and (max_nodes is None or len(nodes) < max_nodes):
                    seen.add(v)
                    nodes.append(v)
                    hops.append(hop)
                    preds.append(u)
                    new.append(v)
        if not expanded or not sum(int(a.indptr[u + 1] - a.indptr[u]) for u in expanded):
            break
        frontier = new
    return nodes, hops, preds


@pytest.mark.parametrize("seed", range(12))
def test_k_hop_matches_the_one_edge_at_a_time_reference(seed: int) -> None:
    # Weights drawn from few values (ties between a row's edges) and from many; bounds that cut
    # inside a step, and none.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    m = int(rng.integers(n, 6 * n))
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    weights = rng.choice([0.5, 1.0, 2.0], m) if seed % 2 else rng.random(m) + 0.01
    keep = src != dst
    a = undirected(n, list(zip(src[keep].tolist(), dst[keep].tolist(), weights[keep].tolist())))
    seeds = rng.choice(n, int(rng.integers(1, 5)), replace=False).tolist()
    for max_nodes, max_edges in ((None, None), (n // 3, None), (None, m // 2), (n // 4, m // 3)):
        got = k_hop(a, seeds, max_hops=3, max_nodes=max_nodes, max_edges=max_edges)
        want = reference_k_hop(a, seeds, 3, max_nodes, max_edges)
        assert (got.nodes.tolist(), got.hops.tolist(), got.predecessor.tolist()) == want


@pytest.mark.parametrize("weights", ["ties", "zeros", "negative", "empty"])
def test_owner_then_heaviest_is_the_lexsort_order(weights: str) -> None:
    rng = np.random.default_rng(5)
    ranks = np.sort(rng.integers(0, 40, 500))
    w = {
        "ties": rng.choice([0.25, 0.5, 1.0], 500),
        "zeros": np.zeros(500),
        "negative": rng.standard_normal(500),  # not an adjacency's, but the order is still lexsort's
        "empty": np.zeros(0),
    }[weights]
    if weights == "empty":
        ranks = ranks[:0]
    assert _owner_then_heaviest(ranks, w).tolist() == np.lexsort((-w, ranks)).tolist()


def test_first_seen_marks_first_occurrences() -> None:
    cols = np.array([4, 2, 4, 9, 2, 2, 0, 9])
    assert np.flatnonzero(first_seen(cols, 10)).tolist() == [0, 1, 3, 6]
    assert np.flatnonzero(first_seen(cols, 10)).tolist() == [0, 1, 3, 6]  # the table was reset
    assert np.flatnonzero(first_seen(cols[::-1], 12)).tolist() == [0, 1, 2, 5]  # another size, its own table
    assert first_seen(np.array([], dtype=np.int64), 10).tolist() == []
    rng = np.random.default_rng(0)
    values = rng.integers(0, 50, 400)
    _, first = np.unique(values, return_index=True)
    assert np.flatnonzero(first_seen(values, 50)).tolist() == sorted(first.tolist())


def test_k_hop_rejects_out_of_range_seed() -> None:
    with pytest.raises(InvalidInputError, match="seed"):
        k_hop(chain(3), [5])


def star_of_stars(arms: int, leaves: int) -> Csr:
    """Node 0 joined to ``arms`` hubs, each hub to its own ``leaves`` leaves."""
    edges = []
    for h in range(arms):
        hub = 1 + h
        edges.append((0, hub, 1.0))
        first_leaf = 1 + arms + h * leaves
        edges += [(hub, first_leaf + j, 1.0) for j in range(leaves)]
    return undirected(1 + arms + arms * leaves, edges)


def test_k_hop_max_edges_bounds_the_work_not_the_seeds() -> None:
    g = star_of_stars(arms=4, leaves=10)  # the centre has 4 edges, each hub 11
    full = k_hop(g, [0], max_hops=2)
    assert full.nodes.size == 1 + 4 + 40
    # 4 edges for the centre, then room for two hubs' rows (22) but not a third (33 > 30 - 4)
    bounded = k_hop(g, [0], max_hops=2, max_edges=30)
    assert bounded.nodes.tolist()[:5] == [0, 1, 2, 3, 4]  # every hub is reached ...
    assert bounded.nodes.size == 1 + 4 + 20  # ... but only the first two are expanded
    assert set(bounded.predecessor[bounded.hops == 2].tolist()) == {1, 2}  # 4 + 11 + 11 edges read
    assert set(bounded.nodes.tolist()) <= set(full.nodes.tolist())
    assert bounded.path(int(bounded.nodes[-1])) == [0, 2, int(bounded.nodes[-1])]
    # a budget below the seeds' own rows still returns the seeds
    assert k_hop(g, [0, 7], max_hops=2, max_edges=1).nodes.tolist() == [0, 7]
    assert k_hop(g, [0], max_hops=2, max_edges=10**9).nodes.tolist() == full.nodes.tolist()
    with pytest.raises(InvalidInputError, match="max_edges"):
        k_hop(g, [0], max_edges=0)


def test_expansion_positions_find_reached_nodes_only() -> None:
    exp = k_hop(chain(8), [5, 1], max_hops=1)
    assert exp.nodes.tolist() == [5, 1, 4, 6, 0, 2]
    assert exp.positions([0, 5, 3, 6, 7]).tolist() == [4, 0, -1, 3, -1]
    assert 2 in exp and 3 not in exp


def test_csr_operations_match_dense_arithmetic() -> None:
    rng = np.random.default_rng(3)
    dense = (rng.random((40, 40)) < 0.15) * rng.random((40, 40))
    dense[[4, 17]] = 0.0  # empty rows
    rows, cols = np.nonzero(dense)
    # Repeated edges are summed: split every weight in two entries, shuffled.
    order = rng.permutation(rows.size * 2)
    a = Csr.from_edges(
        np.r_[rows, rows][order],
        np.r_[cols, cols][order],
        np.r_[dense[rows, cols], dense[rows, cols]][order] / 2,
        (40, 40),
    )
    np.testing.assert_allclose(a.toarray(), dense)
    assert a.nnz == rows.size
    np.testing.assert_allclose(a.row_sums(), dense.sum(axis=1))
    np.testing.assert_allclose(a.T.toarray(), dense.T)
    x = rng.random(40)
    np.testing.assert_allclose(a @ x, dense @ x)
    np.testing.assert_allclose(a.scale_rows(x).toarray(), dense * x[:, None])
    keep = np.array([30, 2, 17, 9, 4, 25])
    np.testing.assert_allclose(a.submatrix(keep).toarray(), dense[keep][:, keep])
    assert a.submatrix(np.array([], dtype=np.int64)).shape == (0, 0)


def test_csr_rejects_edges_outside_and_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="outside"):
        Csr.from_edges(np.array([0]), np.array([5]), np.array([1.0]), (3, 3))
    with pytest.raises(ValueError, match="differ in length"):
        Csr.from_edges(np.array([0, 1]), np.array([1]), np.array([1.0]), (3, 3))
    with pytest.raises(ValueError, match="times a vector"):
        Csr.from_dense(np.eye(3)) @ np.ones(4)


def test_submatrix_searches_hub_rows_and_matches_reading_them() -> None:
    rng = np.random.default_rng(5)
    n = 600
    dense = (rng.random((n, n)) < 0.01) * rng.random((n, n))
    dense[0, 1:] = rng.random(n - 1) + 0.1  # a hub: its row is far longer than the kept nodes
    dense[1:, 0] = dense[0, 1:]
    dense[7, 8:] = 0.5  # another long row, not symmetric
    a = Csr.from_dense(dense)
    assert a.sorted_rows
    for keep in ([0, 5, 17, 300], [300, 7, 0, 599, 8], [0]):
        sub = a.submatrix(np.array(keep))
        np.testing.assert_allclose(sub.toarray(), dense[keep][:, keep])
        # read whole (rows not known to be sorted): the same matrix
        unsorted = Csr(a.indptr, a.indices, a.data, a.shape)
        np.testing.assert_allclose(unsorted.submatrix(np.array(keep)).toarray(), dense[keep][:, keep])
    x = rng.random(4)
    sub = a.submatrix(np.array([0, 5, 17, 300]))
    np.testing.assert_allclose(sub @ x, dense[[0, 5, 17, 300]][:, [0, 5, 17, 300]] @ x)
