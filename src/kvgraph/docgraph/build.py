"""Build a knowledge-vector graph from ingested chunks, with or without an LLM.

Nodes are the knowledge base's chunks, their documents and the entities the offline extractor
(:mod:`kvgraph.docgraph.extract`) finds in them, plus, when given, the subjects and objects of
LLM-extracted triples (:mod:`kvgraph.docgraph.triples`). Edges:

- ``NEXT`` chunk -> following chunk of the same document (the splitter's ``next`` link);
- ``PARENT`` chunk -> its parent chunk (hierarchical ingest) or else its document;
- ``MENTIONS`` chunk -> entity, weight ``title_weight`` when the entity is also in the
  document's title (the chunk is *about* it), else 1;
- ``SIMILAR`` chunk -> its ``knn`` nearest chunks by embedding cosine above ``similar_threshold``;
- ``SYNONYM`` entity -> entity whose name embeddings are closer than ``synonym_threshold``
  ("Bob Dylan" / "Dylan"), so two spellings of one thing connect;
- ``RELATED`` subject entity -> object entity of a triple; :attr:`DocGraph.facts` keeps each
  triple's relation text and the chunk that states it.

:class:`DocGraph` is plain arrays; :meth:`DocGraph.save` writes it to a directory
(``graph.npz`` + ``graph.json``, and the entity-name vectors in ``names-<id>.q6``,
:mod:`kvgraph.docgraph.names_file`) that :meth:`DocGraph.load` reads back in milliseconds. That
directory is the source of truth for retrieval (it is derived from the vector store and can
always be rebuilt from it); :func:`write_doc_graph` exports the same graph into a
:class:`~kvgraph.graphdb.base.GraphStore` so people can query it with Cypher.

Replacing a saved graph is atomic for readers, though it is two files: both carry the id of
the save that wrote them (``build``). A save writes both under temporary names first, then
renames the arrays into place, then the JSON. A reader that finds the arrays of one save next
to the JSON of another (a save in progress, or one killed between its two renames) takes the
JSON of the arrays' save from its temporary name, ``graph.json.tmp-<build>``, which stays
until the next save; so it reads the old graph or the new one, never a mix. The name-vector
file a JSON names is complete before that JSON is written, and rows a saved graph uses are never
written again (a file is deleted once no saved graph names it: a reader that finds it gone reads
the new save).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import struct
import time
import zipfile
from collections.abc import Callable, Hashable, Mapping, Sequence, Sized
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from kvgraph.docgraph import adjacency_file as adjacency_module
from kvgraph.docgraph import name_codec
from kvgraph.docgraph.adjacency_file import ADJACENCY_PREFIX, ADJACENCY_SUFFIX, AdjacencyFile, adjacency_name
from kvgraph.docgraph.csr import Csr
from kvgraph.docgraph.extract import EntityExtractor, entity_key
from kvgraph.docgraph.knn import chosen_method, knn_lists, knn_recall, pairs_from_lists
from kvgraph.docgraph.names_file import NAMES_PREFIX, SUFFIXES, NamesFile
from kvgraph.docgraph.side_files import remove_unused
from kvgraph.docgraph.triples import Triple
from kvgraph.errors import InvalidInputError
from kvgraph.fileio import disk_full_errors, fsync_dir
from kvgraph.schema import Node, NodeRelationship

if TYPE_CHECKING:
    from kvgraph.embed.base import Embedder
    from kvgraph.graphdb.base import GraphStore

CHUNK, DOCUMENT, ENTITY = "chunk", "document", "entity"
# Append only: a saved graph stores the list, and any prefix of it still loads.
EDGE_TYPES = ("NEXT", "PARENT", "MENTIONS", "SIMILAR", "SYNONYM", "RELATED")
ENTITY_PREFIX, DOC_PREFIX = "entity:", "doc:"
# 2: node keys, kinds, names and doc_of packed into graph.npz (JSON of 400k strings took ~0.9 s of
# every save and load at 100k chunks); 1 (JSON) is still read.
# 3: the name vectors in a file of their own that updates append to (names_file.py), node
# numbers saved as int32: a one-file ingest at 100k chunks read and wrote 142 MB, now 51 MB.
# 4: the name vectors packed in 6 bits a value (name_codec.py; 72 -> 54 MB at 100k chunks).
FORMAT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)
# Saved as int32 while the graph has fewer nodes than int32 holds; read back as int64.
_NODE_ARRAYS = frozenset(
    {"src", "dst", "entity_vector_rows", "similar_rows", "similar_cols", "synonym_cols"}
    | {f"{n}_lengths" for n in ("keys", "names", "doc_of_chunks", "doc_of_docs")}
)
_LENGTHS = tuple(f"{n}_lengths" for n in ("keys", "names", "doc_of_chunks", "doc_of_docs"))
_KIND_CODES = {CHUNK: 0, DOCUMENT: 1, ENTITY: 2}
_KIND_NAMES = (CHUNK, DOCUMENT, ENTITY)
NPZ_FILE, JSON_FILE = "graph.npz", "graph.json"
log = logging.getLogger(__name__)
ADJACENCY_KEY = "adjacency"  # graph.json: the saved adjacency of a full build (adjacency_file.py)
NAMES_KEY = "name_vectors"  # graph.json: the name-vector file (format 1 used "names" for the node names)
_TMP = ".tmp-"  # graph.json.tmp-<build>: a save's JSON before its rename (see the module docstring)
# A save that finishes while a reader reads makes it read both files again; between tries the
# reader waits a little longer each time, so a writer saving in a loop on a busy machine cannot
# outrun it every time (tests/kb/test_integrity_graph_save.py).
_LOAD_TRIES = 20
_LOAD_BACKOFF_S = 0.002
# Entity kinds embedded for synonym edges (phrases are many and rarely spelled two ways).
SYNONYM_KINDS = ("name", "acronym", "title", "triple")
T = TypeVar("T")
_BLOCK_ROWS = 16_384  # rows per block when converting name vectors (temporaries of block x dim)
LIST_ARRAYS = ("similar_rows", "similar_cols", "similar_sims", "synonym_cols", "synonym_sims")


@dataclass
class DocGraph:
    """A document graph as arrays: node ``keys`` with ``kinds`` and display ``names``; typed, weighted edges.

    Chunk keys are the chunk ids of the vector store; documents are ``doc:<id>``; entities
    ``entity:<canonical key>``. The entity-name vectors (optional, unit rows) embed the names of
    the entities listed in ``entity_vector_rows`` and let a query's entities match graph entities
    by meaning, not only by spelling. A loaded graph holds them packed (``entity_vectors_packed``)
    and ``entity_vectors`` is None until :meth:`name_matrix` unpacks them; read them through
    :meth:`name_matrix` (or :meth:`name_count`), not the field.
    """

    keys: list[str]
    kinds: list[str]
    names: list[str]
    src: np.ndarray
    dst: np.ndarray
    etype: np.ndarray  # index into EDGE_TYPES
    weight: np.ndarray
    doc_of: dict[str, str] = field(default_factory=dict)  # chunk id -> document id
    entity_vectors: np.ndarray | None = None
    entity_vector_rows: np.ndarray | None = None  # node index of each row of entity_vectors
    meta: dict[str, Any] = field(default_factory=dict)
    # Triples as (subject node, object node, relation, chunk id): the RELATED edges' labels and provenance.
    facts: list[tuple[int, int, str, str]] = field(default_factory=list)
    build: str | None = None  # the id of the save this graph was written by or read from (None: unsaved)
    # Nearest-neighbour lists behind the SIMILAR and SYNONYM edges, kept so that an incremental
    # update (kvgraph.docgraph.incremental) can maintain the edges without comparing every pair:
    # chunk similar_rows[r] has the nearest chunks similar_cols[r] (node indices, -1 padded) with
    # cosines similar_sims[r]; entity-vector row r has the nearest rows synonym_cols[r].
    similar_rows: np.ndarray | None = None
    similar_cols: np.ndarray | None = None
    similar_sims: np.ndarray | None = None
    synonym_cols: np.ndarray | None = None
    synonym_sims: np.ndarray | None = None
    # entity_vectors as saved (quantize_rows), when known: a save writes it instead of quantizing again.
    entity_vectors_packed: np.ndarray | None = field(default=None, repr=False)
    # The file entity_vectors_packed maps (a saved or updated graph), which a save appends to.
    names_file: NamesFile | None = field(default=None, repr=False, compare=False)
    # The adjacency saved for this graph (docgraph/adjacency_file.py), mapped on first use.
    adjacency_file: AdjacencyFile | None = field(default=None, repr=False, compare=False)
    # The directory this graph was loaded from or saved to (None: unsaved).
    saved_in: Path | None = field(default=None, repr=False, compare=False)
    # keys, names and doc_of as saved (pack_strings), kept from a load or a save and extended by
    # an update, so a save does not pack 400k strings again (~80 ms of a one-file ingest at 100k chunks).
    packed: dict[str, Packed] = field(default_factory=dict, repr=False, compare=False)
    # What an incremental update already holds (key -> node, kind codes): not computed again.
    known_index: InitVar[dict[str, int] | None] = None
    known_kinds: InitVar[np.ndarray | None] = None

    def __post_init__(self, known_index: dict[str, int] | None, known_kinds: np.ndarray | None) -> None:
        self.index = known_index if known_index is not None else dict(zip(self.keys, range(len(self.keys))))
        if known_kinds is not None:
            self.kind_array = np.asarray(known_kinds, dtype=np.int8)
        else:
            self.kind_array = kind_codes(self.kinds)
        self._derived: dict[Hashable, Any] = {}
        # Where entity_vectors / entity_vectors_packed live when they have room to grow (RowBuffer).
        self.vector_rows: RowBuffer | None = None
        self.packed_rows: RowBuffer | None = None

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, computed once per graph object and ``key``: what every query needs (the adjacency...).

        A loaded graph is shared by all queries of a process (:mod:`kvgraph.docgraph.cache`), so
        this turns per-query setup into a dictionary lookup. Do not change a graph's arrays after
        the first call.
        """
        if key not in self._derived:
            self._derived[key] = make()
        value: T = self._derived[key]
        return value

    def name_matrix(self) -> np.ndarray | None:
        """The entity-name vectors as unit float32 rows (None without any), unpacked from the saved
        packed rows on first use.

        A loaded graph keeps its name vectors packed until something needs them as floats (graph
        mode's name matching): an ingest that only updates the graph never does, and unpacking
        187k names at 100k chunks costs 0.1-0.9 s and 330 MB (its page faults vary with the
        machine). Two threads may unpack at once; they get equal arrays.
        """
        if self.entity_vectors is None and self.entity_vectors_packed is not None:
            rows = unit_rows_with_room(self.entity_vectors_packed)
            self.vector_rows, self.entity_vectors = rows, rows.view()
        return self.entity_vectors

    def name_count(self) -> int | None:
        """How many entity-name vectors the graph holds (None without any), without unpacking them."""
        for vectors in (self.entity_vectors, self.entity_vectors_packed):
            if vectors is not None:
                return len(vectors)
        return None

    @property
    def n_nodes(self) -> int:
        return len(self.keys)

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kinds if k == kind)

    def edge_counts(self) -> dict[str, int]:
        counts = np.bincount(self.etype, minlength=len(EDGE_TYPES))
        return {name: int(c) for name, c in zip(EDGE_TYPES, counts)}

    def mention_counts(self) -> np.ndarray:
        """How many chunks mention each node (0 for non-entities): the entity's document frequency."""
        mentions = self.etype == EDGE_TYPES.index("MENTIONS")
        return np.bincount(self.dst[mentions], minlength=self.n_nodes)

    def relations(self, a: str, b: str) -> list[tuple[str, str, str]]:
        """The facts linking node keys ``a`` and ``b`` (either direction) as (relation, direction, chunk id).

        ``direction`` is ``"->"`` when ``a`` is the subject and ``"<-"`` when ``b`` is.
        """
        ia, ib = self.index.get(a), self.index.get(b)
        out = []
        for s, o, relation, chunk in self.facts:
            if (s, o) == (ia, ib):
                out.append((relation, "->", chunk))
            elif (s, o) == (ib, ia):
                out.append((relation, "<-", chunk))
        return out

    def adjacency(self, edge_weights: Mapping[str, float] | None = None, symmetric: bool = True) -> Csr:
        """A CSR matrix of summed edge weights, each scaled by ``edge_weights[type]`` (default 1; 0 drops a type).

        ``symmetric=True`` adds every edge in both directions: a walk may go from an entity
        back to every chunk that mentions it.
        """
        factors = np.ones(len(EDGE_TYPES))
        for name, value in (edge_weights or {}).items():
            if name not in EDGE_TYPES:
                raise InvalidInputError(f"unknown edge type {name!r} in edge_weights; use {', '.join(EDGE_TYPES)}")
            if value < 0:
                raise InvalidInputError(f"edge_weights[{name!r}] must be >= 0, got {value!r}")
            factors[EDGE_TYPES.index(name)] = value
        default = symmetric and bool((factors == 1.0).all())
        saved = self.adjacency_file
        if saved is not None and default and saved.nodes == self.n_nodes:
            try:
                return saved.map()
            except (OSError, ValueError) as e:  # derived data: build it from the edges instead
                log.warning("%s not used (%s); the adjacency is built from the graph's edges", saved.path, e)
                self.adjacency_file = None
        matrix = self._edge_adjacency(factors, symmetric)
        if default and self.saved_in is not None and self.build is not None and self.adjacency_worth_saving():
            self._share_adjacency(self.saved_in, self.build, matrix)
        return matrix

    def adjacency_worth_saving(self) -> bool:
        """Whether the walk's adjacency is big enough to save in a file for other processes to map
        (:data:`kvgraph.docgraph.adjacency_file.MIN_EDGES`); a small one is built where it is needed."""
        return len(self.src) >= adjacency_module.MIN_EDGES

    def _edge_adjacency(self, factors: np.ndarray, symmetric: bool) -> Csr:
        w = self.weight.astype(np.float64) * factors[self.etype]
        keep = w > 0
        src, dst, w = self.src[keep], self.dst[keep], w[keep]
        if symmetric:
            src, dst, w = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([w, w])
        m = Csr.from_edges(src, dst, w, (self.n_nodes, self.n_nodes))
        # Float32 values, as the saved adjacency holds them (adjacency_file.py): a process that maps
        # the file and one that built the matrix walk alike.
        return Csr(m.indptr, m.indices, m.data.astype(np.float32), m.shape, sorted_rows=m.sorted_rows)

    def _share_adjacency(self, directory: Path, build: str, matrix: Csr) -> None:
        """Write the adjacency of the save ``build`` for the processes that load it after this one
        (docgraph/adjacency_file.py), while that save is the one on disk; a directory this process
        may not write is left as it is."""
        if _saved_info(directory).get("build") != build:  # a newer save replaced the one loaded
            return
        try:
            written = AdjacencyFile.write(directory, build, matrix, durable=False)
        except (OSError, ValueError) as e:
            log.debug("%s: the adjacency stays in this process (%s)", directory, e)
            return
        if written is not None and _saved_info(directory).get("build") != build:
            written.path.unlink(missing_ok=True)  # a save came in between and did not see the file
            return
        self.adjacency_file = written

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike[str], with_adjacency: bool = False) -> Path:
        """Write ``graph.npz`` and ``graph.json`` into ``directory`` (created); replaces an older graph atomically.

        ``with_adjacency`` (full builds) also saves the walk's adjacency for the default edge
        weights, which processes then map instead of building it (docgraph/adjacency_file.py),
        when the graph has enough edges for that to pay (:meth:`adjacency_worth_saving`).
        A full disk raises DiskFullError and leaves the older graph as it was.
        """
        d = Path(directory)
        build = secrets.token_hex(8)
        # astype(copy=False): arrays already in the saved type are written as they are, not copied
        # (an in-process ingest with a graph at 100k chunks: 0.225 -> 0.218 s median).
        arrays: dict[str, np.ndarray] = {
            "src": self.src.astype(np.int64, copy=False),
            "dst": self.dst.astype(np.int64, copy=False),
            "etype": self.etype.astype(np.int8, copy=False),
            "weight": self.weight.astype(np.float32, copy=False),
            "build": np.frombuffer(build.encode(), dtype=np.uint8),
        }
        known: np.ndarray | None = None
        if self.name_count() is not None and self.entity_vector_rows is not None:
            known, floats = self.entity_vectors_packed, self.entity_vectors
            if floats is not None and (known is None or len(known) != len(floats)):
                known = quantize_rows(floats)
            assert known is not None  # name_count(): one of the two is there
            arrays["entity_vector_rows"] = self.entity_vector_rows.astype(np.int64, copy=False)
        for name in LIST_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value.astype(np.float32 if name.endswith("_sims") else np.int64, copy=False)
        arrays["kinds"] = self.kind_array
        for name, source, strings in (
            ("keys", self.keys, lambda: self.keys),
            ("names", self.names, lambda: self.names),
            ("doc_of_chunks", self.doc_of, lambda: list(self.doc_of)),
            ("doc_of_docs", self.doc_of, lambda: list(self.doc_of.values())),
        ):
            packed = self.packed_strings(name, source, strings)
            arrays[f"{name}_text"], arrays[f"{name}_lengths"] = packed.text, packed.lengths
        if self.n_nodes < np.iinfo(np.int32).max:
            for name in _NODE_ARRAYS & arrays.keys():
                arrays[name] = arrays[name].astype(np.int32, copy=False)
        for name in _LENGTHS:  # string lengths in the smallest type that holds them (read back as int64)
            arrays[name] = _smallest_unsigned(arrays[name])
        info: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "build": build,
            "edge_types": list(EDGE_TYPES),
            "meta": self.meta,
            "facts": [list(f) for f in self.facts],
        }
        tmp_npz, tmp_json = d / f".{NPZ_FILE}{_TMP}{build}", d / f"{JSON_FILE}{_TMP}{build}"
        names = None
        adjacency: AdjacencyFile | None = None
        try:
            with disk_full_errors(d):
                d.mkdir(parents=True, exist_ok=True)
                if known is not None:
                    names = self._names_file_for(d, known, build)
                    info[NAMES_KEY] = names.describe()
                if with_adjacency and self.adjacency_worth_saving():  # derived: not written for the save it replaces
                    matrix = self.derived(
                        ("adjacency", ()), lambda: self._edge_adjacency(np.ones(len(EDGE_TYPES)), True)
                    )
                    adjacency = AdjacencyFile.write(d, build, matrix)
                    if adjacency is not None:
                        info[ADJACENCY_KEY] = adjacency.describe()
                with open(tmp_npz, "wb") as f:
                    np.savez(f, **arrays)  # type: ignore[arg-type]
                    f.flush()
                    os.fsync(f.fileno())
                with open(tmp_json, "wb") as g:
                    g.write(json.dumps(info, ensure_ascii=False).encode())
                    g.flush()
                    os.fsync(g.fileno())
                fsync_dir(d)
        except BaseException:
            tmp_npz.unlink(missing_ok=True)
            tmp_json.unlink(missing_ok=True)
            if names is not None and names is not self.names_file:  # written for this save: no graph names it
                names.path.unlink(missing_ok=True)
            if adjacency is not None:
                adjacency.path.unlink(missing_ok=True)
            raise
        os.replace(tmp_npz, d / NPZ_FILE)  # from here on readers of the new arrays find tmp_json
        os.replace(tmp_json, d / JSON_FILE)
        fsync_dir(d)
        for p in d.glob(f"*{_TMP}*"):  # what saves killed before their renames left behind
            p.unlink(missing_ok=True)
        remove_unnamed_files(d, info)
        self.build, self.saved_in = build, d
        self.adjacency_file = adjacency
        if names is not None:  # the next update appends to the file, and reads the rows from it
            self.names_file, self.entity_vectors_packed, self.packed_rows = names, names.map(check=False), None
        return d

    def packed_strings(self, name: str, source: Sized, strings: Callable[[], Sequence[str]]) -> Packed:
        """``strings()`` packed (:func:`pack_strings`), from :attr:`packed` when it holds ``source`` as it is."""
        known = self.packed.get(name)
        if known is not None and known.holds(source):
            return known
        text, lengths = pack_strings(strings())
        made = self.packed[name] = Packed(text, lengths, source, len(source))
        return made

    def _names_file_for(self, d: Path, rows: np.ndarray, build: str) -> NamesFile:
        """The file holding ``rows`` for a save into ``d``: the one they map when an update appended
        to it there (flushed now), else a new one."""
        names = self.names_file
        if (
            names is not None
            and rows is self.entity_vectors_packed
            and names.rows == len(rows)
            and names.path.parent.resolve() == d.resolve()
            and names.path.exists()
        ):
            names.sync()
            return names
        return NamesFile.write(d, build, rows)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DocGraph:
        """Read a saved graph; InvalidInputError naming the directory and the way out if it is damaged."""
        d = Path(directory)
        if not (d / NPZ_FILE).is_file() or not (d / JSON_FILE).is_file():
            raise InvalidInputError(f"{d}: no knowledge-vector graph here (expected {NPZ_FILE} and {JSON_FILE})")
        try:
            arrays, info, packed_rows, mapped = _read_consistent(d)
        except _DAMAGE as e:
            raise _damaged(d, e) from None
        saved_types = info.get("edge_types")
        if (
            info.get("version") not in _READABLE_VERSIONS
            or not isinstance(saved_types, list)
            or saved_types != list(EDGE_TYPES)[: len(saved_types)]
        ):
            raise InvalidInputError(f"{d}: graph format {info.get('version')!r} is not supported; rebuild the graph")
        try:
            codes = None
            if info["version"] == 1:
                keys, kinds, names, doc_of = info["keys"], info["kinds"], info["names"], info["doc_of"]
            else:
                keys, names = (unpack_strings(arrays[f"{n}_text"], arrays[f"{n}_lengths"]) for n in ("keys", "names"))
                codes = arrays["kinds"]
                kinds = [_KIND_NAMES[c] for c in codes.tolist()]
                doc_of = dict(
                    zip(
                        unpack_strings(arrays["doc_of_chunks_text"], arrays["doc_of_chunks_lengths"]),
                        unpack_strings(arrays["doc_of_docs_text"], arrays["doc_of_docs_lengths"]),
                    )
                )
            graph = cls(
                keys=keys,
                kinds=kinds,
                names=names,
                src=arrays["src"],
                dst=arrays["dst"],
                etype=arrays["etype"],
                weight=arrays["weight"],
                doc_of=doc_of,
                entity_vectors=None,
                entity_vectors_packed=None if packed_rows is None else packed_rows.view(),
                entity_vector_rows=arrays.get("entity_vector_rows"),
                meta=info["meta"],
                facts=[(int(s), int(o), str(r), str(c)) for s, o, r, c in info.get("facts", [])],
                build=info.get("build"),
                similar_rows=arrays.get("similar_rows"),
                similar_cols=arrays.get("similar_cols"),
                similar_sims=arrays.get("similar_sims"),
                synonym_cols=arrays.get("synonym_cols"),
                synonym_sims=arrays.get("synonym_sims"),
                known_kinds=codes,
            )
            if info["version"] != 1:  # what a save of this graph, or an update of it, packs again otherwise
                for name, source in (
                    ("keys", keys),
                    ("names", names),
                    ("doc_of_chunks", doc_of),
                    ("doc_of_docs", doc_of),
                ):
                    text, lengths = arrays[f"{name}_text"], arrays[f"{name}_lengths"]
                    graph.packed[name] = Packed(text, lengths, source, len(source))
            graph.saved_in = d
            try:
                if ADJACENCY_KEY in info:  # a full build's, or a process's rewrite of it (its trailer says)
                    graph.adjacency_file = _described_or_rewritten(d, info[ADJACENCY_KEY], graph.build)
                elif isinstance(graph.build, str):  # one a process wrote for this save
                    graph.adjacency_file = AdjacencyFile.found(d, graph.build)
            except (OSError, ValueError) as e:  # derived data: built from the edges instead
                log.warning("%s: %s; the adjacency is built from the graph's edges", d, e)
            if mapped is not None:
                graph.names_file, graph.entity_vectors_packed = mapped
            elif packed_rows is not None:  # format 2
                graph.packed_rows = packed_rows  # unpacked to floats when first needed (name_matrix)
            else:
                graph.entity_vectors = arrays.get("entity_vectors")  # saved before issue 17: float32
            _check_shapes(graph)
        except _DAMAGE as e:
            raise _damaged(d, e) from None
        return graph


