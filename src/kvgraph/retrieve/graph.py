"""Knowledge-vector-graph retrieval: seed with vector search, spread over the graph, rank chunks by the walk.

Multi-hop questions ("who directed the film shot in Leland?") name one passage and need
another that only the first one leads to. Dense search finds the first; the second shares an
entity with it (the film's title) but few words with the question. HippoRAG's answer, without
its LLM-built graph: start a personalized PageRank at

- the ``seeds`` best chunks of the base retriever, weighted by their scores, and
- the graph entities the question names (matched by canonical key, or by name embedding when
  the graph has entity vectors), weighted by specificity (1 / how many chunks mention them),

restricted to the nodes within ``hops`` edges of those seeds (bounded k-hop expansion, at most
``max_nodes`` nodes and ``max_edges`` edges read), and rank chunks by ``alpha * dense + (1 - alpha)
* walk`` (each scaled to [0, 1] over the candidates). Each result's ``path`` is the chain of graph
node keys from a seed to it (chunk ids, ``entity:<key>``, ``doc:<id>``), so a display can say
*why* it was found.

Cost per query: what the retriever derives from the graph (adjacency, specificities, titled
chunks) is computed once per graph object (:meth:`DocGraph.derived`), and a process shares one
graph object per save (:mod:`kvgraph.docgraph.cache`); the walk is bounded by ``max_edges``; only
the chunks returned are read from the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from kvgraph.docgraph.build import CHUNK, ENTITY, ENTITY_PREFIX, DocGraph
from kvgraph.docgraph.extract import EntityExtractor, entity_key
from kvgraph.docgraph.name_match import NameMatcher
from kvgraph.docgraph.ppr import (
    Expansion,
    k_hop,
    personalized_pagerank,
    personalized_pagerank_undirected,
    transition_matrix,
)
from kvgraph.errors import InvalidInputError
from kvgraph.retrieve.base import RetrievedNode, Retriever, check_query
from kvgraph.schema import Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder
    from kvgraph.store.base import VectorStore


SPECIFICITIES = ("inverse", "idf", "uniform")
COMBINES = ("linear", "rrf")
_SLACK = 4  # extra candidates read per store round trip, for chunks deleted since the graph was built


def _scaled(x: np.ndarray) -> np.ndarray:
    top = x.max() if x.size else 0.0
    return x / top if top > 0 else np.zeros_like(x)


class KnowledgeGraphRetriever:
    """Vector seeds + bounded k-hop expansion + personalized PageRank over a :class:`DocGraph`.

    Parameters: ``hops`` (expansion depth; ``None`` walks the whole graph), ``damping``
    (probability of following an edge rather than restarting at the seeds), ``seeds`` (base
    chunks that seed the walk), ``fetch`` (base results whose dense scores enter the final mix),
    ``alpha`` (weight of the dense score in the final mix), ``entity_weight`` (share of the
    restart mass on the question's entities when it names any), ``title_seeds`` (a chunk whose
    document title *is* a question entity, same canonical key, shares that entity's restart
    mass: the question names what the passage is about), ``edge_weights`` (per edge
    type factors, see :meth:`DocGraph.adjacency`), ``max_nodes`` and ``max_edges`` (the expansion
    stops at that many nodes, or edges read: a query's work stays flat as the graph grows; see
    :func:`~kvgraph.docgraph.ppr.k_hop`). ``store`` fetches chunks reached only
    through the graph; ``embedder`` matches question entities to graph entities by meaning.

    Variants measured by ``bench/kvg_cv.py`` (the defaults are what held up there):
    ``specificity`` is a question entity's restart weight, ``"inverse"`` (1 / chunks mentioning it),
    ``"idf"`` (log(1 + chunks / mentions)) or ``"uniform"``; ``combine`` mixes dense and walk
    scores ``"linear"``-ly on max-scaled scores or by ``"rrf"`` (``alpha / (rrf_k + dense rank) +
    (1 - alpha) / (rrf_k + walk rank)``); ``keep_base_hits`` keeps base hits the bounded walk does
    not reach as candidates (walk score 0).
    """

    def __init__(
        self,
        base: Retriever,
        graph: DocGraph,
        store: VectorStore | None = None,
        embedder: Embedder | None = None,
        *,
        hops: int | None = 3,
        damping: float = 0.7,
        seeds: int = 5,
        fetch: int = 30,
        alpha: float = 0.25,
        entity_weight: float = 0.5,
        title_seeds: bool = True,
        entity_match_threshold: float = 0.85,
        seed_temperature: float = 0.25,
        propagated_only: bool = False,
        max_nodes: int | None = 5_000,
        max_edges: int | None = 50_000,
        edge_weights: Mapping[str, float] | None = None,
        extractor: EntityExtractor | None = None,
        specificity: str = "inverse",
        combine: str = "linear",
        rrf_k: int = 60,
        keep_base_hits: bool = False,
    ) -> None:
        if hops is not None and (isinstance(hops, bool) or not isinstance(hops, int) or hops < 0):
            raise InvalidInputError(f"hops must be an int >= 0 or None, got {hops!r}")
        if not 0.0 <= damping < 1.0:
            raise InvalidInputError(f"damping must be in [0, 1), got {damping!r}")
        for name, value in (("seeds", seeds), ("fetch", fetch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        for name, share in (("alpha", alpha), ("entity_weight", entity_weight)):
            if not 0.0 <= share <= 1.0:
                raise InvalidInputError(f"{name} must be between 0 and 1, got {share!r}")
        self.base = base
        self.graph = graph
        self.store = store
        self.embedder = embedder
        self.hops = hops
        self.damping = damping
        self.seeds = seeds
        self.fetch = max(fetch, seeds)
        self.alpha = alpha
        self.entity_weight = entity_weight
        self.entity_match_threshold = entity_match_threshold
        if not seed_temperature > 0:
            raise InvalidInputError(f"seed_temperature must be > 0, got {seed_temperature!r}")
        self.seed_temperature = seed_temperature
        self.propagated_only = propagated_only
        self.max_nodes = max_nodes
        self.extractor = extractor or EntityExtractor()
        if max_edges is not None and (isinstance(max_edges, bool) or not isinstance(max_edges, int) or max_edges < 1):
            raise InvalidInputError(f"max_edges must be an int >= 1 or None, got {max_edges!r}")
        self.max_edges = max_edges
        # What follows depends only on the graph and these settings: computed once per graph object
        # (a process shares one per saved graph, kvgraph.docgraph.cache), not per query.
        factors = tuple(sorted((edge_weights or {}).items()))
        self.adjacency = graph.derived(("adjacency", factors), lambda: graph.adjacency(edge_weights))
        self._full = (
            graph.derived(("transition", factors), lambda: transition_matrix(self.adjacency)) if hops is None else None
        )
        if specificity not in SPECIFICITIES:
            raise InvalidInputError(f"specificity must be one of {', '.join(SPECIFICITIES)}, got {specificity!r}")
        if combine not in COMBINES:
            raise InvalidInputError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
        self.combine = combine
        self.rrf_k = rrf_k
        self.keep_base_hits = keep_base_hits
        self._is_chunk = graph.kind_array == 0
        self._specificity = graph.derived(("specificity", specificity), lambda: _specificity(graph, specificity))
        self._titled = graph.derived("titled", lambda: _titled_chunks(graph)) if title_seeds else {}

    # ------------------------------------------------------------------ seeds

    def titled_chunks(self, entity: int) -> list[int]:
        """Graph indices of the chunks whose document title is the entity at graph index ``entity``."""
        return list(self._titled.get(self.graph.keys[entity][len(ENTITY_PREFIX) :], ()))

    def seed_weights(self, scores: np.ndarray) -> np.ndarray:
        """Restart weights of the seed chunks from their base scores (sum 1).

        A softmax over the scores rescaled to [0, 1]: with ``seed_temperature`` small, the best
        hit dominates; cosine scores of the top hits are close together, so plain normalised
        scores would seed every hit almost equally and blur the walk.
        """
        span = scores.max() - scores.min()
        z = (scores - scores.max()) / span if span > 0 else np.zeros_like(scores)
        w = np.exp(z / self.seed_temperature)
        return np.asarray(w / w.sum())

    def _spelled(self, query: str) -> tuple[dict[int, None], list[str]]:
        """The entities ``query`` names that graph keys spell the same way, and the names of the others
        (when they can be matched by meaning)."""
        found: dict[int, None] = {}
        unmatched = []
        for m in self.extractor.extract(query):
            i = self.graph.index.get(ENTITY_PREFIX + m.key)
            if i is not None:
                found[i] = None
            else:
                unmatched.append(m.name)
        g = self.graph
        if self.embedder is None or g.entity_vector_rows is None or not g.name_count():
            unmatched = []
        return found, unmatched

    def query_entities(self, query: str, name_vectors: np.ndarray | None = None) -> list[int]:
        """Graph node indices of the entities ``query`` names: exact canonical key, else nearest name embedding.

        ``name_vectors``: the embeddings of the names no key spells, already computed (one row each,
        in the order they appear; see :meth:`retrieve`).
        """
        found, unmatched = self._spelled(query)
        g = self.graph
        rows = g.entity_vector_rows
        if not unmatched or self.embedder is None or rows is None:
            return list(found)
        # Matched by meaning: a question may spell an entity differently from every graph key.
        if name_vectors is None or len(name_vectors) != len(unmatched):
            name_vectors = self.embedder.embed(unmatched)
        q = np.array(name_vectors, dtype=np.float32)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        # From the floats when this process unpacked them, else from the saved packed rows.
        matcher = g.derived("name_matcher", partial(NameMatcher, g.entity_vectors, g.entity_vectors_packed))
        for col in matcher.best(q, self.entity_match_threshold):
            if col >= 0:
                found[int(rows[col])] = None
        return list(found)

    # ------------------------------------------------------------------ retrieval

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        query, k = check_query(query, k)
        fetch = max(self.fetch, k)
        _, unmatched = self._spelled(query)
        search = getattr(self.base, "search", None)  # FusionRetriever, StoreRetriever: a search given the vector
        if unmatched and search is not None and getattr(self.base, "embedder", None) is self.embedder:
            # The question and the names no key spells in one embedding call (a second call cost
            # ~2 ms, a fifth of a graph query at 10k chunks, for a third of the questions).
            embedder = self.embedder
            assert embedder is not None
            embedded: list[np.ndarray] = []

            def embed() -> np.ndarray:  # run by the base while it searches BM25 beside it
                embedded.append(np.asarray(embedder.embed([query, *unmatched]), dtype=np.float32))
                question: np.ndarray = embedded[0][0]
                return question

            hits = search(query, embed, fetch)
            return list(self.rank(query, hits, limit=k, name_vectors=embedded[0][1:]))
        hits = self.base.retrieve(query, fetch)
        return list(self.rank(query, hits, limit=k))

    def rank(
        self,
        query: str,
        hits: Sequence[NodeWithScore],
        limit: int | None = None,
        *,
        name_vectors: np.ndarray | None = None,
    ) -> list[RetrievedNode]:
        """Rank chunks for ``query`` given the base retriever's ``hits`` (best first); the best ``limit`` only.

        Chunks the walk reaches are read from the store only for the results returned, so
        ``limit`` (default: every candidate) bounds what a query reads.
        """
        g = self.graph
        dense: dict[int, float] = {}
        hit_nodes: dict[int, Node] = {}
        for h in hits:
            i = g.index.get(h.node.id)
            if i is not None and i not in dense:
                dense[i] = float(h.score)
                hit_nodes[i] = h.node
        chunk_seeds = list(dense)[: self.seeds]
        entity_seeds = self.query_entities(query, name_vectors)
        if not chunk_seeds and not entity_seeds:
            return [RetrievedNode(h.node, float(h.score), [h.node.id], h.node) for h in hits][:limit]

        # Entity seeds by specificity; each shares its weight with the chunks titled with it.
        entity_idx: list[int] = []
        entity_w: list[float] = []
        if entity_seeds:
            e = self._specificity[entity_seeds]
            e = e / e.sum() if e.sum() > 0 else np.full(len(entity_seeds), 1.0 / len(entity_seeds))
            for node, w in zip(entity_seeds, e.tolist()):
                group = [node, *self.titled_chunks(node)]
                entity_idx += group
                entity_w += [w / len(group)] * len(group)
        seed_idx = np.array(chunk_seeds + entity_idx, dtype=np.int64)
        restart = np.zeros(seed_idx.size)
        if chunk_seeds:
            s = self.seed_weights(np.array([dense[i] for i in chunk_seeds]))
            restart[: len(chunk_seeds)] = s * (1.0 - (self.entity_weight if entity_seeds else 0.0))
        if entity_seeds:
            restart[len(chunk_seeds) :] = np.array(entity_w) * (self.entity_weight if chunk_seeds else 1.0)

        # Bounded k-hop expansion (over the whole graph when hops is None), then PPR on that subgraph.
        if self._full is not None:
            nodes = np.arange(g.n_nodes)
            expansion = k_hop(self.adjacency, seed_idx, max_hops=g.n_nodes)
            personalization = np.zeros(nodes.size)
            np.add.at(personalization, seed_idx, restart)  # over the whole graph a node's position is its number
            transition, dangling = self._full
            walk = personalized_pagerank(
                transition, personalization, damping=self.damping, dangling=dangling, tol=_WALK_TOL
            )
        else:
            expansion = k_hop(
                self.adjacency, seed_idx, max_hops=self.hops or 0, max_nodes=self.max_nodes, max_edges=self.max_edges
            )
            nodes = expansion.nodes
            personalization = np.zeros(nodes.size)
            np.add.at(personalization, expansion.positions(seed_idx), restart)  # seeds are always reached
            # The adjacency is symmetric (DocGraph.adjacency): conjugate gradients, half the products.
            walk = personalized_pagerank_undirected(
                self.adjacency.submatrix(nodes), personalization, damping=self.damping, tol=_CG_TOL
            )
        if self.propagated_only:
            # What flowed in along edges, without the restart mass a seed gets for being a seed:
            # the dense score already rewards the seeds; the walk should reward what they lead to.
            walk = np.maximum(walk - (1.0 - self.damping) * personalization / personalization.sum(), 0.0)

        chunk_pos = np.flatnonzero(self._is_chunk[nodes])
        # Candidates are the chunks inside the expansion only: a base hit the bounded walk does not
        # reach (no shared entity, no similar chunk near the seeds) is dropped. Measured on HotpotQA,
        # keeping such hits with a walk score of 0 lowered held-out recall (-4.5 R@2, -2.0 R@5; bench/kvg_cv.py).
        cand = nodes[chunk_pos]
        walk_raw = walk[chunk_pos]
        base_idx = np.array(list(dense), dtype=np.int64)
        if self.keep_base_hits and self._full is None:
            missing = base_idx[expansion.positions(base_idx) < 0]
            cand = np.concatenate([cand, missing])
            walk_raw = np.concatenate([walk_raw, np.zeros(missing.size)])
        dense_raw = _lookup(base_idx, np.array(list(dense.values())), cand)
        final = self.combine_scores(dense_raw, walk_raw)
        # The best few in the order a stable sort of all gives (a full sort of the ~10k candidates
        # of a bounded walk took 0.3 ms); all of them when chunks deleted since the build thin the best.
        order = _stable_top(final, len(final) if limit is None else 2 * (limit + _SLACK))
        out = self._results(cand[order], final[order], expansion, hit_nodes, limit)
        if limit is not None and len(out) < limit and len(order) < len(final):
            order = _stable_top(final, len(final))
            out = self._results(cand[order], final[order], expansion, hit_nodes, limit)
        return out

    def combine_scores(self, dense_raw: np.ndarray, walk_raw: np.ndarray) -> np.ndarray:
        """Final scores of the candidates from their base scores (NaN: not a base hit) and walk scores."""
        known = ~np.isnan(dense_raw)
        if self.combine == "rrf":
            final = np.zeros(dense_raw.size)
            if known.any():
                kpos = np.flatnonzero(known)
                drank = np.empty(kpos.size)
                drank[np.argsort(-dense_raw[kpos], kind="stable")] = np.arange(1, kpos.size + 1)
                final[kpos] += self.alpha / (self.rrf_k + drank)
            wrank = np.empty(walk_raw.size)
            wrank[np.argsort(-walk_raw, kind="stable")] = np.arange(1, walk_raw.size + 1)
            final += (1.0 - self.alpha) * np.where(walk_raw > 0, 1.0 / (self.rrf_k + wrank), 0.0)
            return final
        dense_scores = np.zeros(dense_raw.size)
        if known.any():
            lo = dense_raw[known].min()
            span = dense_raw[known].max() - lo
            # Chunks the base did not return score as its worst hit would have (0 after scaling).
            dense_scores[known] = (dense_raw[known] - lo) / span if span > 0 else 1.0
        return np.asarray(self.alpha * dense_scores + (1.0 - self.alpha) * _scaled(walk_raw))

    def _results(
        self,
        ranked: np.ndarray,
        scores: np.ndarray,
        expansion: Expansion,
        hit_nodes: dict[int, Node],
        limit: int | None = None,
    ) -> list[RetrievedNode]:
        g = self.graph
        want = len(ranked) if limit is None else limit
        out: list[RetrievedNode] = []
        ranked_list, score_list = ranked.tolist(), scores.tolist()
        pos = 0
        while len(out) < want and pos < len(ranked_list):
            # Read the next few candidates from the store, as many as results are still missing
            # (plus a few for chunks deleted since the graph was built), never the whole walk.
            batch = ranked_list[pos : pos + want - len(out) + _SLACK]
            pos += len(batch)
            need = [g.keys[i] for i in batch if i not in hit_nodes]
            fetched: dict[str, Node] = {}
            if need and self.store is not None:
                for node in self.store.get(need):
                    if node is not None:
                        node.embedding = None  # results elsewhere carry no embedding
                        fetched[node.id] = node
            for i, score in zip(batch, score_list[pos - len(batch) : pos]):
                if len(out) >= want:
                    break
                key = g.keys[i]
                node = hit_nodes.get(i) or fetched.get(key)
                if node is None:
                    if self.store is not None:
                        continue  # in the graph but no longer in the store: deleted since the graph was built
                    node = Node(id=key, ref_doc_id=g.doc_of.get(key))
                path_idx = expansion.path(i) if i in expansion else [i]
                hit = hit_nodes.get(path_idx[0])
                out.append(RetrievedNode(node, float(score), [g.keys[p] for p in path_idx], hit))
        return out


# L1 change at which the walk stops. 1e-8 took ~45 steps where ~38 rank the same: the same top 5
# for 80 of 80 questions at 10k and 100k chunks (bench/README.md, "Graph mode at scale").
_WALK_TOL = 1e-6
# The bounded walk's residual at which conjugate gradients stop (personalized_pagerank_undirected):
# within 1.6e-4 (L1; median 3e-5) of the exact walk on the 100k bench graph's walks, about 12
# products instead of 19 at 1e-8. The same top 10, in the same order, as at 1e-8 for HotpotQA's
# 100 questions and the bench's 80 at 10k and 100k chunks (there a walk's 10th largest score is
# ~0.02, a hundred times the largest error).
_CG_TOL = 1e-5


def _stable_top(scores: np.ndarray, m: int) -> np.ndarray:
    """Positions of the ``m`` highest ``scores``: ``np.argsort(-scores, kind="stable")[:m]``, without
    sorting them all (ties in position order, NaN last)."""
    n = scores.size
    if m >= n or not np.isfinite(scores).all():
        return np.argsort(-scores, kind="stable")[:m]
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    negated = -scores
    kth = np.partition(negated, m - 1)[m - 1]
    near = np.flatnonzero(negated <= kth)  # every position tied with the m-th too: ascending
    return near[np.argsort(negated[near], kind="stable")][:m]


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``values`` of ``keys`` at ``wanted`` (NaN where a wanted key is not among ``keys``)."""
    out = np.full(wanted.size, np.nan)
    if not keys.size:
        return out
    order = np.argsort(keys)
    at = np.minimum(np.searchsorted(keys[order], wanted), keys.size - 1)
    hit = keys[order][at] == wanted
    out[hit] = values[order][at[hit]]
    return out


