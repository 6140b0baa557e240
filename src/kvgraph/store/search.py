"""Query execution of the embedded store: dense (exact or HNSW, chosen by the planner), sparse
(BM25), hybrid (fused) and MMR, for one query or a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kvgraph.errors import DimensionMismatchError, InvalidInputError
from kvgraph.filters import FilterSpec
from kvgraph.store import dense, fusion, planner
from kvgraph.store.ann import load_faiss, pack_mask
from kvgraph.store.base import Metric, QueryMode, VectorStoreQuery, VectorStoreQueryResult
from kvgraph.store.mmr import mmr
from kvgraph.store.results import ResultsStore


class SearchStore(ResultsStore):
    """Every query mode, on top of the derived structures and result building."""

    ef_search: int

    # ------------------------------------------------------------------ querying

    def _query_vector(self, q: Any, where: str = "query_embedding") -> np.ndarray:
        if q is None:
            raise InvalidInputError(f"{where} is required for this query mode")
        if q.__class__ is np.ndarray and q.dtype == np.float32:
            arr = q  # already what search takes: no conversion
        else:
            try:
                arr = np.asarray(q, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{where} must be a list of numbers") from None
        if arr.ndim != 1:
            raise InvalidInputError(f"{where} must be one flat vector, got shape {arr.shape}")
        if self.dim and arr.shape[0] != self.dim:
            raise DimensionMismatchError(self.dim, arr.shape[0], where)
        sq = float(arr @ arr)  # finite unless an entry is NaN/inf (or the square overflows)
        if not math.isfinite(sq):
            if not np.isfinite(arr).all():
                raise InvalidInputError(f"{where} contains NaN or infinity")
            sq = float(np.square(arr, dtype=np.float64).sum())
        if self.metric is Metric.COSINE:
            if sq == 0:
                raise InvalidInputError(f"{where} is the zero vector; cosine similarity is undefined")
            arr = arr * np.float32(1.0 / math.sqrt(sq))
        return arr

    def _query_matrix(self, qs: np.ndarray) -> np.ndarray:
        """_query_vector for every row at once; errors name the first bad row."""
        if not len(qs):
            return qs
        if self.dim and qs.shape[1] != self.dim:
            raise DimensionMismatchError(self.dim, qs.shape[1], "query_embedding[0]")
        sq = np.einsum("ij,ij->i", qs, qs, dtype=np.float64)
        bad = ~np.isfinite(sq)
        if bad.any():  # NaN/inf in a row, or a square sum beyond float64 (checked row by row)
            for i in np.flatnonzero(bad):
                self._query_vector(qs[i], f"query_embedding[{i}]")
        if self.metric is Metric.COSINE:
            zero = np.flatnonzero(sq == 0)
            if len(zero):
                raise InvalidInputError(
                    f"query_embedding[{zero[0]}] is the zero vector; cosine similarity is undefined"
                )
            return np.asarray((qs / np.sqrt(sq)[:, None]).astype(np.float32))
        return qs

    def query(self, query: VectorStoreQuery) -> VectorStoreQueryResult:
        """Top-k search in the mode the query asks for; see VectorStoreQuery."""
        k = query.similarity_top_k
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {k!r}")
        mode = query.mode
        if mode.__class__ is not QueryMode:
            try:
                mode = QueryMode(mode)
            except ValueError:
                raise InvalidInputError(
                    f"unknown query mode {query.mode!r}; use dense, sparse, hybrid or mmr"
                ) from None
        return self._read(lambda: self._query(query, k, mode))

    def _query(self, query: VectorStoreQuery, k: int, mode: QueryMode) -> VectorStoreQueryResult:
        if mode is QueryMode.DENSE and query.filters is None and query.node_ids is None and query.doc_ids is None:
            qv = self._query_vector(query.query_embedding)  # the common case, straight through
            slots, scores, plan = self._dense(qv[None, :], k, None, query)
            return self._result(slots[0], scores[0], plan)
        allowed = self._allowed(query)
        if mode is QueryMode.DENSE:
            qv = self._query_vector(query.query_embedding)
            slots, scores, plan = self._dense(qv[None, :], k, allowed, query)
            return self._result(slots[0], scores[0], plan)
        if mode is QueryMode.SPARSE:
            slots, scores = self._sparse(query.query_str, k, allowed)
            return self._result(slots, scores, "bm25")
        if mode is QueryMode.HYBRID:
            return self._hybrid(query, k, allowed)
        return self._mmr(query, k, allowed)

    def query_batch(
        self,
        embeddings: np.ndarray,
        similarity_top_k: int = 4,
        filters: FilterSpec = None,
        *,
        ef_search: int | None = None,
        strategy: str = "auto",
        exact: bool = False,
        node_ids: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[VectorStoreQueryResult]:
        """Dense top-k for many query embeddings in one call (one matrix product / one ANN call).

        ``ef_search``, ``strategy``, ``exact``, ``node_ids`` and ``doc_ids`` mean what they
        mean in :class:`VectorStoreQuery`, and apply to every query of the batch.
        """
        q = VectorStoreQuery(
            similarity_top_k=similarity_top_k,
            filters=filters,
            ef_search=ef_search,
            strategy=strategy,
            exact=exact,
            node_ids=node_ids,
            doc_ids=doc_ids,
        )
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k <= 0:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        return self._read(lambda: self._query_batch(embeddings, similarity_top_k, q))

    def _query_batch(
        self, embeddings: np.ndarray, similarity_top_k: int, q: VectorStoreQuery
    ) -> list[VectorStoreQueryResult]:
        qs = np.asarray(embeddings, dtype=np.float32)
        if qs.ndim != 2:
            raise InvalidInputError(f"embeddings must be a (queries, dim) matrix, got shape {qs.shape}")
        qs = self._query_matrix(qs)
        allowed = self._allowed(q)
        slots, scores, plan = self._dense(qs, similarity_top_k, allowed, q)
        rows = None
        if self.read_only:  # results read their rows now (see _result): one SQL read for all of them
            keep = (slots >= 0) & np.isfinite(scores)
            rows = self._records.rows_by_slots(np.unique(slots[keep]).tolist())
        return [self._result(s, sc, plan, rows) for s, sc in zip(slots, scores)]

    # ---- dense ----

    def _similarity(self, raw: np.ndarray, rows: np.ndarray | None, q: np.ndarray) -> np.ndarray:
        """Turn inner products into the metric's similarity (higher is better)."""
        if self.metric is not Metric.L2:
            return raw
        if self._sqnorms is None or len(self._sqnorms) < self._n:
            self._sqnorms = dense.squared_norms(self._matrix())
        sq = self._sqnorms if rows is None else self._sqnorms[rows]
        qn = np.einsum("ij,ij->i", q, q)[:, None]
        dist2 = np.maximum(sq[None, :] - 2 * raw + qn, 0.0)
        return np.asarray((1.0 / (1.0 + np.sqrt(dist2))).astype(np.float32))

    def _exact(self, qs: np.ndarray, k: int, allowed: np.ndarray | None, lo: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over slots >= lo that are allowed (or live). Returns (slots, sims), -1 padded."""
        mat = self._matrix()
        if self.metric is not Metric.L2:
            if allowed is None and lo == 0 and self._n_live == self._n:
                return dense.knn_inner_product(mat, qs, k)  # the common case: every row, no selection pass
            if allowed is None:
                live = self._live_rows()
                subset = live[np.searchsorted(live, lo) :] if lo else live
            else:
                subset = np.flatnonzero(allowed[lo:]) + lo
            return dense.knn_inner_product(mat, qs, k, subset)
        mask = self._live.view if allowed is None else allowed
        n_dead_region = self._n - lo - int(mask[lo:].sum())
        if allowed is None and n_dead_region == 0 and lo == 0:
            rows = None
            sims = self._similarity(dense.score_rows(mat, None, qs), None, qs)
        elif (self._n - lo) and int(mask[lo:].sum()) > 0.5 * (self._n - lo):
            rows = np.arange(lo, self._n)
            sims = self._similarity(dense.score_rows(mat[lo:], None, qs), rows, qs)
            sims[:, ~mask[lo:]] = -np.inf
        else:
            rows = np.flatnonzero(mask[lo:]) + lo
            sims = self._similarity(dense.score_rows(mat, rows, qs), rows, qs)
        top = dense.top_k_rows(sims, k)
        out_scores = np.take_along_axis(sims, top, axis=1) if top.size else np.zeros_like(top, dtype=np.float32)
        out_slots = top if rows is None else rows[top]
        out_slots = np.where(np.isfinite(out_scores), out_slots, -1)
        return out_slots, out_scores

    def _dense(
        self, qs: np.ndarray, k: int, allowed: np.ndarray | None, query: VectorStoreQuery
    ) -> tuple[np.ndarray, np.ndarray, str]:
        strategy = query.strategy
        planner.check_strategy(strategy)
        if strategy == "ann" and not query.exact:
            load_faiss()  # the HNSW index is asked for outright: without faiss, name the extra to install
        if not self._n_live or not self.dim:
            return np.full((len(qs), 0), -1), np.zeros((len(qs), 0), np.float32), "empty"
        wants_ann = not query.exact and strategy != "exact" and (strategy == "ann" or self._ann_wanted())
        plan = planner.EXACT
        n_allowed = None if allowed is None else int(np.count_nonzero(allowed))
        if wants_ann:
            mat = self._matrix()
            # Never wait for the background indexer while it builds: search exactly meanwhile.
            # Loading a saved index is quick, so the first query waits for that instead.
            if self._ann_lock.acquire(blocking=strategy == "ann" or not self._ann_loaded):
                try:
                    self._load_ann()
                    ann = self._ann
                    indexed = ann.n if ann is not None else 0
                    plan = planner.choose_plan(
                        k=k,
                        n_slots=self._n,
                        n_live=self._n_live,
                        n_allowed=n_allowed,
                        indexed=indexed,
                        ef_search=self.ef_search,
                        ef_override=query.ef_search,
                        strategy=strategy,
                    )
                    if plan.kind == "ann":
                        assert ann is not None
                        if ann.attached:
                            ann.attach(mat)  # no-op unless the file was mapped anew (rows were added)
                        bits = self._live_bitmap(indexed) if allowed is None else pack_mask(allowed[:indexed])
                        # SQ8 distances are approximate: fetch more candidates and re-rank them exactly.
                        k_cand = k if ann.exact_scores else max(k, plan.ef)
                        raw, cand = ann.search(qs, k_cand, plan.ef, bitmap=bits)
                        exact_scores = ann.exact_scores
                finally:
                    self._ann_lock.release()
        if plan.kind == "exact":
            slots, sims = self._exact(qs, k, allowed)
            return slots, sims, "exact" if allowed is None else "exact-subset"
        plan_name = f"{'ann' if allowed is None else 'ann-filtered'}(ef={plan.ef})"
        want = min(k, self._n_live if n_allowed is None else n_allowed)
        if exact_scores and indexed == self._n and self.metric is not Metric.L2:
            # faiss's inner products are the similarities, already sorted: nothing to re-rank
            out_slots, out_sims = cand, raw
        else:
            out_slots, out_sims = self._rerank(qs, k, allowed, cand, indexed)
        # hits come first in each row, -1 after; a row short of `want` hits means the graph walk
        # ran out of allowed nodes before finding them: answer those queries exactly
        last = out_slots[:, want - 1]
        if want and (last[0] < 0 if len(last) == 1 else (last < 0).any()):
            short = np.flatnonzero(last < 0)
            ex_slots, ex_sims = self._exact(qs[short], k, allowed)
            out_slots = out_slots.copy()
            out_sims = out_sims.copy()
            out_slots[short] = -1
            out_sims[short] = -np.inf
            out_slots[short, : ex_slots.shape[1]] = ex_slots
            out_sims[short, : ex_sims.shape[1]] = ex_sims
            plan_name += "+exact"
        return out_slots, out_sims, plan_name

    def _rerank(
        self, qs: np.ndarray, k: int, allowed: np.ndarray | None, cand: np.ndarray, indexed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the ANN candidates, merged with an exact search of the un-indexed tail."""
        mat = self._matrix()
        out_slots = np.full((len(qs), k), -1, dtype=np.int64)
        out_sims = np.full((len(qs), k), -np.inf, dtype=np.float32)
        tail = self._exact(qs, k, allowed, lo=indexed) if indexed < self._n else None
        for i in range(len(qs)):
            c = cand[i][cand[i] >= 0]
            sims = self._similarity(dense.score_rows(mat, c, qs[i : i + 1]), c, qs[i : i + 1])[0]
            if tail is not None:
                t = tail[0][i] >= 0
                c = np.concatenate([c, tail[0][i][t]])
                sims = np.concatenate([sims, tail[1][i][t]])
            top = dense.top_k(sims, k)
            out_slots[i, : len(top)] = c[top]
            out_sims[i, : len(top)] = sims[top]
        return out_slots, out_sims

    # ---- sparse / hybrid / mmr ----

    def _sparse(self, text: str | None, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("query_str (a non-empty string) is required for sparse and hybrid search")
        slots, scores = self._get_bm25().scores(text, self._live.view, allowed)
        top = dense.top_k(scores, k)
        return slots[top], scores[top]

    def _hybrid(self, q: VectorStoreQuery, k: int, allowed: np.ndarray | None) -> VectorStoreQueryResult:
        pool = max(k * 4, q.sparse_top_k or 0, 20)
        qv = self._query_vector(q.query_embedding)
        d_slots, d_sims, plan = self._dense(qv[None, :], pool, allowed, q)
        keep = d_slots[0] >= 0
        d_slots, d_sims = d_slots[0][keep], d_sims[0][keep]
        s_slots, s_scores = self._sparse(q.query_str, q.sparse_top_k or pool, allowed)
        if q.alpha is None:
            ids, scores = fusion.rrf([d_slots, s_slots])
            how = "rrf"
        else:
            if not 0.0 <= q.alpha <= 1.0:
                raise InvalidInputError(f"alpha must be between 0 and 1, got {q.alpha!r}")
            ids, scores = fusion.alpha_fusion(d_slots, d_sims, s_slots, s_scores, q.alpha)
            how = f"alpha={q.alpha}"
        return self._result(ids[:k], scores[:k], f"hybrid({plan}+bm25, {how})")

    def _mmr(self, q: VectorStoreQuery, k: int, allowed: np.ndarray | None) -> VectorStoreQueryResult:
        if not 0.0 <= q.mmr_threshold <= 1.0:
            raise InvalidInputError(f"mmr_threshold must be between 0 and 1, got {q.mmr_threshold!r}")
        qv = self._query_vector(q.query_embedding)
        fetch = max(q.mmr_fetch_k or 0, 4 * k, 20)
        slots, sims, plan = self._dense(qv[None, :], fetch, allowed, q)
        keep = slots[0] >= 0
        slots, sims = slots[0][keep], sims[0][keep]
        vecs = np.asarray(self._matrix()[slots], dtype=np.float32)
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        qn = qv / max(float(np.linalg.norm(qv)), 1e-12)
        picked = mmr(qn, unit, k, q.mmr_threshold)
        return self._result(slots[picked], sims[picked], f"mmr({plan}, pool={len(slots)})")