@dataclass(frozen=True)
class Packed:
    """A list of strings (or a dict's keys or values) as :func:`pack_strings` packs them, and which
    object of which length it packs: the cache is used only for that object, unchanged in length
    (graphs are not edited in place; an update builds new lists)."""

    text: np.ndarray
    lengths: np.ndarray
    source: Sized
    count: int

    def holds(self, source: Sized) -> bool:
        return self.source is source and self.count == len(source)

    def extended(self, source: Sized, more: Sequence[str]) -> Packed:
        """This packing followed by ``more``: the packing of ``source``, which is this one's strings then ``more``."""
        if not more:
            return Packed(self.text, self.lengths, source, len(source))
        text, lengths = pack_strings(more)
        if self.count:
            text = np.concatenate([self.text, np.zeros(1, np.uint8), text])
            lengths = np.concatenate([self.lengths, lengths])
        return Packed(text, lengths, source, len(source))


def kind_codes(kinds: Sequence[str]) -> np.ndarray:
    """Node kinds as int8 codes (chunk 0, document 1, entity 2); KeyError for another kind."""
    return np.fromiter(map(_KIND_CODES.__getitem__, kinds), np.int8, len(kinds))


def pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 array, NUL-separated, and their lengths in characters (see :func:`unpack_strings`)."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    text = "\0".join(strings).encode("utf-8", "surrogatepass")
    return np.frombuffer(text, dtype=np.uint8), lengths


