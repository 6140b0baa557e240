"""Graph walks on a sparse adjacency: personalized PageRank and bounded k-hop expansion.

Pure functions, numpy in and out, no graph store: the knowledge-vector-graph retriever
(:mod:`kvgraph.retrieve.graph`) runs them per query on a :class:`~kvgraph.docgraph.csr.Csr`
matrix built once from the graph, so a query costs a few sparse matrix-vector products.

Conventions: ``adjacency[i, j]`` is the weight of the edge ``i -> j`` (row = source). For an
undirected walk pass a symmetric matrix. Weights must be non-negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvgraph.docgraph.csr import Csr, Transposed, first_seen
from kvgraph.errors import InvalidInputError


def _check_square(adjacency: Csr) -> Csr:
    if adjacency.shape[0] != adjacency.shape[1]:
        raise InvalidInputError(f"adjacency must be a square matrix, got shape {adjacency.shape}")
    if adjacency.nnz and adjacency.data.min() < 0:
        raise InvalidInputError("adjacency has negative edge weights; PageRank needs weights >= 0")
    return adjacency


def transition_matrix(adjacency: Csr) -> tuple[Transposed, np.ndarray]:
    """The column-stochastic matrix ``T`` with ``T[j, i] = w(i -> j) / out_weight(i)``, and the dangling mask.

    ``T @ p`` moves the mass ``p`` one step along the edges. Nodes without out-weight
    (dangling) have an all-zero column; :func:`personalized_pagerank` hands their mass back
    to the personalization vector. Compute it once per graph and pass it to every query.
    """
    a = _check_square(adjacency)
    out = a.row_sums()
    dangling = out <= 0
    inv = np.zeros_like(out)
    inv[~dangling] = 1.0 / out[~dangling]
    # Row-normalise (divide each row i by out_weight(i)), then transpose: columns sum to 1.
    t = a.scale_rows(inv).transpose()
    return t, dangling


def _restart_vector(personalization: np.ndarray, n: int, damping: float) -> np.ndarray:
    """The personalization of a walk over ``n`` nodes, checked and scaled to sum 1 (and ``damping`` checked)."""
    s = np.asarray(personalization, dtype=np.float64).ravel()
    if s.shape[0] != n:
        raise InvalidInputError(f"personalization has {s.shape[0]} entries but the graph has {n} nodes")
    if not np.all(np.isfinite(s)) or (s.size and s.min() < 0):
        raise InvalidInputError("personalization must be finite and non-negative")
    total = s.sum()
    if total <= 0:
        raise InvalidInputError("personalization must be not all zero: give at least one seed node a positive weight")
    if not 0.0 <= damping < 1.0:
        raise InvalidInputError(f"damping must be in [0, 1), got {damping!r}")
    return np.asarray(s / total)


def personalized_pagerank(
    transition: Transposed,
    personalization: np.ndarray,
    damping: float = 0.5,
    tol: float = 1e-8,
    max_iter: int = 100,
    dangling: np.ndarray | None = None,
) -> np.ndarray:
    """Personalized PageRank by power iteration; returns a probability vector (sums to 1).

    ``transition`` comes from :func:`transition_matrix`; ``personalization`` is a non-negative
    vector (normalised here) where the walk restarts. At each step the walker follows an edge
    with probability ``damping`` and jumps back to the personalization with ``1 - damping``;
    mass on a dangling node (``dangling`` mask) jumps back too, so none is lost. Iterates until
    the L1 change is below ``tol`` or ``max_iter`` steps.
    """
    n = transition.shape[0]
    s = _restart_vector(personalization, n, damping)
    if max_iter < 1:
        raise InvalidInputError(f"max_iter must be >= 1, got {max_iter!r}")
    dangling_mask = np.zeros(n, dtype=bool) if dangling is None else np.asarray(dangling, dtype=bool)
    p = s.copy()
    for _ in range(max_iter):
        lost = p[dangling_mask].sum()
        nxt = damping * (transition @ p + lost * s) + (1.0 - damping) * s
        done = np.abs(nxt - p).sum() < tol
        p = nxt
        if done:
            break
    return np.asarray(p / p.sum())


def personalized_pagerank_undirected(
    adjacency: Csr,
    personalization: np.ndarray,
    damping: float = 0.5,
    tol: float = 1e-8,
    max_iter: int = 200,
) -> np.ndarray:
    """:func:`personalized_pagerank` of an undirected graph (``adjacency`` symmetric), by conjugate gradients.

    The walk's fixed point solves ``(I - d T) p = c s`` with ``T = A D+`` (``D`` the degrees;
    a dangling node's mass returning to ``s`` only changes the scalar ``c``, and ``p`` is
    normalised at the end). With ``x = D^(1/2) y`` that is ``(I - d N) y = D^(-1/2) s`` where
    ``N = D^(-1/2) A D^(-1/2)`` is symmetric with eigenvalues in [-1, 1]: a positive definite
    system of condition at most ``(1 + d) / (1 - d)``, which conjugate gradients solve in about
    half the products power iteration needs (18 against 35 at ``d = 0.7`` on the bench graph's
    walks, ~0.6 ms of a 10 ms graph query at 10k chunks). Isolated nodes keep their restart
    weight. ``tol`` bounds the residual relative to the right-hand side (2-norm): at 1e-8 the
    result is within ~3e-7 (L1) of the exact vector, closer than power iteration at ``tol=1e-6``.
    """
    a = _check_square(adjacency)
    n = a.shape[0]
    s = _restart_vector(personalization, n, damping)
    rows, cols = a.row_ids(), a.indices
    degree = np.bincount(rows, weights=a.data, minlength=n)
    isolated = degree <= 0
    root = np.sqrt(np.maximum(degree, 0.0))
    inv_root = np.divide(1.0, root, out=np.zeros(n), where=~isolated)
    weights = a.data * inv_root[rows] * inv_root[cols]  # N's entries

    def times_n(v: np.ndarray) -> np.ndarray:
        return np.bincount(rows, weights=weights * v[cols], minlength=n)

    b = inv_root * s
    y = b.copy()  # x = s: the walk's first term
    r = b - (y - damping * times_n(y))
    direction = r.copy()
    rr = float(r @ r)
    stop = tol * tol * float(b @ b)
    for _ in range(max_iter):
        if rr <= stop:
            break
        q = direction - damping * times_n(direction)
        step = rr / float(direction @ q)
        y += step * direction
        r -= step * q
        rr_next = float(r @ r)
        direction *= rr_next / rr
        direction += r
        rr = rr_next
    x = root * y
    x[isolated] = s[isolated]
    return np.asarray(x / x.sum())


@dataclass
class Expansion:
    """Nodes reached by :func:`k_hop`: ``nodes`` in BFS order, their ``hops`` and BFS ``predecessor``.

    ``predecessor[i]`` is the node that first reached ``nodes[i]`` (``-1`` for a seed), so
    :meth:`path` rebuilds one shortest chain of edges from a seed.
    """

    nodes: np.ndarray
    hops: np.ndarray
    predecessor: np.ndarray

    def __post_init__(self) -> None:
        # Sorted node numbers for lookups by binary search: no per-node Python object per query.
        self._order = np.argsort(self.nodes)  # distinct numbers: any sort gives the same order
        self._sorted = self.nodes[self._order]

    def positions(self, nodes: np.ndarray | list[int]) -> np.ndarray:
        """Position of each of ``nodes`` in :attr:`nodes`, -1 for nodes not reached."""
        wanted = np.asarray(nodes, dtype=np.int64).ravel()
        at = np.searchsorted(self._sorted, wanted)
        found = at < self._sorted.size
        found[found] = self._sorted[at[found]] == wanted[found]
        return np.where(found, self._order[np.minimum(at, max(self._sorted.size - 1, 0))], -1)

    def __contains__(self, node: int) -> bool:
        return bool(self.positions([int(node)])[0] >= 0)

    def path(self, node: int) -> list[int]:
        """Node indices from a seed to ``node`` (both included); raises KeyError when not reached."""
        out = [int(node)]
        i = int(self.positions(out)[0])
        if i < 0:
            raise KeyError(node)
        while self.predecessor[i] >= 0:
            out.append(int(self.predecessor[i]))
            i = int(self.positions(out[-1:])[0])
        return out[::-1]


def _owner_then_heaviest(rank_of_owner: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The order of entries by frontier rank (``rank_of_owner``, non-decreasing), then heaviest first.

    What ``np.lexsort((-weight, rank_of_owner))`` gives, from one stable sort of one float key
    (2x faster on 30k entries): the weight, scaled into [0, 0.5], is subtracted from the integer
    rank. Two weights of one row closer than ~1e-10 of the largest weight (frontiers of up to a
    million nodes; ~1e-12 at ten thousand) tie and keep their column order, where lexsort would
    still tell them apart; edge weights come from float32 similarities and per-type factors.
    """
    if not weight.size or weight.min() < 0:  # (the scaling needs weights >= 0)
        return np.lexsort((-weight, rank_of_owner))
    top = float(weight.max())
    if top <= 0:
        return np.arange(rank_of_owner.size)
    return np.argsort(rank_of_owner - weight * (0.5 / top), kind="stable")


