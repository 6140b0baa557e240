"""Update a document graph after chunks were added, changed or deleted, without building it again.

:func:`update_doc_graph` takes the saved graph, the chunks to add (new ones, and the current
version of every chunk of a changed document) and the chunk ids to take out, and returns the
graph a full build (:func:`~kvgraph.docgraph.build.build_doc_graph`) would make from the chunks
now stored, up to the numbering of its nodes:

- the added chunks go through the build's own :func:`~kvgraph.docgraph.build.add_chunks`
  (structure, entities, MENTIONS, triples); the edges of the chunks that stay are kept;
- entities no chunk mentions any more, and documents without chunks, are removed; an entity
  whose mentions changed is named (and its kind taken) from its first mention in store order,
  as a build names it, reading that chunk again if need be; only new or renamed entity names
  are embedded;
- ``SIMILAR`` and ``SYNONYM`` edges come from each chunk's and entity name's nearest-neighbour
  list, saved with the graph. A new chunk's list, and every chunk that is at least
  ``similar_threshold`` similar to it, come from a search of the vector store (``neighbours``,
  widened until the similarities fall below the threshold); a chunk whose list named a deleted
  chunk is searched again. Entity names are compared with all the graph's name vectors (one
  matrix product per update). So a chunk's list may be stale *below* the threshold, where it
  makes no edge, and its edges are those an exact full build makes.

The cost is proportional to the change and to one pass over the graph's arrays, never to
the number of chunk pairs. Similarities from the store search and from the build's matrix
product can differ in the last float bits, so a pair exactly at a threshold may fall either
way. :func:`update_from_store` works out the change from what the store holds. A graph saved
without neighbour lists, or built with other parameters or another embedder, raises
:class:`NeedsRebuild`; the caller builds it again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kvgraph.docgraph import name_codec
from kvgraph.docgraph.build import (
    CHUNK,
    DOC_PREFIX,
    EDGE_TYPES,
    ENTITY_PREFIX,
    SYNONYM_KINDS,
    Builder,
    ChunkParts,
    DocGraph,
    RowBuffer,
    add_chunks,
    append_rows,
    embed_names,
    kind_codes,
    name_rows,
    packed_unit_rows,
    quantize_rows,
    saved_names,
)
from kvgraph.docgraph.extract import EntityExtractor, entity_key
from kvgraph.docgraph.knn import pairs_from_lists, unique_pairs, unit_rows
from kvgraph.docgraph.names_file import NamesFile
from kvgraph.docgraph.triples import Triple
from kvgraph.schema import Node, NodeRelationship

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder
    from kvgraph.filters import FilterSpec
    from kvgraph.store.embedded import EmbeddedVectorStore

# (unit vectors, m) -> for each vector, the ids and cosine similarities of its m nearest chunks, best first
Neighbours = Callable[[np.ndarray, int], list[tuple[list[str], list[float]]]]
# chunk ids -> their stored vectors (one row each)
VectorsOf = Callable[[Sequence[str]], np.ndarray]
ReadChunks = Callable[[Sequence[str]], Sequence[Node]]  # chunk ids -> the stored chunks
TriplesOf = Callable[[Sequence[Node]], Mapping[str, Sequence[Triple]]]  # chunks -> their LLM triples

_KEPT_TYPES = np.array([EDGE_TYPES.index(t) for t in ("NEXT", "PARENT", "MENTIONS")], dtype=np.int8)
_FIRST_SEARCH = 32  # neighbours asked for first; doubled while they are all above the threshold
_NAME_BLOCK = 8192  # old name rows unpacked at a time by an update (12 MB of floats: stays in cache)


class NeedsRebuild(Exception):
    """The saved graph cannot be updated in place (see the module docstring): build it again."""


def update_doc_graph(
    graph: DocGraph,
    nodes: Sequence[Node],
    drop: Iterable[str],
    *,
    embedder: Embedder | None = None,
    neighbours: Neighbours | None = None,
    vectors_of: VectorsOf | None = None,
    read_chunks: ReadChunks | None = None,
    order: Mapping[str, int] | None = None,
    triples_of: TriplesOf | None = None,
    embed_batch: int = 256,
) -> DocGraph:
    """``graph`` without the chunks ``drop`` and with the chunks ``nodes`` (see the module docstring).

    ``nodes`` carry their stored embeddings; ``neighbours`` searches the stored chunks (all of
    them, ``nodes`` included) and ``vectors_of`` reads stored vectors, both needed only when the
    graph has SIMILAR edges; ``embedder`` embeds new entity names (the one the graph was built
    with). ``read_chunks`` reads stored chunks and ``order`` gives each chunk's position in store
    order (default: the graph's chunks, then ``nodes``): an entity is named after its first
    mention in that order, as a full build names it, so the chunks that first mention an entity
    whose mentions changed are read again. ``triples_of`` gives chunks' LLM triples when the
    graph was built with them (from the triple cache: no new LLM request for a chunk it has seen).
    """
    t_start = time.perf_counter()
    params = _check_params(graph, embedder, neighbours, vectors_of)
    g = _names_in_current_format(graph)
    drop_set = {c for c in drop if c in g.index and g.kinds[g.index[c]] == CHUNK}
    readd = {n.id for n in nodes}
    drop_set |= {c for c in readd if c in g.index}  # a chunk added again replaces its old version

    # 1. The nodes that stay, in their order; a document stays while one of its chunks does.
    keep = np.ones(g.n_nodes, dtype=bool)
    keep[[g.index[c] for c in drop_set]] = False
    losing = {g.doc_of[c] for c in drop_set if c in g.doc_of}  # documents that lose a chunk
    docs_left = {d for c, d in g.doc_of.items() if d in losing and c not in drop_set} if losing else set()
    for doc in losing - docs_left:
        i = g.index.get(DOC_PREFIX + doc)
        if i is not None:
            keep[i] = False
    old = np.flatnonzero(keep)
    remap = np.full(g.n_nodes, -1, dtype=np.int64)
    remap[old] = np.arange(old.size)
    if old.size == g.n_nodes:  # nothing removed (the usual ingest): copies, not rebuilt lists and dicts
        b = Builder(keys=list(g.keys), kinds=list(g.kinds), names=list(g.names), index=dict(g.index))
    else:
        b = Builder(keys=[g.keys[i] for i in old], kinds=[g.kinds[i] for i in old], names=[g.names[i] for i in old])
        b.index = dict(zip(b.keys, range(len(b.keys))))

    # 2. Edges that stay: structure and mentions between nodes that stay (the rest is derived below).
    removed_none = old.size == g.n_nodes  # the usual ingest: the old numbering stands
    stays = np.isin(g.etype, _KEPT_TYPES)
    if not removed_none:
        stays &= keep[g.src] & keep[g.dst]
    kept_src, kept_dst = (g.src[stays], g.dst[stays]) if removed_none else (remap[g.src[stays]], remap[g.dst[stays]])
    kept_edges = (kept_src, kept_dst, g.etype[stays], g.weight[stays])

    # 3. The added chunks, exactly as a full build adds them.
    ordered = list(nodes)  # in the caller's order: store order, as a full build takes them
    parts = ChunkParts()
    extractor_params = params["extractor"]
    extractor = EntityExtractor(**extractor_params) if extractor_params else EntityExtractor()
    offline = extractor_params is not None
    triples = triples_of(ordered) if triples_of is not None and ordered else None
    add_chunks(b, parts, ordered, extractor, float(params["title_weight"]), triples, offline)
    doc_of = (g.doc_of if removed_none else {c: d for c, d in g.doc_of.items() if c not in drop_set}) | parts.doc_of
    facts = [(int(remap[s]), int(remap[o]), r, c) for s, o, r, c in g.facts if c not in drop_set]
    facts += parts.facts

    # 4. Orphans: entities no chunk mentions, documents no chunk belongs to.
    src, dst, etype, weight = _concat(kept_edges, b.edges)
    n_mid = len(b.keys)
    if old.size == g.n_nodes:
        kinds = np.concatenate([g.kind_array, kind_codes(b.kinds[g.n_nodes :])])
    else:
        kinds = kind_codes(b.kinds)
    if removed_none:
        # Nothing to orphan: the old nodes had their chunks and mentions, and every new node comes
        # with an edge from a new chunk (PARENT to its document, MENTIONS to its entities).
        alive = np.ones(n_mid, dtype=bool)
    else:
        from_chunk = kinds[src] == 0
        mentioned = np.zeros(n_mid, dtype=bool)
        mentioned[dst[from_chunk & (etype == EDGE_TYPES.index("MENTIONS"))]] = True
        has_chunk = np.zeros(n_mid, dtype=bool)
        has_chunk[dst[from_chunk & (etype == EDGE_TYPES.index("PARENT"))]] = True
        alive = (kinds == 0) | ((kinds == 2) & mentioned) | ((kinds == 1) & has_chunk)
    every = bool(alive.all())  # nothing orphaned: the builder's lists, index and edges stand as they are
    if every:
        final = np.arange(n_mid, dtype=np.int64)
    else:
        final = np.full(n_mid, -1, dtype=np.int64)
        final[alive] = np.arange(int(alive.sum()))
        live_edge = alive[src] & alive[dst]
        src, dst, etype, weight = final[src[live_edge]], final[dst[live_edge]], etype[live_edge], weight[live_edge]
    keys = b.keys if every else [k for k, a in zip(b.keys, alive.tolist()) if a]
    out_kinds = b.kinds if every else [k for k, a in zip(b.kinds, alive.tolist()) if a]
    names = b.names if every else [k for k, a in zip(b.names, alive.tolist()) if a]
    key_index = b.index if every else dict(zip(keys, range(len(keys))))
    kinds = kinds if every else kinds[alive]
    to_final = np.where(remap >= 0, final[np.maximum(remap, 0)], -1)  # old node -> updated graph's (-1: gone)
    new_node = final  # builder node -> node of the updated graph
    facts = [(int(new_node[s]), int(new_node[o]), r, c) for s, o, r, c in facts]

    # Entities whose mentions changed are named after their first mention in store order, as a build names them.
    mention = etype == EDGE_TYPES.index("MENTIONS")
    old_touched = np.zeros(0, np.int64)
    if drop_set:
        dropped = np.array([g.index[c] for c in drop_set], dtype=np.int64)
        old_touched = to_final[g.dst[(g.etype == EDGE_TYPES.index("MENTIONS")) & np.isin(g.src, dropped)]]
    added_nodes = final[[b.index[n.id] for n in ordered]] if ordered else np.zeros(0, np.int64)
    # The added chunks' mentions are the builder's edges, after the kept ones (when nothing was
    # renumbered): look there, not through a million edges (~50 ms at 100k chunks).
    tail = len(kept_edges[0]) if every else 0
    new_mentions = mention[tail:] & np.isin(src[tail:], added_nodes)
    touched = np.unique(np.concatenate([old_touched[old_touched >= 0], dst[tail:][new_mentions]]))

    def position(chunk: int) -> int:  # in store order (asked only for the chunks that mention touched entities)
        return chunk if order is None else order.get(keys[chunk], len(order) + chunk)

    first = _first_mentions(
        touched,
        src[mention],
        dst[mention],
        keys,
        position,
        {n.id: n for n in ordered},
        read_chunks,
        extractor,
        offline,
        triples_of,
    )
    old_names = list(names)
    for e, (name, _) in first.items():
        names[e] = name
    timings = {"structure_s": time.perf_counter() - t_start}

    # 5. RELATED from the facts, SYNONYM and SIMILAR from the neighbour lists.
    extra: list[tuple[np.ndarray, np.ndarray, str, np.ndarray]] = []
    if facts:
        pairs = np.unique(np.array([(s, o) for s, o, _, _ in facts], dtype=np.int64), axis=0)
        extra.append((pairs[:, 0], pairs[:, 1], "RELATED", np.ones(len(pairs), np.float32)))
    t0 = time.perf_counter()
    entity = None
    kept_rows = np.zeros(0, np.int64)
    if g.name_count() is not None and g.entity_vector_rows is not None and embedder is not None:
        # A name vector stays while its entity does under the same name; a renamed entity or one
        # that now counts for synonyms gets a new one.
        row_nodes = to_final[g.entity_vector_rows]
        renamed = {e for e, (name, kind) in first.items() if name != old_names[e] or kind not in SYNONYM_KINDS}
        kept_rows = np.flatnonzero((row_nodes >= 0) & ~np.isin(row_nodes, np.array(sorted(renamed), np.int64)))
        has_row = np.zeros(len(keys), dtype=bool)
        has_row[row_nodes[kept_rows]] = True
        new_rows = sorted(e for e, (_, kind) in first.items() if kind in SYNONYM_KINDS and not has_row[e])
        entity = _update_entities(g, kept_rows, row_nodes[kept_rows], new_rows, names, embedder, params, embed_batch)
    if entity is not None:
        _, rows, syn_cols, syn_sims = entity
        a, c, w = pairs_from_lists(syn_cols, syn_sims, float(params["synonym_threshold"]))
        extra.append((rows[a], rows[c], "SYNONYM", w))
    timings["synonyms_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    similar = None
    if g.similar_rows is not None and neighbours is not None and vectors_of is not None:
        added = [(int(new_node[b.index[n.id]]), n) for n in ordered]
        similar = _update_similar(g, to_final, added, key_index, keys, neighbours, vectors_of, params)
        threshold = float(params["similar_threshold"])
        if removed_none and every:  # the old numbering: the old pairs, and those of the lists that changed
            a, c, w = _similar_pairs_after(g, similar, len(keys), threshold)
        else:
            a, c, w = pairs_from_lists(similar[1], similar[2], threshold, rows=similar[0])
        extra.append((a, c, "SIMILAR", w))
    timings["knn_s"] = time.perf_counter() - t0
    for a, c, name, w in extra:
        src, dst = np.concatenate([src, a]), np.concatenate([dst, c])
        etype = np.concatenate([etype, np.full(len(a), EDGE_TYPES.index(name), np.int8)])
        weight = np.concatenate([weight, np.asarray(w, np.float32)])

    packed = None if entity is None else _packed_of(g, entity[0].fresh, kept_rows)
    # Floats when the old graph had them unpacked (a long-lived process: in place when there is
    # room), else left packed: name_matrix() unpacks them if a query needs them.
    float_rows = None
    if entity is not None and entity[0].old is not None:
        float_rows = append_rows(g.vector_rows, entity[0].old, entity[0].fresh)
    meta = dict(g.meta)
    meta["updates"] = int(meta.get("updates", 0)) + 1
    meta["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta["update_timings"] = {k: round(v, 3) for k, v in (timings | {"total_s": time.perf_counter() - t_start}).items()}
    updated = DocGraph(
        keys=keys,
        kinds=out_kinds,
        names=names,
        src=src.astype(np.int64, copy=False),
        dst=dst.astype(np.int64, copy=False),
        etype=etype.astype(np.int8, copy=False),
        weight=weight.astype(np.float32, copy=False),
        doc_of=doc_of,
        entity_vectors=None if float_rows is None else float_rows.view(),
        entity_vector_rows=None if entity is None else entity[1],
        entity_vectors_packed=None if packed is None else packed[0],
        names_file=None if packed is None else packed[2],
        meta=meta,
        facts=facts,
        similar_rows=None if similar is None else similar[0],
        similar_cols=None if similar is None else similar[1],
        similar_sims=None if similar is None else similar[2],
        synonym_cols=None if entity is None else entity[2],
        synonym_sims=None if entity is None else entity[3],
        known_index=key_index,
        known_kinds=kinds,
    )
    updated.vector_rows = float_rows
    updated.packed_rows = None if packed is None else packed[1]
    if old.size == g.n_nodes and every:  # nodes only added: the saved strings, then the new ones
        _extend_packed(g, updated, first, parts.doc_of)
    return updated


def _extend_packed(
    g: DocGraph, updated: DocGraph, renamed: Mapping[int, tuple[str, str]], new_docs: dict[str, str]
) -> None:
    """The packed strings of ``updated`` from ``g``'s, where its nodes and chunks are ``g``'s then new ones."""
    n = g.n_nodes
    keys, names = g.packed.get("keys"), g.packed.get("names")
    if keys is not None and keys.holds(g.keys):
        updated.packed["keys"] = keys.extended(updated.keys, updated.keys[n:])
    # An entity whose first mention changed may be named otherwise now: then the names are packed again.
    if names is not None and names.holds(g.names) and all(updated.names[e] == g.names[e] for e in renamed if e < n):
        updated.packed["names"] = names.extended(updated.names, updated.names[n:])
    chunks, docs = g.packed.get("doc_of_chunks"), g.packed.get("doc_of_docs")
    known = chunks is not None and docs is not None and chunks.holds(g.doc_of) and docs.holds(g.doc_of)
    if known and not any(c in g.doc_of for c in new_docs):  # the new chunks' entries follow the old ones
        assert chunks is not None and docs is not None
        updated.packed["doc_of_chunks"] = chunks.extended(updated.doc_of, list(new_docs))
        updated.packed["doc_of_docs"] = docs.extended(updated.doc_of, list(new_docs.values()))


def _first_mentions(
    touched: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    keys: list[str],
    position: Callable[[int], int],
    known: Mapping[str, Node],
    read_chunks: ReadChunks | None,
    extractor: EntityExtractor,
    offline: bool,
    triples_of: TriplesOf | None,
) -> dict[int, tuple[str, str]]:
    """(name, kind) of each ``touched`` entity from its first mention in store order, as a build takes it.

    ``src -> dst`` are the MENTIONS edges; a build names an entity after the first chunk whose
    offline extraction finds it, else the first whose triples name it. Chunks not in ``known``
    are read with ``read_chunks``, a few per round (most entities are settled by their first chunk).
    """
    wanted = np.isin(dst, touched)
    candidates: dict[int, list[int]] = {}
    for e, c in sorted(zip(dst[wanted].tolist(), src[wanted].tolist()), key=lambda p: (p[0], position(p[1]))):
        candidates.setdefault(e, []).append(c)
    chunks: dict[int, Node] = {}

    def load(needed: Iterable[int]) -> None:
        missing = [c for c in needed if c not in chunks and keys[c] not in known]
        for c in needed:
            if c not in chunks and keys[c] in known:
                chunks[c] = known[keys[c]]
        if missing and read_chunks is not None:
            got = {n.id: n for n in read_chunks([keys[c] for c in missing])}
            chunks.update({c: got[keys[c]] for c in missing if keys[c] in got})

    found: dict[int, tuple[str, str]] = {}
    found_in: dict[int, dict[str, Any]] = {}
    pending = dict.fromkeys(candidates, 0) if offline else {}
    while pending:
        load({candidates[e][p] for e, p in pending.items()})
        for e, p in list(pending.items()):
            c = candidates[e][p]
            if c in chunks and c not in found_in:
                found_in[c] = {m.key: m for m in extractor.extract(chunks[c].text)}
            m = found_in.get(c, {}).get(keys[e][len(ENTITY_PREFIX) :])
            if m is not None:
                found[e] = (m.name, m.kind)
                del pending[e]
            elif p + 1 < len(candidates[e]):
                pending[e] = p + 1
            else:
                del pending[e]
    rest = [e for e in candidates if e not in found]
    if rest and triples_of is not None:
        load({c for e in rest for c in candidates[e]})
        triples = triples_of([chunks[c] for c in sorted({c for e in rest for c in candidates[e]}) if c in chunks])
        for e in rest:
            key = keys[e][len(ENTITY_PREFIX) :]
            names = (n for c in candidates[e] for t in triples.get(keys[c], ()) for n in (t.subject, t.object))
            name = next((n for n in names if entity_key(n) == key), None)
            if name is not None:
                found[e] = (name, "triple")
    return found


def _check_params(
    g: DocGraph, embedder: Embedder | None, neighbours: Neighbours | None, vectors_of: VectorsOf | None
) -> dict[str, Any]:
    params = g.meta.get("params")
    if not isinstance(params, dict) or "knn_method" not in params:
        raise NeedsRebuild("the graph was saved without the parameters an update needs")
    if int(params["knn"]) > 0 and (g.similar_rows is None or neighbours is None or vectors_of is None):
        raise NeedsRebuild("no chunk neighbour lists (or no store to search)")
    if g.name_count() is not None:
        if embedder is None or getattr(embedder, "model_name", None) != params.get("entity_embedder"):
            raise NeedsRebuild("entity names were embedded by another model")
        if int(params["synonym_k"]) > 0 and g.synonym_cols is None:
            raise NeedsRebuild("no entity neighbour lists")
    return params


def _concat(
    kept: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], new: dict[tuple[int, int, int], float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if new:
        rows = np.array(list(new), dtype=np.int64)
        w = np.array(list(new.values()), dtype=np.float32)
    else:
        rows, w = np.zeros((0, 3), np.int64), np.zeros(0, np.float32)
    return (
        np.concatenate([kept[0], rows[:, 0]]),
        np.concatenate([kept[1], rows[:, 1]]),
        np.concatenate([kept[2], rows[:, 2].astype(np.int8)]),
        np.concatenate([kept[3], w]),
    )


# ---------------------------------------------------------------------------------------------- lists


def top_k_merge(cols: np.ndarray, sims: np.ndarray, cand: np.ndarray, cand_sims: np.ndarray, k: int) -> None:
    """Merge candidates (one row of ``cand`` per list, -1 padded) into the top-``k`` lists in place.

    A candidate already in its list is not added twice; lists stay sorted best first.
    """
    if not len(cols) or not cand.size:
        return
    dup = (cand[:, :, None] == cols[:, None, :]).any(axis=2) | (cand < 0)
    all_cols = np.concatenate([cols, np.where(dup, -1, cand)], axis=1)
    all_sims = np.concatenate([sims, np.where(dup, -np.inf, cand_sims).astype(np.float32)], axis=1)
    order = np.argsort(-all_sims, axis=1, kind="stable")[:, :k]
    cols[:] = np.take_along_axis(all_cols, order, axis=1)
    sims[:] = np.take_along_axis(all_sims, order, axis=1)


class NameRows:
    """The updated graph's name vectors, the old graph's kept rows then the new ones, as unit float32
    rows read by block: from the old graph's unpacked matrix when it has one, else unpacked from its
    packed rows a block at a time (an ingest process never holds all of them as floats)."""

    def __init__(self, g: DocGraph, kept_rows: np.ndarray, fresh: np.ndarray) -> None:
        every = kept_rows.size == g.name_count()
        floats, packed = g.entity_vectors, g.entity_vectors_packed
        self.old: np.ndarray | None = None
        self.old_packed: np.ndarray | None = None
        if floats is not None:
            self.old = floats if every else floats[kept_rows]
        else:
            assert packed is not None
            self.old_packed = packed if every else packed[kept_rows]
        self.dim = floats.shape[1] if floats is not None else name_codec.row_dim(packed)  # type: ignore[arg-type]
        self.fresh = np.asarray(fresh, dtype=np.float32)
        self._block: np.ndarray | None = None  # scaled_rows' buffer (its rows are valid until the next call)
        self._values: np.ndarray | None = None  # and the unpacked values' (int8)
        self.n_old = int(kept_rows.size)
        self.n = self.n_old + len(self.fresh)

    def scaled_rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Old rows ``lo`` to ``hi`` as float32 and the factor that makes each a unit row.

        A product with the rows, times the factors, is the product with the unit rows, without
        normalising every row first (a third of an update's pass over 187k packed names).
        """
        if self.old is not None:
            rows = self.old[lo:hi]
            return rows, np.ones(len(rows), np.float32)
        assert self.old_packed is not None
        # Into one buffer, not a new 12 MB array a block: each of those came as fresh pages from the
        # OS in a new process (an ingest's), and faulting them in doubled the pass (0.17 -> 0.09 s).
        if self._block is None or len(self._block) < hi - lo:
            self._block = np.empty((hi - lo, self.dim), np.float32)
            self._values = np.empty((hi - lo, self.dim), np.int8)
        rows = self._block[: hi - lo]
        rows[:] = name_codec.values(self.old_packed[lo:hi], out=self._values)
        squares = np.einsum("ij,ij->i", rows, rows)
        return rows, (1.0 / np.sqrt(np.where(squares > 0, squares, 1.0))).astype(np.float32)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The rows at ``index`` (any order)."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((index.size, self.dim), np.float32)
        is_old = index < self.n_old
        if is_old.any():
            out[is_old] = name_rows(self.old, self.old_packed, index[is_old])
        out[~is_old] = self.fresh[index[~is_old] - self.n_old]
        return out


def _carry_lists(
    rows_old: np.ndarray, cols_old: np.ndarray, sims_old: np.ndarray, mapping: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lists of the rows that survive ``mapping`` (old number -> new, -1 gone), renumbered.

    Returns (new row numbers, lists, similarities, whether a list lost a member and must be searched again).
    """
    if np.array_equal(mapping, np.arange(len(mapping))):  # nothing removed (an ingest of new files): as they are
        return rows_old, cols_old.copy(), sims_old.copy(), np.zeros(len(rows_old), dtype=bool)
    rows = mapping[rows_old]
    live = rows >= 0
    cols = np.where(cols_old >= 0, mapping[np.maximum(cols_old, 0)], -1)[live]
    sims = np.where(cols >= 0, sims_old[live], -np.inf).astype(np.float32)
    lost = ((cols_old[live] >= 0) & (cols < 0)).any(axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")
    return rows[live], np.take_along_axis(cols, order, axis=1), np.take_along_axis(sims, order, axis=1), lost


def _update_entities(
    g: DocGraph,
    kept_rows: np.ndarray,
    kept_nodes: np.ndarray,
    new_entities: list[int],
    names: list[str],
    embedder: Embedder,
    params: Mapping[str, Any],
    embed_batch: int,
) -> tuple[NameRows, np.ndarray, np.ndarray, np.ndarray]:
    """Entity name vectors (old kept rows, then the new names'), their nodes and neighbour lists after the update.

    ``kept_rows`` of the old vectors stay (their entities now ``kept_nodes``); the names of
    ``new_entities`` are embedded and appended.
    """
    assert g.name_count() is not None and g.entity_vector_rows is not None
    old_nodes = g.entity_vector_rows
    row_map = np.full(len(old_nodes), -1, dtype=np.int64)
    row_map[kept_rows] = np.arange(kept_rows.size)
    # Saved vectors are unit rows already (embed_names returns unit rows too).
    fresh = embed_names(embedder, [names[e] for e in new_entities], embed_batch)
    vectors = NameRows(g, kept_rows, fresh)
    rows = np.concatenate([kept_nodes, np.array(new_entities, dtype=np.int64)])
    k = int(params["synonym_k"])
    n, n_old = vectors.n, vectors.n_old
    cols = np.full((n, k), -1, np.int64)
    sims = np.full((n, k), -np.inf, np.float32)
    if k < 1 or g.synonym_cols is None or g.synonym_sims is None:
        return vectors, rows, cols, sims
    _, cols_old, sims_old, lost = _carry_lists(np.arange(len(old_nodes)), g.synonym_cols, g.synonym_sims, row_map)
    cols[:n_old], sims[:n_old] = cols_old, sims_old
    # Lists that lost a member, and the new names', are searched against every name; the other
    # lists take in the new names that beat their worst member. Both in one pass over the old
    # names, a block at a time: at 187k names the two passes, each unpacking the whole packed matrix
    # into one 288 MB temporary, took ~0.75 s of a one-file ingest; one pass in 8k-row blocks ~0.13 s.
    redo = np.concatenate([np.flatnonzero(lost), np.arange(n_old, n)])
    redo_q = vectors.take(redo)
    redo_cols = np.full((redo.size, k), -1, np.int64)
    redo_sims = np.full((redo.size, k), -np.inf, np.float32)
    new = np.arange(n_old, n)
    new_t = np.ascontiguousarray(vectors.fresh.T)
    for lo in range(0, n_old if redo.size else 0, _NAME_BLOCK):
        block, scale = vectors.scaled_rows(lo, min(lo + _NAME_BLOCK, n_old))
        _nearest_in_block((redo_q @ block.T) * scale, redo, lo, redo_cols, redo_sims, k)
        if new.size:
            _merge_new_names((block @ new_t) * scale[:, None], lo, new, cols, sims, lost, k)
    if redo.size and new.size:
        _nearest_in_block(redo_q @ vectors.fresh.T, redo, n_old, redo_cols, redo_sims, k)
    redo_cols[redo_sims == -np.inf] = -1
    cols[redo], sims[redo] = redo_cols, redo_sims
    return vectors, rows, cols, sims


def _nearest_in_block(s: np.ndarray, own: np.ndarray, lo: int, cols: np.ndarray, sims: np.ndarray, k: int) -> None:
    """Merge rows ``lo..`` (``s``: each query's similarity to them) into each query's top-``k``
    list, skipping the query's own row ``own``."""
    width = s.shape[1]
    inside = (own >= lo) & (own < lo + width)
    s[np.flatnonzero(inside), own[inside] - lo] = -np.inf
    take = min(k, width)
    if take < 1:
        return
    top = np.argpartition(-s, take - 1, axis=1)[:, :take]
    all_cols = np.concatenate([cols, top + lo], axis=1)
    all_sims = np.concatenate([sims, np.take_along_axis(s, top, axis=1)], axis=1)
    order = np.argsort(-all_sims, axis=1, kind="stable")[:, :k]
    cols[:] = np.take_along_axis(all_cols, order, axis=1)
    sims[:] = np.take_along_axis(all_sims, order, axis=1)


def _merge_new_names(
    s: np.ndarray, lo: int, new: np.ndarray, cols: np.ndarray, sims: np.ndarray, lost: np.ndarray, k: int
) -> None:
    """Old lists ``lo..`` take in the new names (``s``: their similarities) that beat their worst member.

    Most lists keep their members: only those a new name beats are merged, and not the lists
    searched again (``lost``).
    """
    part = np.arange(lo, lo + len(s))
    beats = (s > sims[part, -1:]).any(axis=1) & ~lost[part]
    part, s = part[beats], s[beats]
    if not part.size:
        return
    take = min(k, new.size)
    top = np.argpartition(-s, take - 1, axis=1)[:, :take]
    c, cs = cols[part], sims[part]
    top_k_merge(c, cs, new[top], np.take_along_axis(s, top, axis=1), k)
    cols[part], sims[part] = c, cs


def _names_in_current_format(g: DocGraph) -> DocGraph:
    """``g`` itself, or a copy whose int8 name vectors (a graph saved before format 4) are packed
    the way a save packs them now: the update's synonym lists and the vectors it keeps in memory
    are then computed from the rows it saves, as a full build's are (``embed_names``)."""
    packed = g.entity_vectors_packed
    if packed is None or packed.dtype != np.int8 or not name_codec.packs(packed.shape[1]):
        return g
    converted = quantize_rows(packed_unit_rows(packed))
    floats = None if g.entity_vectors is None else packed_unit_rows(converted)
    copy = dataclasses.replace(
        g,
        entity_vectors=floats,
        entity_vectors_packed=converted,
        names_file=None,
        known_index=g.index,
        known_kinds=g.kind_array,
    )
    copy.saved_in, copy.adjacency_file = g.saved_in, g.adjacency_file
    return copy


def _packed_of(
    g: DocGraph, fresh: np.ndarray, kept_rows: np.ndarray
) -> tuple[np.ndarray, RowBuffer | None, NamesFile | None] | None:
    """The saved (packed) form of the updated name vectors (the old graph's rows kept, the new ones
    quantized), and where it lives: a buffer with room, or the old graph's name file when the new
    rows could be appended to it (:mod:`kvgraph.docgraph.names_file`: no copy of the old rows).

    Quantizing every row again at each save took 0.17 s at 187k names; the rows are at stored
    precision, so quantizing them again gives the same bytes.
    """
    packed = g.entity_vectors_packed
    if packed is None or g.entity_vector_rows is None:
        return None
    every_row = kept_rows.size == len(g.entity_vector_rows)
    new = quantize_rows(fresh)
    names = g.names_file
    if every_row and names is not None and names.rows == len(packed):
        if not len(new):
            return packed, None, names
        grown = names.append(new, saved_names(names.path.parent))
        if grown is not None:
            return grown.map(check=False), None, grown
    old = packed if every_row else packed[kept_rows]
    buffer = append_rows(g.packed_rows, old, new)
    return buffer.view(), buffer, None


def _update_similar(
    g: DocGraph,
    to_final: np.ndarray,
    added: list[tuple[int, Node]],
    index: Mapping[str, int],
    keys: list[str],
    neighbours: Neighbours,
    vectors_of: VectorsOf,
    params: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunks' neighbour lists after the update: (chunk nodes, lists of nodes, similarities, and
    the chunk nodes whose list is new or changed)."""
    assert g.similar_rows is not None and g.similar_cols is not None and g.similar_sims is not None
    k, threshold = int(params["knn"]), float(params["similar_threshold"])
    rows, cols, sims, lost = _carry_lists(g.similar_rows, g.similar_cols, g.similar_sims, to_final)
    merged = np.zeros(len(rows), dtype=bool)  # lists a new chunk entered, or searched again
    position = np.full(max(len(keys), int(rows.max(initial=-1)) + 1), -1, dtype=np.int64)  # node -> its list
    position[rows] = np.arange(rows.size)
    vectors = np.stack([_vector(n) for _, n in added]) if added else np.zeros((0, 1), np.float32)
    new_rows = np.array([node for node, _ in added], dtype=np.int64)
    new_cols = np.full((len(added), k), -1, np.int64)
    new_sims = np.full((len(added), k), -np.inf, np.float32)
    # A new chunk's nearest chunks, and every chunk at least `threshold` similar to it.
    for p, found in enumerate(_search_until_below(vectors, neighbours, threshold, k + 1)):
        me = int(new_rows[p])
        hits = [(index[i], s) for i, s in zip(*found) if i in index and index[i] != me]
        for slot, (j, s) in enumerate(hits[:k]):
            new_cols[p, slot], new_sims[p, slot] = j, s
        # Every list it beats takes it in, in one merge (the hits are distinct chunks: one row each).
        if hits:
            near = np.array([j for j, _ in hits], dtype=np.int64)
            near_sims = np.array([s for _, s in hits], dtype=np.float32)
            q = position[near]
            ok = (near_sims >= threshold) & (q >= 0)
            ok[ok] = ~lost[q[ok]]
            q = q[ok]
            if q.size:
                c, cs = cols[q], sims[q]
                top_k_merge(c, cs, np.full((q.size, 1), me, np.int64), near_sims[ok][:, None], k)
                merged[q] |= (c != cols[q]).any(axis=1)
                cols[q], sims[q] = c, cs
    # Chunks whose list named a deleted chunk: searched again.
    redo = np.flatnonzero(lost)
    merged |= lost
    if redo.size:
        redo_vectors = unit_rows(vectors_of([keys[int(r)] for r in rows[redo]]))
        for p, found in zip(redo.tolist(), _search(redo_vectors, neighbours, k + 1)):
            me = int(rows[p])
            hits = [(index[i], s) for i, s in zip(*found) if i in index and index[i] != me][:k]
            cols[p] = -1
            sims[p] = -np.inf
            for slot, (j, s) in enumerate(hits):
                cols[p, slot], sims[p, slot] = j, s
    return (
        np.concatenate([rows, new_rows]),
        np.concatenate([cols, new_cols]),
        np.concatenate([sims, new_sims]).astype(np.float32),
        np.concatenate([rows[merged], new_rows]),
    )


def _similar_pairs_after(
    g: DocGraph, lists: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], n_nodes: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SIMILAR pairs of the updated lists, from ``g``'s and the lists that changed (nodes numbered as in ``g``).

    :func:`~kvgraph.docgraph.knn.pairs_from_lists` over every list sorted 375k pairs at 100k chunks
    (~45 ms of a one-file ingest). A pair neither of whose chunks has a changed list comes from the
    same lists as before, so it is ``g``'s pair; the pairs with a changed chunk are taken again from
    every list entry that names one, first occurrence first as ``pairs_from_lists`` takes them.
    """
    rows, cols, sims, changed = lists
    is_changed = np.zeros(n_nodes, dtype=bool)
    is_changed[changed] = True
    old = g.etype == EDGE_TYPES.index("SIMILAR")
    a, c, w = g.src[old], g.dst[old], g.weight[old]
    stays = ~(is_changed[a] | is_changed[c])
    touches = (is_changed[rows][:, None] | is_changed[np.maximum(cols, 0)]) & (cols >= 0) & (sims >= threshold)
    at, slot = np.nonzero(touches)
    na, nc, nw = unique_pairs(rows[at], cols[at, slot], sims[at, slot], threshold, max(n_nodes, 1))
    return (
        np.concatenate([a[stays], na]),
        np.concatenate([c[stays], nc]),
        np.concatenate([w[stays].astype(np.float32), nw]),
    )


def _vector(node: Node) -> np.ndarray:
    v = node.embedding_array()
    if v is None:
        raise ValueError(f"chunk {node.id} has no stored vector")
    return np.asarray(v, dtype=np.float32)


def _search(vectors: np.ndarray, neighbours: Neighbours, m: int) -> list[tuple[list[str], list[float]]]:
    return neighbours(unit_rows(vectors), m) if len(vectors) else []


def _search_until_below(
    vectors: np.ndarray, neighbours: Neighbours, threshold: float, m: int
) -> list[tuple[list[str], list[float]]]:
    """Each vector's nearest chunks, at least ``m`` and every one at least ``threshold`` similar."""
    m = max(m, _FIRST_SEARCH)
    out = _search(vectors, neighbours, m)
    todo = [p for p, (ids, s) in enumerate(out) if len(ids) >= m and s[-1] >= threshold]
    while todo:
        m *= 2
        again = _search(vectors[todo], neighbours, m)
        for p, found in zip(todo, again):
            out[p] = found
        todo = [p for p, (ids, s) in zip(todo, again) if len(ids) >= m and s[-1] >= threshold]
    return out


UPDATE_MAX_SHARE = 0.5  # more changed chunks than this share of all: a full build is as cheap and simpler


def update_from_store(
    graph: DocGraph,
    store: EmbeddedVectorStore,
    filters: FilterSpec,
    embedder: Embedder | None,
    triples_of: TriplesOf | None = None,
) -> DocGraph | None:
    """``graph`` brought up to date with the chunks ``store`` holds (those matching ``filters``); None if it is.

    Chunks no longer stored are dropped; new ones are added, and with them every chunk of their
    documents and of the documents that lost one (their NEXT links and titles may have changed).
    ``triples_of`` gives the LLM triples of the chunks added when the graph has them. Raises
    :class:`NeedsRebuild` when a full build is needed (see the module docstring) or cheaper.
    """
    # Where the store stands, read before the ids (a later write shows up as added next time); a
    # store without markers (a server backend) is compared id by id every time.
    marker_of = getattr(store, "change_marker", None)
    marker = marker_of() if marker_of is not None else None
    fast = _added_only(graph, store, filters)
    order: dict[str, int] | None = None
    removed: set[str] = set()
    if fast is not None:  # only new chunks of new documents since the graph's save: no 100k-id comparison
        nodes = fast
    else:
        ids = store.ids(filters=filters)
        if not ids:
            raise NeedsRebuild("no chunks are stored")
        index, kinds = graph.index, graph.kinds

        def in_graph(chunk: str) -> bool:
            node = index.get(chunk)
            return node is not None and kinds[node] == CHUNK

        added = [i for i in ids if not in_graph(i)]
        n_graph = int(np.count_nonzero(graph.kind_array == 0))
        if len(ids) - len(added) < n_graph:  # some chunks are gone (sets of 100k ids only then: ~0.05 s)
            keys = graph.keys
            removed = {keys[i] for i in np.flatnonzero(graph.kind_array == 0).tolist()} - set(ids)
        if not added and not removed:
            if marker is not None and graph.meta.get("store") != marker:
                graph.meta["store"] = marker  # up to date: the next update may take the short way
            return None
        if len(added) + len(removed) > UPDATE_MAX_SHARE * max(len(ids), n_graph):
            raise NeedsRebuild(f"{len(added)} chunks added and {len(removed)} removed, of {n_graph} in the graph")
        added_nodes = [n for n in store.get(added) if n is not None]
        dirty = {graph.doc_of[c] for c in removed if c in graph.doc_of} | {_doc_id(n) for n in added_nodes}
        redo: list[str] = []
        # Chunks of the documents that changed (none when only new documents came: skip 100k lookups).
        if removed or None in dirty or not dirty.isdisjoint(set(graph.doc_of.values())):
            redo = [i for i in ids if graph.doc_of.get(i) in dirty and in_graph(i)]
        order = {i: p for p, i in enumerate(ids)}
        nodes = sorted(added_nodes + [n for n in store.get(redo) if n is not None], key=lambda n: order[n.id])
    if not nodes and not removed:
        return None

    def neighbours(vectors: np.ndarray, m: int) -> list[tuple[list[str], list[float]]]:
        return [(list(r.ids), list(r.similarities)) for r in store.query_batch(vectors, m, filters=filters)]

    def vectors_of(chunk_ids: Sequence[str]) -> np.ndarray:
        return np.stack([_vector(n) for n in store.get(chunk_ids) if n is not None])

    def read_chunks(chunk_ids: Sequence[str]) -> list[Node]:
        return [n for n in store.get(chunk_ids) if n is not None]

    updated = update_doc_graph(
        graph,
        nodes,
        removed,  # and the chunks in `nodes` that the graph holds: added again
        embedder=embedder,
        neighbours=neighbours,
        vectors_of=vectors_of,
        read_chunks=read_chunks,
        order=order,  # None: the graph's chunks are in store order, and the new ones follow them
        triples_of=triples_of,
    )
    if marker is not None:
        updated.meta["store"] = marker
    else:
        updated.meta.pop("store", None)
    return updated


def _added_only(graph: DocGraph, store: EmbeddedVectorStore, filters: FilterSpec) -> list[Node] | None:
    """The chunks added since the graph's save (in store order) when that is all that changed, and
    only to new documents; None when that cannot be told without comparing every stored id.

    The graph records the store's :meth:`change_marker` it was made from; the store lists what was
    added after it (:meth:`added_since`), or None after a deletion or a compaction.
    """
    saved = graph.meta.get("store")
    added_since = getattr(store, "added_since", None)
    if filters is not None or not isinstance(saved, dict) or added_since is None:
        return None
    new = added_since(saved)
    if new is None:
        return None
    index, kinds = graph.index, graph.kinds
    added = [i for i in new if not (i in index and kinds[index[i]] == CHUNK)]
    n_graph = int(np.count_nonzero(graph.kind_array == 0))
    if n_graph != int(saved.get("live", -1)) + len(new) - len(added):
        return None  # the graph does not hold every chunk of that time: compare every id
    if len(added) > UPDATE_MAX_SHARE * (n_graph + len(added)):
        raise NeedsRebuild(f"{len(added)} chunks added, of {n_graph} in the graph")
    nodes = [n for n in store.get(added) if n is not None]
    docs = {_doc_id(n) for n in nodes}
    if None in docs or not docs.isdisjoint(set(graph.doc_of.values())):
        return None  # a document that gained chunks: its other chunks are added again, as a build would
    return nodes


def _doc_id(node: Node) -> str | None:
    doc = node.ref_doc_id or node.relationships.get(NodeRelationship.SOURCE.value)
    return doc if isinstance(doc, str) and doc else None