def unpack_strings(text: np.ndarray, lengths: np.ndarray) -> list[str]:
    """The strings :func:`pack_strings` packed; ValueError if the lengths do not fit the text.

    Splitting at the separators is one C call (slicing 1M strings by their lengths took ~0.35 s);
    the total length confirms it, and the lengths place the strings that contain NUL themselves.
    """
    joined = text.tobytes().decode("utf-8", "surrogatepass")
    n = len(lengths)
    if lengths.ndim != 1 or (lengths < 0).any() or int(lengths.sum()) + max(n - 1, 0) != len(joined):
        raise ValueError("packed strings do not match their lengths")
    if n == 0:
        return []
    parts = joined.split("\0")
    if len(parts) == n:  # no string holds a NUL, and the total fits: these are the strings
        return parts
    ends = (np.cumsum(lengths) + np.arange(n)).tolist()
    return [joined[e - k : e] for e, k in zip(ends, lengths.tolist())]


def _smallest_unsigned(values: np.ndarray) -> np.ndarray:
    """Non-negative ``values`` as uint8 or uint16 when they fit (saved string lengths: 3 of 6.6 MB
    at 100k chunks were int32 lengths of strings shorter than 256 bytes), else as they are."""
    top = int(values.max()) if values.size else 0
    for kind in (np.uint8, np.uint16):
        if top <= np.iinfo(kind).max:
            return values.astype(kind)
    return values