def _specificity(graph: DocGraph, specificity: str) -> np.ndarray:
    """A question entity's restart weight per node (0 for nodes no chunk mentions); see the class docstring."""
    mentions = graph.mention_counts().astype(np.float64)
    if specificity == "inverse":  # HippoRAG's node specificity
        return np.where(mentions > 0, 1.0 / np.maximum(mentions, 1.0), 0.0)
    if specificity == "idf":
        n_chunks = float((graph.kind_array == 0).sum())
        return np.where(mentions > 0, np.log1p(n_chunks / np.maximum(mentions, 1.0)), 0.0)
    return np.where(mentions > 0, 1.0, 0.0)


def _titled_chunks(graph: DocGraph) -> dict[str, list[int]]:
    """Entity key -> chunks titled with it; a chunk without a title is named by its id and never matches."""
    titled: dict[str, list[int]] = {}
    keys: dict[str, str] = {}  # many chunks share a document title: canonicalise each title once
    names, node_keys = graph.names, graph.keys
    for i in np.flatnonzero(graph.kind_array == 0).tolist():
        name = names[i]
        if name != node_keys[i]:
            key = keys.get(name)
            if key is None:
                key = keys[name] = entity_key(name)
            titled.setdefault(key, []).append(i)
    return titled


def chunk_keys(graph: DocGraph) -> list[str]:
    """The chunk ids a graph was built from (e.g. to check it against the store)."""
    return [key for key, kind in zip(graph.keys, graph.kinds) if kind == CHUNK]


def describe_path(graph: DocGraph, path: Sequence[str]) -> str:
    """A walk path for people: node names joined by arrows, RELATED hops labelled with the triple's relation.

    ``["c1", "entity:aurelia voss", "entity:glass harbor", "c7"]`` reads
    ``Aurelia Voss (chunk) → Aurelia Voss —composed→ Glass Harbor → Glass Harbor (chunk)``; a hop
    against a fact's direction reads ``Teatro Nerino ←premiered at— Glass Harbor``.
    """
    out = ""
    for i, key in enumerate(path):
        idx = graph.index.get(key)
        name = (
            key if idx is None else graph.names[idx] + ("" if graph.kinds[idx] == ENTITY else f" ({graph.kinds[idx]})")
        )
        if i > 0:
            relations = graph.relations(path[i - 1], key)
            if not relations:
                out += " → "
            elif relations[0][1] == "->":
                out += f" —{relations[0][0]}→ "
            else:
                out += f" ←{relations[0][0]}— "
        out += name
    return out