def k_hop(
    adjacency: Csr,
    seeds: np.ndarray | list[int],
    max_hops: int = 2,
    max_nodes: int | None = None,
    max_edges: int | None = None,
) -> Expansion:
    """Breadth-first expansion from ``seeds`` along the edges of ``adjacency`` (row -> column).

    Stops after ``max_hops`` steps or once ``max_nodes`` nodes are reached (the seeds always
    count, and within a step, neighbours of earlier-listed nodes come first, heaviest edge
    first). A node's predecessor is the earliest frontier node that reached it, which keeps
    the seed order meaningful: list the best seeds first.

    ``max_edges`` bounds the work rather than the distance: the edges read in all (each
    expanded node's whole row) stop at that many; a step that would read more expands only its
    first frontier nodes (in frontier order) whose rows fit. Hub entities of a large graph make
    a third hop read most of the graph; this keeps a query's cost flat as the graph grows.
    """
    a = adjacency
    n = a.shape[0]
    seed_arr = np.asarray(seeds, dtype=np.int64).ravel()
    if seed_arr.size and (seed_arr.min() < 0 or seed_arr.max() >= n):
        raise InvalidInputError(f"seed indices must be in [0, {n}), got {seed_arr.tolist()}")
    if max_hops < 0:
        raise InvalidInputError(f"max_hops must be >= 0, got {max_hops!r}")
    if max_nodes is not None and max_nodes < 1:
        raise InvalidInputError(f"max_nodes must be >= 1, got {max_nodes!r}")
    if max_edges is not None and max_edges < 1:
        raise InvalidInputError(f"max_edges must be >= 1, got {max_edges!r}")
    budget = max_edges
    _, first = np.unique(seed_arr, return_index=True)
    seed_arr = seed_arr[np.sort(first)]  # de-duplicated, order kept
    visited = np.zeros(n, dtype=bool)
    visited[seed_arr] = True
    nodes, hops, preds = [seed_arr], [np.zeros(seed_arr.size, np.int64)], [np.full(seed_arr.size, -1, np.int64)]
    count = int(seed_arr.size)
    frontier = seed_arr
    indptr, indices, data = a.indptr, a.indices, a.data
    for hop in range(1, max_hops + 1):
        if frontier.size == 0 or (max_nodes is not None and count >= max_nodes):
            break
        starts, ends = indptr[frontier], indptr[frontier + 1]
        lengths = ends - starts
        if budget is not None:
            fits = int(np.searchsorted(np.cumsum(lengths), budget, side="right"))
            if fits < frontier.size:  # out of work: expand the first frontier nodes whose rows fit
                frontier, starts, lengths = frontier[:fits], starts[:fits], lengths[:fits]
            budget -= int(lengths.sum())
        if lengths.sum() == 0:
            break
        # Gather every (frontier node, neighbour, weight) triple without a Python loop per edge.
        total = int(lengths.sum())
        rank_of_owner = np.repeat(np.arange(frontier.size), lengths)
        edge_pos = np.arange(total) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        nbr = indices[edge_pos]
        order = _owner_then_heaviest(rank_of_owner, data[edge_pos])
        nbr, rank_of_owner = nbr[order], rank_of_owner[order]
        fresh = ~visited[nbr]
        nbr, rank_of_owner = nbr[fresh], rank_of_owner[fresh]
        first = first_seen(nbr, n)  # order of first appearance, as the frontier and weights ranked them
        new, new_pred = nbr[first].astype(np.int64), frontier[rank_of_owner[first]]
        if max_nodes is not None:
            new, new_pred = new[: max_nodes - count], new_pred[: max_nodes - count]
        visited[new] = True
        nodes.append(new)
        hops.append(np.full(new.size, hop, np.int64))
        preds.append(new_pred)
        count += int(new.size)
        frontier = new
    return Expansion(np.concatenate(nodes), np.concatenate(hops), np.concatenate(preds))