def quantize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows as a saved graph packs them: 6 bits a value (:mod:`kvgraph.docgraph.name_codec`; the
    scale is not kept: the rows are unit vectors, so :func:`packed_unit_rows` gets them back by
    normalising)."""
    return name_codec.quantize(vectors)


def packed_unit_rows(q: np.ndarray) -> np.ndarray:
    """Unit float32 rows of packed rows (all-zero rows stay zero)."""
    return unit_rows_with_room(q, spare=0).view()


def name_rows(floats: np.ndarray | None, packed: np.ndarray | None, index: np.ndarray | slice) -> np.ndarray:
    """Unit float32 name vectors at ``index``: from ``floats`` when a process unpacked them, else
    unpacked from the ``packed`` rows for these rows only."""
    if floats is not None:
        rows: np.ndarray = floats[index]
        return rows
    if packed is None:
        raise ValueError("no name vectors: give them as floats or packed")
    return packed_unit_rows(packed[index])


def unit_rows_with_room(q: np.ndarray, spare: int | None = None) -> RowBuffer:
    """:func:`packed_unit_rows` written into a :class:`RowBuffer` with ``spare`` rows of room (default: some).

    In blocks, with the squared norms from one einsum: every process that loads a graph runs this
    over all the name vectors (187k rows at 100k chunks: 0.79 s as one norm-and-divide, 0.19 s so).
    """
    buffer = RowBuffer.allocate(len(q), name_codec.row_dim(q), np.float32, spare)
    out = buffer.array
    for start in range(0, len(q), _BLOCK_ROWS):
        block = name_codec.values(q[start : start + _BLOCK_ROWS]).astype(np.float32)
        squares = np.einsum("ij,ij->i", block, block)
        inverse = (1.0 / np.sqrt(np.where(squares > 0, squares, 1.0))).astype(np.float32)
        np.multiply(block, inverse[:, None], out=out[start : start + len(block)])
    return buffer


@dataclass
class RowBuffer:
    """Rows with room after them, so that an update appends name vectors in place.

    Copying the 187k name vectors (float32 and int8) into new arrays took ~0.5 s of a one-file
    ingest at 100k chunks, mostly page faults of the fresh memory. The first ``used`` rows are
    taken; only the graph whose vectors end there may append (:func:`append_rows`): an older
    graph keeps its view of the rows it had, which appending never changes.
    """

    array: np.ndarray
    used: int

    @classmethod
    def allocate(cls, n: int, dim: int, dtype: Any, spare: int | None = None) -> RowBuffer:
        room = max(_ROOM_MIN, n // 8) if spare is None else spare
        return cls(np.empty((n + room, dim), dtype=dtype), n)

    def view(self) -> np.ndarray:
        return self.array[: self.used]

    def ends(self, rows: np.ndarray) -> bool:
        """Whether ``rows`` are this buffer's taken rows (so new ones may follow them in place)."""
        a = self.array
        return (
            rows.dtype == a.dtype
            and rows.shape == (self.used, a.shape[1])
            and rows.flags.c_contiguous
            and (self.used == 0 or rows.ctypes.data == a.ctypes.data)
        )


