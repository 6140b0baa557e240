"""Choosing how to run a dense query: exact search or the HNSW index, and how deep.

A pure function of sizes, so that the rule is easy to read, test and tune against
the benchmark (bench/store.py measures both paths at each selectivity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kvgraph.errors import InvalidInputError

MAX_EF = 4_096
# A filter that keeps a fraction s of the nodes leaves about s * ef allowed nodes in an HNSW
# search's candidate pool of depth ef; recall@k holds when that pool has a few times k of
# them: ef = FILTER_POOL_FACTOR * k / s. Measured with bench/store.py's data (k=10, 10%
# allowed): at 1M, 1.3 k/s gave recall 0.99 and 2.6 k/s 1.000; at 100k (100-point clusters,
# ~10 allowed each) 2.6 k/s gave 0.92 and 5 k/s 0.95 -- there exact search is cheaper anyway,
# and the cost rule below picks it. Depths below the unfiltered ef_search are never used.
FILTER_POOL_FACTOR = 4.0
# One unit of HNSW search depth costs about as much as scoring this many allowed rows exactly
# (faiss over the memory-mapped rows, no copy): ~4 us per ef unit vs ~0.1 us per row at 100k.
ANN_COST_PER_EF = 40.0
STRATEGIES = ("auto", "exact", "ann")


@dataclass(frozen=True)
class Plan:
    kind: str  # "exact" or "ann"
    ef: int = 0


EXACT = Plan("exact")


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def choose_plan(
    *,
    k: int,
    n_slots: int,
    n_live: int,
    n_allowed: int | None,
    indexed: int,
    ef_search: int,
    ef_override: int | None = None,
    strategy: str = "auto",
) -> Plan:
    """Pick exact or ANN search.

    ``n_allowed`` is None when every live node may be returned, else the number of
    nodes the filter allows. ``indexed`` is how many slots the HNSW index covers
    (0 when there is no index). A filter that keeps a fraction ``s`` of the nodes is
    searched with depth ``max(ef_search, FILTER_POOL_FACTOR * k / s)`` (capped at
    MAX_EF), since the graph is still walked through the nodes it excludes; exact
    search over the allowed rows costs about ``n_allowed`` row scores. The cheaper one
    wins. An ``ef_override`` (the query's ef_search) sets the depth as given.
    """
    check_strategy(strategy)
    forced = strategy == "ann"
    if strategy == "exact" or indexed == 0 or (indexed < 0.5 * n_slots and not forced):
        return EXACT  # no index yet, or the background indexer has not got far enough
    base = max(ef_override or ef_search, k)
    if n_allowed is None:
        return Plan("ann", base)
    if n_allowed == 0:
        return EXACT
    selectivity = n_allowed / max(n_live, 1)
    ef = ef_override or min(MAX_EF, max(base, math.ceil(FILTER_POOL_FACTOR * k / selectivity)))
    exact_cost = n_allowed if selectivity < 0.5 else n_slots
    if not forced and exact_cost <= ANN_COST_PER_EF * ef:
        return EXACT
    return Plan("ann", max(ef, k))
