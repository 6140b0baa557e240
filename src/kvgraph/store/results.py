"""Query results of the embedded store: lazily built nodes, and reading nodes by id or document.

A query fills in ids and scores at once; :class:`LazyNodesResult` builds its :class:`Node`
objects on first access from the rows the query saw (see :meth:`ResultsStore._settle_results`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kvgraph.errors import CorruptionError
from kvgraph.schema import Node, validate_id
from kvgraph.store.base import VectorStoreQuery, VectorStoreQueryResult
from kvgraph.store.indexing import IndexingStore
from kvgraph.store.records import NodeRow

PENDING_SWEEP = 4_096  # lazy query results remembered before the list is swept of freed ones


class LazyNodesResult(VectorStoreQueryResult):
    """A query result whose ``nodes`` are built on first access.

    Ids, similarities and the plan are filled in by the query. Turning hits into
    :class:`Node` objects (an SQL read of text, metadata and relationships, and their
    JSON decoding) costs as much as an HNSW search on 100k vectors, and callers that
    rank, fuse or evaluate need only ids and scores, so it waits for ``result.nodes``.
    The store hands out a loader that returns exactly what the query saw: it
    materialises pending results before it commits anything (see
    ``EmbeddedVectorStore._settle_results``), and a read-only store, whose writer is
    another process, reads the rows during the query. Otherwise this behaves like
    :class:`VectorStoreQueryResult`.
    """

    def __init__(
        self,
        nodes: list[Node] | None = None,
        similarities: list[float] | None = None,
        ids: list[str] | None = None,
        plan: str = "",
        *,
        load: Callable[[LazyNodesResult], list[Node]] | None = None,
        load_one: Callable[[LazyNodesResult, int], Node] | None = None,
    ) -> None:
        self._load = load
        self._load_one = load_one
        self._nodes = nodes
        self.similarities = similarities if similarities is not None else []
        self.ids = ids if ids is not None else []
        self.plan = plan

    @property
    def nodes(self) -> list[Node]:
        nodes = self._nodes
        if nodes is None:
            # The loader returns this result's nodes if another thread set them meanwhile;
            # two threads may both load, and they get equal lists.
            nodes = self._load(self) if self._load is not None else []
            if self._nodes is None:
                self._nodes = nodes
            return self._nodes
        return nodes

    @nodes.setter
    def nodes(self, value: list[Node]) -> None:
        self._nodes = list(value)
        self._load = self._load_one = None

    def node_at(self, i: int) -> Node:
        """``nodes[i]`` without building the others: fusion keeps a handful of a few hundred hits."""
        if self._nodes is None and self._load_one is not None:
            return self._load_one(self, i)
        return self.nodes[i]

    def fail_with(self, error: Exception) -> None:
        """Make ``nodes`` raise ``error`` (its rows could not be read when they had to be)."""

        def fail(_res: LazyNodesResult) -> list[Node]:
            raise error

        self._load = fail
        self._load_one = None

    @property
    def materialized(self) -> bool:
        return self._nodes is not None

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle / deepcopy as a plain result, nodes built (the loader belongs to the store)
        return (VectorStoreQueryResult, (self.nodes, self.similarities, self.ids, self.plan))


class ResultsStore(IndexingStore):
    """Turns slots into nodes: query results built on first access, and reads by id or document."""

    _pending: list[weakref.ref[LazyNodesResult]]  # results whose nodes are not built yet
    _sweep_at: int = PENDING_SWEEP

    def count(self) -> int:
        return self._read(lambda: self._n_live)

    def get(self, ids: Sequence[str]) -> list[Node | None]:
        """Nodes for the ids, in order, with embeddings; None where an id is unknown."""
        if isinstance(ids, str):
            ids = [ids]
        ids = [validate_id(i) for i in ids]
        return self._read(lambda: self._get(ids))

    def ids(self, filters: Any = None, doc_ids: Sequence[str] | None = None) -> list[str]:
        """Ids of every live node matching ``filters`` (and in ``doc_ids``), in insertion order."""

        def read() -> list[str]:
            mask = self._allowed(VectorStoreQuery(filters=filters, doc_ids=doc_ids))
            if mask is None:
                return self._records.ids_by_slots(None)
            return self._records.ids_by_slots(np.flatnonzero(mask).tolist())

        return self._read(read)

    def change_marker(self) -> dict[str, Any]:
        """Where the store stands: its vector file (another after a compaction), the slots used and
        the live nodes. :meth:`added_since` compares a later store with it."""
        return self._read(lambda: {"epoch": self._epoch, "slots": self._n, "live": self._n_live})

    def added_since(self, marker: Mapping[str, Any]) -> list[str] | None:
        """Ids of the nodes added since ``marker`` (a :meth:`change_marker`), in insertion order; None
        when a node of that time was deleted since, or the store was compacted (then compare all ids).

        New nodes take the slots after the marker's; a deletion lowers the live count, so the live
        count then plus the live nodes in new slots equals the live count now only if none was deleted.
        """
        slots, live = marker.get("slots"), marker.get("live")
        if not isinstance(slots, int) or not isinstance(live, int):
            return None

        def read() -> list[str] | None:
            if marker.get("epoch") != self._epoch or self._n < slots:
                return None
            new = [node_id for _, node_id in self._records.ids_from(slots)]
            return new if self._n_live == live + len(new) else None

        return self._read(read)

    def get_ref_doc(self, ref_doc_id: str, with_embedding: bool = False) -> list[Node]:
        """Every node of a document, in insertion order."""
        validate_id(ref_doc_id, "ref_doc_id")

        def read() -> list[Node]:
            slots = sorted(self._records.slots_of_docs([ref_doc_id]))
            rows = self._records.rows_by_slots(slots)
            return [self._row_to_node(rows[s], with_embedding=with_embedding) for s in slots if s in rows]

        return self._read(read)

    def _get(self, ids: list[str]) -> list[Node | None]:
        slot_of = self._records.slots_of(ids)
        rows = self._records.rows_by_slots(list(slot_of.values()))
        nodes = {r[1]: self._row_to_node(r, with_embedding=True) for r in rows.values()}
        return [nodes.get(i) for i in ids]

    def _result(
        self, slots: np.ndarray, scores: np.ndarray, plan: str, rows: dict[int, NodeRow] | None = None
    ) -> VectorStoreQueryResult:
        hits = slots.tolist()
        sims = scores.tolist()
        # searches put hits first and fill with slot -1 / non-finite scores (a non-finite entry
        # makes the sum non-finite; finite similarities cannot overflow it)
        if hits and (hits[-1] < 0 or not math.isfinite(sum(sims))):
            pairs = [(s, x) for s, x in zip(hits, sims) if s >= 0 and math.isfinite(x)]
            hits, sims = [s for s, _ in pairs], [x for _, x in pairs]
        if self.read_only:
            # the writer is another process: read the rows now, in this call's snapshot
            if rows is None:
                rows = self._records.rows_by_slots(hits)
            hit_rows = [rows[s] for s in hits]
            decode = self._row_to_node
            return LazyNodesResult(
                similarities=sims,
                ids=[r[1] for r in hit_rows],
                plan=plan,
                load=lambda _res: [decode(r) for r in hit_rows],
                load_one=lambda _res, i: decode(hit_rows[i]),
            )
        res = LazyNodesResult(
            similarities=sims,
            ids=self._get_slot_ids().get(hits),
            plan=plan,
            load=lambda res: self._load_nodes(res, hits),
            load_one=lambda res, i: self._load_nodes(res, [hits[i]], one=i)[0],
        )
        pending = self._pending
        pending.append(weakref.ref(res))
        if len(pending) >= self._sweep_at:  # drop results that were freed or materialised
            self._pending = [r for r in pending if (x := r()) is not None and not x.materialized]
            self._sweep_at = max(PENDING_SWEEP, 2 * len(self._pending))
        return res

    def _load_nodes(self, res: LazyNodesResult, slots: list[int], one: int | None = None) -> list[Node]:
        """The nodes in these slots, for a pending result (see _settle_results); ``one``: the
        position in the result of the single slot asked for."""
        with self._mutex, self._sqlite_errors():
            if res.materialized:  # settled by a write that ran while this thread waited
                return res.nodes if one is None else [res.nodes[one]]
            self._check_open()
            rows = self._records.rows_by_slots(slots)
            return [self._row_to_node(rows[s]) for s in slots]

    def _settle_results(self) -> None:
        """Build the nodes of every result still waiting for them, before anything changes.

        A slot's record only changes when it is deleted (or renumbered by vacuum), so a
        result that loads its nodes later sees what its query saw as long as this runs
        before each commit of this process (callers hold the mutex).
        """
        pending, self._pending = self._pending, []
        for ref in pending:
            res = ref()
            if res is not None:
                try:
                    res.nodes  # noqa: B018 - materialises
                except CorruptionError as e:  # a damaged row: the write goes on, the result reports it when used
                    res.fail_with(e)