_ROOM_MIN = 1024  # rows of room a buffer gets at least


def append_rows(buffer: RowBuffer | None, current: np.ndarray, fresh: np.ndarray) -> RowBuffer:
    """A buffer holding ``current`` then ``fresh``: ``buffer`` itself when ``current`` ends it and it has room."""
    n_old, n_new = len(current), len(current) + len(fresh)
    if buffer is not None and buffer.ends(current) and len(buffer.array) >= n_new:
        buffer.array[n_old:n_new] = fresh
        buffer.used = n_new
        return buffer
    out = RowBuffer.allocate(n_new, current.shape[1], current.dtype)
    out.array[:n_old] = current
    out.array[n_old:n_new] = fresh
    return out


def stored_precision(vectors: np.ndarray) -> np.ndarray:
    """Unit rows as a saved graph holds them: every build and update works on these, so a graph in
    memory, the same graph saved and loaded, and an incrementally updated one agree exactly."""
    return packed_unit_rows(quantize_rows(vectors))


# What reading a damaged graph.npz / graph.json can raise (zip CRCs, numpy headers, JSON, shapes).
_DAMAGE = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile, struct.error)


def _damaged(d: Path, e: BaseException) -> InvalidInputError:
    return InvalidInputError(
        f"{d}: the graph files are damaged ({type(e).__name__}: {e}); "
        "run kvgraph repair (or kvgraph graph build) to rebuild the graph"
    )


def _saved_info(directory: Path) -> dict[str, Any]:
    """The saved graph's ``graph.json`` ({} if it cannot be read)."""
    try:
        info = json.loads((directory / JSON_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _described_or_rewritten(d: Path, info: object, build: object) -> AdjacencyFile:
    """The adjacency file ``graph.json`` describes, unless the file under its name describes itself
    otherwise (its trailer): a process rewrote it after finding it damaged or missing, in this
    version's layout (float32 weights where a format-3 graph described float64)."""
    described = AdjacencyFile.from_info(d, info)
    try:
        own = AdjacencyFile.found(d, build) if isinstance(build, str) else None
    except ValueError:  # no trailer (a file of the first version) or a damaged one
        own = None
    return own if own is not None and own.path == described.path and own != described else described


def saved_names(directory: Path) -> object:
    """What the graph saved in ``directory`` records of its name-vector file (None if nothing can be read)."""
    return _saved_info(directory).get(NAMES_KEY)


def remove_unnamed_files(directory: Path, info: Mapping[str, Any] | None = None) -> None:
    """Delete the name-vector and adjacency files of ``directory`` that ``info`` (default: the saved
    ``graph.json``) does not name: files a save stopped using, or wrote and never committed."""
    info = _saved_info(directory) if info is None else info
    # an adjacency no save describes is a process's for the saved build (docgraph/adjacency_file.py)
    shared = adjacency_name(info.get("build"))
    for key, prefix, suffix, otherwise in (
        *((NAMES_KEY, NAMES_PREFIX, suffix, None) for suffix in SUFFIXES.values()),
        (ADJACENCY_KEY, ADJACENCY_PREFIX, ADJACENCY_SUFFIX, shared),
    ):
        described = info.get(key)
        remove_unused(directory, prefix, suffix, described.get("file") if isinstance(described, dict) else otherwise)


def _read_consistent(
    d: Path,
) -> tuple[dict[str, np.ndarray], dict[str, Any], RowBuffer | None, tuple[NamesFile, np.ndarray] | None]:
    """The arrays and the JSON of one save (see the module docstring), and the packed name vectors:
    mapped from their file (format 3), or read into a buffer with room (format 2); ValueError if no
    save is found whole."""
    missing = None
    for attempt in range(_LOAD_TRIES):
        if attempt:
            time.sleep(_LOAD_BACKOFF_S * attempt)
        missing = None
        packed_rows = None
        with np.load(d / NPZ_FILE) as z:
            arrays = {}
            for name in z.files:
                if name == "entity_vectors_int8":
                    packed_rows = _read_rows_with_room(z.zip, f"{name}.npy")
                    arrays[name] = packed_rows.view()
                elif name in _NODE_ARRAYS:
                    arrays[name] = z[name].astype(np.int64, copy=False)
                else:
                    arrays[name] = z[name]
        build = bytes(arrays.pop("build")).decode() if "build" in arrays else None
        for candidate in (d / JSON_FILE, d / f"{JSON_FILE}{_TMP}{build}"):
            try:
                info = json.loads(candidate.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue  # the temporary JSON was just renamed into place: read again
            if not isinstance(info, dict):
                raise ValueError(f"{candidate.name} does not hold a JSON object")
            if info.get("build") != build:  # None == None: a graph saved before builds had ids
                continue
            if NAMES_KEY not in info:
                return arrays, info, packed_rows, None
            names = NamesFile.from_info(d, info[NAMES_KEY])
            try:
                return arrays, info, None, (names, names.map())
            except FileNotFoundError:
                missing = names.path.name  # a save replaced the file since: read the new save
                break
    if missing is not None:
        raise ValueError(f"{missing} is missing")
    raise ValueError(f"{NPZ_FILE} and {JSON_FILE} belong to different saves and no save completes them")


def _read_rows_with_room(archive: zipfile.ZipFile, member: str) -> RowBuffer:
    """A 2-d array member of an npz archive read into a :class:`RowBuffer` (ValueError if it is not one).

    Read through to the end of the member, so the zip CRC is checked as ``np.load`` checks it.
    """
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{member} is not a 2-d array of numbers")
        buffer = RowBuffer.allocate(shape[0], shape[1], dtype)
        view = buffer.view().data.cast("B")
        reader = cast(io.BufferedIOBase, f)
        got = 0
        while got < len(view):
            n = reader.readinto(view[got:])
            if not n:
                raise ValueError(f"{member} is truncated")
            got += n
        if f.read(1):
            raise ValueError(f"{member} holds more data than its header says")
    return buffer


def _check_shapes(graph: DocGraph) -> None:
    """Arrays that disagree with each other or with the node list mean a damaged file (ValueError)."""
    lists = [graph.similar_rows, graph.similar_cols, graph.similar_sims]
    if any(a is not None for a in lists) and not (
        graph.similar_rows is not None
        and graph.similar_cols is not None
        and graph.similar_sims is not None
        and len(graph.similar_rows) == len(graph.similar_cols)
        and graph.similar_cols.shape == graph.similar_sims.shape
    ):
        raise ValueError("the chunk neighbour lists disagree")
    if graph.synonym_cols is not None and (
        graph.synonym_sims is None
        or len(graph.synonym_cols) != graph.name_count()
        or graph.synonym_cols.shape != graph.synonym_sims.shape
    ):
        raise ValueError("the entity neighbour lists disagree")
    n_edges, n = len(graph.src), graph.n_nodes
    if not (len(graph.kinds) == len(graph.names) == n) or not (
        len(graph.dst) == len(graph.etype) == len(graph.weight) == n_edges
    ):
        raise ValueError("array lengths disagree")
    if n_edges and (min(graph.src.min(), graph.dst.min()) < 0 or max(graph.src.max(), graph.dst.max()) >= n):
        raise ValueError("an edge names a node that does not exist")
    if n_edges and (graph.etype.min() < 0 or graph.etype.max() >= len(EDGE_TYPES)):
        raise ValueError("an edge has an unknown type")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12))


@dataclass
class Builder:
    keys: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    edges: dict[tuple[int, int, int], float] = field(default_factory=dict)

    def node(self, key: str, kind: str, name: str) -> int:
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
            self.kinds.append(kind)
            self.names.append(name)
        return i

    def edge(self, a: int, b: int, etype: str, weight: float) -> None:
        if a == b:
            return
        k = (a, b, EDGE_TYPES.index(etype))
        self.edges[k] = max(self.edges.get(k, 0.0), float(weight))


@dataclass
class ChunkParts:
    """What :func:`add_chunks` learns besides nodes and edges: entity kinds, documents, facts."""

    entity_kind: dict[int, str] = field(default_factory=dict)  # entity node -> kind of its first mention
    doc_of: dict[str, str] = field(default_factory=dict)  # chunk id -> document id
    facts: list[tuple[int, int, str, str]] = field(default_factory=list)


def add_chunks(
    b: Builder,
    parts: ChunkParts,
    nodes: Sequence[Node],
    extractor: EntityExtractor,
    title_weight: float,
    triples: Mapping[str, Sequence[Triple]] | None,
    offline_entities: bool,
) -> None:
    """Add chunk ``nodes`` to ``b``: their nodes, NEXT/PARENT edges, entities, MENTIONS and triples.

    A full build and an incremental update (:mod:`kvgraph.docgraph.incremental`) both add chunks
    through here, so they make the same nodes and edges from the same chunks.
    """
    first = len(b.keys)
    for n in nodes:
        if not isinstance(n.id, str) or not n.id or n.id.startswith((ENTITY_PREFIX, DOC_PREFIX)):
            raise InvalidInputError(
                f"chunk id {n.id!r} is empty or uses a reserved prefix ({ENTITY_PREFIX}, {DOC_PREFIX})"
            )
        b.node(n.id, CHUNK, str(n.metadata.get("title") or n.id))
    if len(b.keys) - first != len(nodes):
        raise InvalidInputError("chunk node ids must be unique")

    # Structure: NEXT and PARENT from the splitter's relationships.
    for n in nodes:
        i = b.index[n.id]
        nxt = n.relationships.get(NodeRelationship.NEXT.value)
        if isinstance(nxt, str) and nxt in b.index:
            b.edge(i, b.index[nxt], "NEXT", 1.0)
        doc_id = n.ref_doc_id or n.relationships.get(NodeRelationship.SOURCE.value)
        if isinstance(doc_id, str) and doc_id:
            parts.doc_of[n.id] = doc_id
        parent = n.relationships.get(NodeRelationship.PARENT.value)
        if isinstance(parent, str) and parent in b.index:
            b.edge(i, b.index[parent], "PARENT", 1.0)
        elif isinstance(doc_id, str) and doc_id:
            d = b.node(DOC_PREFIX + doc_id, DOCUMENT, str(n.metadata.get("title") or doc_id))
            b.edge(i, d, "PARENT", 1.0)

    # Entities: MENTIONS, heavier when the entity is in the document's title.
    for n in nodes:
        i = b.index[n.id]
        title = n.metadata.get("title")
        title_keys = (
            {m.key for m in extractor.extract(title)} | {entity_key(title)} if isinstance(title, str) else set()
        )
        for m in extractor.extract(n.text) if offline_entities else ():
            e = b.node(ENTITY_PREFIX + m.key, ENTITY, m.name)
            parts.entity_kind.setdefault(e, m.kind)
            b.edge(i, e, "MENTIONS", title_weight if m.key in title_keys else 1.0)

    # Triples: both ends are entities the chunk mentions; the fact itself is a RELATED edge.
    for n in nodes if triples else ():
        i = b.index[n.id]
        title = n.metadata.get("title")
        title_key = entity_key(title) if isinstance(title, str) else None
        for t in (triples or {}).get(n.id, ()):
            ends = []
            for name in (t.subject, t.object):
                key = entity_key(name)
                e = b.node(ENTITY_PREFIX + key, ENTITY, name)
                parts.entity_kind.setdefault(e, "triple")
                b.edge(i, e, "MENTIONS", title_weight if key == title_key else 1.0)
                ends.append(e)
            b.edge(ends[0], ends[1], "RELATED", 1.0)
            if ends[0] != ends[1]:
                parts.facts.append((ends[0], ends[1], t.relation, n.id))


def embed_names(
    embedder: Embedder, names: Sequence[str], batch: int = 256, known: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Unit vectors of entity ``names`` at the precision a saved graph keeps (:func:`stored_precision`),
    embedded in batches of ``batch``; ``known`` names are not embedded again."""
    known = known or {}
    todo = list(dict.fromkeys(n for n in names if n not in known))
    parts = [np.asarray(embedder.embed(todo[i : i + batch])) for i in range(0, len(todo), batch)]
    fresh = dict(zip(todo, stored_precision(_unit(np.concatenate(parts))))) if parts else {}
    if not names:
        return np.zeros((0, embedder.dim), np.float32)
    rows = np.stack([fresh[n] if n in fresh else np.asarray(known[n], np.float32) for n in names]).astype(np.float32)
    # Known vectors of a graph saved in another format (int8 before format 4) are brought to this
    # one's precision; for rows already at it (all fresh ones) that changes no bit.
    return rows if len(fresh) == len(set(names)) else stored_precision(rows)


def name_vectors(graph: DocGraph) -> dict[str, np.ndarray]:
    """The entity name vectors a graph holds, by name: what a rebuild need not embed again."""
    vectors = graph.name_matrix()
    if vectors is None or graph.entity_vector_rows is None:
        return {}
    return {graph.names[int(r)]: v for r, v in zip(graph.entity_vector_rows, vectors)}


def build_doc_graph(
    nodes: Sequence[Node],
    embeddings: np.ndarray | None = None,
    *,
    extractor: EntityExtractor | None = None,
    embedder: Embedder | None = None,
    knn: int = 5,
    similar_threshold: float = 0.5,
    synonym_k: int = 5,
    synonym_threshold: float = 0.9,
    title_weight: float = 2.0,
    embed_batch: int = 256,
    triples: Mapping[str, Sequence[Triple]] | None = None,
    offline_entities: bool = True,
    knn_method: str = "auto",
    known_vectors: Mapping[str, np.ndarray] | None = None,
) -> DocGraph:
    """Build a :class:`DocGraph` from a knowledge base's chunk ``nodes`` (see the module docstring).

    ``embeddings`` (one row per node, e.g. the stored chunk vectors) give the ``SIMILAR`` edges;
    without them (or with ``knn=0``) there are none. ``embedder`` embeds entity names for
    ``SYNONYM`` edges and for matching query entities later; without it there are neither.
    ``triples`` (chunk id -> its LLM-extracted triples) add the subject and object entities,
    ``MENTIONS`` edges to them and a ``RELATED`` edge per fact; ``offline_entities=False``
    leaves the offline extractor out (entities from triples only).
    ``knn_method`` finds the nearest chunks and entity names (:func:`kvgraph.docgraph.knn.knn_pairs`:
    exact up to 4,096 rows, else an HNSW graph); ``meta["knn"]`` records the method and the measured
    recall of each kind of edge against exact search, ``meta["timings"]`` seconds per stage.
    ``known_vectors`` (entity name -> unit vector by ``embedder``, e.g. :func:`name_vectors` of the
    previous graph) are used instead of embedding those names again.
    """
    if not nodes:
        raise InvalidInputError("build_doc_graph needs at least one chunk node")
    if embeddings is not None and len(embeddings) != len(nodes):
        raise InvalidInputError(f"embeddings has {len(embeddings)} rows for {len(nodes)} nodes")
    extractor = extractor or EntityExtractor()
    timings: dict[str, float] = {}
    b = Builder()
    parts = ChunkParts()
    t0 = time.perf_counter()
    add_chunks(b, parts, nodes, extractor, title_weight, triples, offline_entities)
    timings["extraction_s"] = time.perf_counter() - t0
    n_chunks = len(nodes)  # the chunks are the first nodes

    # SIMILAR: k nearest chunks.
    t0 = time.perf_counter()
    knn_meta: dict[str, Any] = {}
    similar: tuple[np.ndarray, np.ndarray] | None = None
    if embeddings is not None and knn > 0:
        similar = knn_lists(np.asarray(embeddings), knn, knn_method)
        pairs = pairs_from_lists(*similar, similar_threshold)
        for a, c, s in zip(*pairs):
            b.edge(int(a), int(c), "SIMILAR", float(s))
        knn_meta["similar"] = _knn_report(np.asarray(embeddings), pairs, knn, similar_threshold, knn_method)
    timings["knn_s"] = time.perf_counter() - t0

    # SYNONYM: entities whose name embeddings are close.
    t0 = time.perf_counter()
    vectors: np.ndarray | None = None
    rows: np.ndarray | None = None
    synonyms: tuple[np.ndarray, np.ndarray] | None = None
    if embedder is not None:
        rows = np.array([e for e, kind in parts.entity_kind.items() if kind in SYNONYM_KINDS], dtype=np.int64)
        vectors = embed_names(embedder, [b.names[e] for e in rows], embed_batch, known_vectors)
        timings["entity_embed_s"] = time.perf_counter() - t0
        if synonym_k > 0:
            synonyms = knn_lists(vectors, synonym_k, knn_method)
            pairs = pairs_from_lists(*synonyms, synonym_threshold)
            for a, c, s in zip(*pairs):
                b.edge(int(rows[a]), int(rows[c]), "SYNONYM", float(s))
            knn_meta["synonym"] = _knn_report(vectors, pairs, synonym_k, synonym_threshold, knn_method)
    timings["synonyms_s"] = time.perf_counter() - t0
    facts, doc_of = parts.facts, parts.doc_of

    if b.edges:
        edge_rows = np.array(list(b.edges), dtype=np.int64)
        weights = np.array(list(b.edges.values()), dtype=np.float32)
    else:
        edge_rows, weights = np.zeros((0, 3), np.int64), np.zeros(0, np.float32)
    meta = {
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "params": {
            "knn": knn,
            "similar_threshold": similar_threshold,
            "synonym_k": synonym_k,
            "synonym_threshold": synonym_threshold,
            "title_weight": title_weight,
            "extractor": {"phrases": extractor.phrases, "years": extractor.years} if offline_entities else None,
            "triples": len(facts),
            "entity_embedder": getattr(embedder, "model_name", None),
            "knn_method": knn_method,
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "knn": knn_meta,
    }
    return DocGraph(
        keys=b.keys,
        kinds=b.kinds,
        names=b.names,
        src=edge_rows[:, 0],
        dst=edge_rows[:, 1],
        etype=edge_rows[:, 2].astype(np.int8),
        weight=weights,
        doc_of=doc_of,
        entity_vectors=vectors,
        entity_vector_rows=rows,
        meta=meta,
        facts=facts,
        similar_rows=None if similar is None else np.arange(n_chunks, dtype=np.int64),
        similar_cols=None if similar is None else similar[0],
        similar_sims=None if similar is None else similar[1],
        synonym_cols=None if synonyms is None else synonyms[0],
        synonym_sims=None if synonyms is None else synonyms[1],
    )


def _knn_report(vectors: np.ndarray, pairs: Any, k: int, threshold: float, method: str) -> dict[str, Any]:
    """How nearest neighbours were found, and, when approximately, their recall against exact search."""
    chosen = chosen_method(len(vectors), method)
    recall = knn_recall(vectors, pairs, k, threshold) if chosen != "exact" else 1.0
    return {"method": chosen, "rows": len(vectors), "pairs": len(pairs[0]), "recall": recall}


LABELS = {CHUNK: "Chunk", DOCUMENT: "Document", ENTITY: "Entity"}


def write_doc_graph(graph: DocGraph, store: GraphStore, batch: int = 5000) -> dict[str, int]:
    """Export ``graph`` into a Cypher graph store: ``Chunk``/``Document``/``Entity`` nodes and typed edges.

    Nodes are upserted by ``id`` (chunk id, document id, entity canonical key), so writing the
    same graph again updates it in place. Returns counts of nodes and edges written.
    """
    store_keys: list[str | None] = [None] * graph.n_nodes
    counts: dict[str, int] = {}
    mentions = graph.mention_counts()
    for kind, label in LABELS.items():
        idx = [i for i, k in enumerate(graph.kinds) if k == kind]
        for lo in range(0, len(idx), batch):
            part = idx[lo : lo + batch]
            rows: list[dict[str, Any]] = []
            for i in part:
                key = graph.keys[i]
                if kind == CHUNK:
                    rows.append({"id": key, "doc_id": graph.doc_of.get(key, ""), "title": graph.names[i]})
                elif kind == DOCUMENT:
                    rows.append({"id": key[len(DOC_PREFIX) :], "title": graph.names[i]})
                else:
                    rows.append({"id": key[len(ENTITY_PREFIX) :], "name": graph.names[i], "mentions": int(mentions[i])})
            for i, sk in zip(part, store.upsert_nodes(label, rows)):
                store_keys[i] = sk
        counts[label] = len(idx)
    # One RELATED edge per entity pair: its relation texts and source chunks, joined.
    labels: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
    for s, o, relation, chunk in graph.facts:
        rels, chunks = labels.setdefault((s, o), ([], []))
        if relation not in rels:
            rels.append(relation)
        if chunk not in chunks:
            chunks.append(chunk)

    def props(e: int) -> dict[str, Any]:
        out: dict[str, Any] = {"weight": float(graph.weight[e])}
        if EDGE_TYPES[graph.etype[e]] == "RELATED":
            rels, chunks = labels.get((int(graph.src[e]), int(graph.dst[e])), ([], []))
            out.update(relation="; ".join(rels), chunk_ids=" ".join(chunks))
        return out

    for t, name in enumerate(EDGE_TYPES):
        sel = np.flatnonzero(graph.etype == t)
        written = 0
        for lo in range(0, len(sel), batch):
            chosen = sel[lo : lo + batch]
            edges = [(str(store_keys[graph.src[e]]), str(store_keys[graph.dst[e]]), props(int(e))) for e in chosen]
            written += store.upsert_edges(name, edges)
        counts[name] = written
    return counts
