"""The retrievers the evaluation runner can compare, by name, and the indexes they need.

:data:`RETRIEVERS` maps a name to a *factory*: a function that takes the run's
:class:`EvalContext` and returns a *ranker*, ``rank(query_texts) -> ranked passage ids per
query`` (at most ``ctx.k_max`` ids each, best first). Adding a retriever is one line::

    RETRIEVERS["kg"] = lambda ctx: my_ranker(ctx.passage_kb(), ctx.k_max)

Three families are built in:

* **The product** (``kvgraph``, ``graph``): the passages ingested the way a user would (one
  document per passage, or one Markdown file per page for ``ingest == "files"`` datasets) into a
  knowledge base with the spec's settings, queried through :meth:`KnowledgeBase.retriever`
  (``kvgraph``: what ``kvgraph search`` runs, e.g. ``kvgraph:mode=hybrid,references=both``) or
  ``kb.graph.build()`` + :meth:`kb.graph.retriever` (``graph``: the knowledge-vector-graph walk,
  e.g. ``graph:damping=0.5,seed_mode=dense``). A knowledge base is kept per combination of
  settings that shape the stored nodes (``chunk_size``, ``references``...), under
  ``<work_dir>/variants/``; query-time settings (``mode``, ``rerank``...) reuse it.
* **Passage-KB retrievers** (``dense``, ``bm25``, ``hybrid``, ``hybrid_alpha``): the passages
  ingested into a knowledge base with its usual 254-token chunks; a passage ranks by its best
  chunk.
* **Node-reference retrievers** (``base``, ``chunk_refs``, ``metadata_refs`` and variants), after
  the LlamaIndex "recursive retriever + node references" study. Every passage is a document
  cut into parents of :data:`PARENT_SIZE` tokens (:func:`kvgraph.retrieve.chunk_references`):

  - ``base`` searches the parents themselves (dense; ``base_bm25``, ``base_hybrid``);
  - ``chunk_refs`` searches the parents' children of :data:`SUB_SIZES` tokens and follows each
    hit to its parent (:class:`~kvgraph.retrieve.RecursiveRetriever`);
  - ``metadata_refs`` searches an extractive summary and :data:`N_QUESTIONS` key sentences per
    parent (:func:`kvgraph.retrieve.metadata_references` without an LLM), following them to
    their parent;
  - ``*_hybrid`` variants fuse dense and BM25 on the same nodes (reciprocal ranks), and
    ``*_with_parents`` variants search the parents too, as the study did (their embeddings see
    only the first ~254 tokens; see :mod:`kvgraph.ingest.references`).

  These take ``mode`` (``base:mode=hybrid`` is ``base_hybrid``) and ``with_parents``.

  **Gold for parents**: a retrieved parent counts as its passage (``ref_doc_id``), so a parent is
  relevant when its passage is gold; a passage longer than a parent has several parents, and
  the first one found ranks the passage. For the Llama 2 question set
  (:mod:`kvgraph.eval.page_questions`) the passages *are* the 1024-token parents of the pages,
  so passage and parent coincide and gold is the parent holding the question's source span.
  All retrievers return ``k`` *distinct* passages; the study's top 10 were 10 base hits, which
  can name one parent several times.

Specs and their options are parsed by :mod:`kvgraph.eval.specs`; :func:`resolve` turns a spec
into a row label and a factory (:data:`CONFIGURABLE` says which options each name takes).

Each node-reference index lives in ``<work_dir>/refs/<index>/`` (an embedded vector store) and
is reused while the passages, sizes and embedding model are the same (a fingerprint in the
store's metadata); otherwise it is rebuilt. Building embeds with the uncached model, so the
index time of each index is its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.eval.datasets import EvalDataset, page_id
from kvgraph.eval.specs import RetrieverSpec
from kvgraph.schema import Document, Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.filters import FilterSpec
    from kvgraph.kb import KnowledgeBase

Ranker = Callable[[Sequence[str]], list[list[str]]]
RetrieverFactory = Callable[["EvalContext"], Ranker]
PassageOf = Callable[[Node], str]

PARENT_SIZE = 1024
SUB_SIZES = (128, 256, 512)
OVERLAP = 20
N_QUESTIONS = 5
FETCH_FACTOR = 3  # nodes fetched per passage wanted, so that k distinct passages survive de-duplication
REF_INDEXES = ("parents", "chunk_refs", "metadata_refs")
_FINGERPRINT = "eval_fingerprint"
_KB_FINGERPRINT_FILE = "eval-passages.sha256"
FILES_DIR = "files"  # <work_dir>/files: one Markdown file per passage, for datasets ingested as files
VARIANTS_DIR = "variants"  # <work_dir>/variants/<settings>: knowledge bases with non-default node settings

# Settings that change only how a knowledge base is queried or answers; every other setting shapes the
# stored nodes, so a spec that changes one gets its own knowledge base.
QUERY_SETTINGS = frozenset(
    {
        "mode",
        "top_k",
        "rerank",
        "rerank_fetch_k",
        "fusion",
        "fusion_alpha",
        "query_feedback",
        "query_expansion",
        "answerer",
        "llm_base_url",
        "llm_model",
        "expand_neighbors",
        "max_answer_sentences",
        "max_answer_chars",
        "embed_threads",
    }
)


def passages_as_documents(dataset: EvalDataset) -> list[Document]:
    return [Document(id=p.id, text=p.full_text, metadata={"title": p.title}) for p in dataset.passages]


def node_passage(node: Node) -> str:
    """A node's passage when passages were added as documents: its document id."""
    return node.ref_doc_id or node.id


def file_passage(node: Node) -> str:
    """A node's passage when passages were ingested as files: its ``page`` metadata, else its file's stem."""
    page = node.metadata.get("page")
    if isinstance(page, int) and not isinstance(page, bool):
        return page_id(page)
    name = node.metadata.get("file_name")
    return Path(str(name)).stem if name else node_passage(node)


def ranked_passages(nodes: Sequence[Any], k: int, passage_of: PassageOf = node_passage) -> list[str]:
    """Passage ids in rank order of their best node, at most ``k``."""
    out: list[str] = []
    seen: set[str] = set()
    for n in nodes:
        pid = passage_of(n)
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
            if len(out) == k:
                break
    return out


def _slug(items: Sequence[tuple[str, str]]) -> str:
    text = "_".join(f"{k}-{v}" for k, v in items)
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    if len(slug) > 80:  # long combinations: a readable prefix and a hash that keeps them apart
        slug = slug[:60] + "-" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]
    return slug


@functools.lru_cache(maxsize=1)
def ingest_code_hash() -> str:
    """A hash of the code that turns files into stored nodes (loaders, splitter, headers, text).

    Part of a cached knowledge base's fingerprint: a change to how kvgraph reads or cuts a file
    rebuilds the eval indexes, where a hand-bumped version number was once forgotten and a bench
    measured stale chunks.
    """
    import kvgraph.ingest as ingest_package
    import kvgraph.text as text_module

    h = hashlib.sha256()
    root = Path(inspect.getfile(ingest_package)).parent
    for path in sorted([*root.rglob("*.py"), Path(inspect.getfile(text_module))]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class EvalContext:
    """What a retriever factory gets: the dataset, ``k_max``, the work folder and lazily built indexes.

    ``kb`` is the knowledge base at ``work_dir`` (the default settings); :meth:`knowledge_base`
    gives one per combination of node-shaping settings, :meth:`reader` a read-only view with
    query settings, :meth:`ensure_graph` its document graph. ``index_seconds`` records, per index,
    the time spent building (or reopening) it in this run; ``progress`` shows bars and notes on
    stderr (a terminal only, for the bars).
    """

    dataset: EvalDataset
    k_max: int
    work_dir: Path
    kb: KnowledgeBase
    index_seconds: dict[str, float] = field(default_factory=dict)
    index_built: dict[str, bool] = field(default_factory=dict)
    progress: bool = False
    _kb_ready: bool = False
    _vectors: dict[str, np.ndarray] = field(default_factory=dict)
    _stores: dict[str, Any] = field(default_factory=dict)
    _kbs: dict[tuple[tuple[str, str], ...], KnowledgeBase] = field(default_factory=dict)
    _readers: dict[tuple[str, tuple[tuple[str, str], ...]], KnowledgeBase] = field(default_factory=dict)
    _graphs: set[str] = field(default_factory=set)

    @property
    def embedder(self) -> Any:
        """The knowledge base's embedding model (cached on disk in the work folder)."""
        return self.kb.embedder

    @property
    def passage_of(self) -> PassageOf:
        """Node -> passage id: the document id, or the page / file for datasets ingested as files."""
        return file_passage if self.dataset.ingest == "files" else node_passage

    def note(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def passage_kb(self) -> KnowledgeBase:
        """The knowledge base with the dataset's passages ingested (unchanged passages are not re-added)."""
        if not self._kb_ready:
            self._ingest(self.kb, "kb")
            self._kb_ready = True
        return self.kb

    def knowledge_base(self, settings: Mapping[str, str] | None = None) -> KnowledgeBase:
        """The passages ingested into a knowledge base with these node-shaping ``settings`` (writable)."""
        key = tuple(sorted((settings or {}).items()))
        if not key:
            return self.passage_kb()
        kb = self._kbs.get(key)
        if kb is None:
            from kvgraph.kb import KnowledgeBase

            overrides: dict[str, Any] = {"expand_neighbors": False, **dict(key)}
            kb = KnowledgeBase.open(self.work_dir / VARIANTS_DIR / _slug(key), **overrides)
            self._kbs[key] = kb
            self._ingest(kb, "kb:" + ",".join(f"{k}={v}" for k, v in key))
        return kb

    def reader(self, kb: KnowledgeBase, settings: Mapping[str, str]) -> KnowledgeBase:
        """A read-only view of ``kb`` with ``settings`` (as ``kvgraph search`` opens a knowledge base)."""
        from kvgraph.kb import KnowledgeBase

        key = (str(kb.path), tuple(sorted(settings.items())))
        reader = self._readers.get(key)
        if reader is None:
            overrides: dict[str, Any] = {"expand_neighbors": False, **dict(key[1])}
            reader = KnowledgeBase.open(kb.path, read_only=True, **overrides)
            self._readers[key] = reader
        return reader

    def ensure_graph(self, kb: KnowledgeBase, extractor: str = "offline") -> None:
        """Build ``kb``'s document graph (``kb.graph.build``) unless one from this extractor is saved."""
        if str(kb.path) in self._graphs:
            return
        name = "graph" if kb is self.kb else f"graph:{kb.path.name}"
        t0 = time.perf_counter()
        built = False
        saved = (kb.graph.doc_graph_path / "graph.npz").exists()
        if not saved or kb.graph.doc_graph().meta.get("extractor") != extractor:
            self.note(f"  building the document graph of {kb.path} ({extractor} extractor)")
            report = kb.graph.build(extractor=extractor)
            built = True
            self.note(f"  graph: {report['chunks']} chunks, {report['entities']} entities in {report['seconds']:.1f} s")
        self.index_seconds[name] = time.perf_counter() - t0
        self.index_built[name] = built
        self._graphs.add(str(kb.path))

    def _ingest(self, kb: KnowledgeBase, name: str) -> None:
        """Add the passages (documents, or files through ``sync``) unless the same ones are already in."""
        from kvgraph.progress import RichProgress

        t0 = time.perf_counter()
        fingerprint = self._passages_fingerprint(kb)
        marker = kb.path / _KB_FINGERPRINT_FILE
        fresh = not marker.exists() or marker.read_text(encoding="utf-8").strip() != fingerprint
        if fresh:
            label = f"ingesting {self.dataset.name}" + ("" if kb is self.kb else f" ({kb.path.name})")
            if self.dataset.ingest == "files":
                report = kb.sync([self._write_files()], progress=RichProgress(label=label))
                if report.skipped:
                    skipped = ", ".join(f"{s.path} ({s.reason})" for s in report.skipped[:3])
                    raise InvalidInputError(f"{len(report.skipped)} passage file(s) could not be ingested: {skipped}")
            else:
                kb.add_documents(passages_as_documents(self.dataset), progress=RichProgress(label=label))
            marker.write_text(fingerprint + "\n", encoding="utf-8")  # last: an interrupted ingest runs again
        self.index_seconds[name] = time.perf_counter() - t0
        self.index_built[name] = fresh

    def _passages_fingerprint(self, kb: KnowledgeBase) -> str:
        h = hashlib.sha256()
        shaping = {k: v for k, v in dataclasses.asdict(kb.settings).items() if k not in QUERY_SETTINGS}
        h.update(f"{self.dataset.ingest}|{sorted(shaping.items())}|{ingest_code_hash()}".encode())
        for p in self.dataset.passages:
            h.update(b"\0" + p.id.encode() + b"\0" + p.full_text.encode())
        return h.hexdigest()

    def _write_files(self) -> Path:
        """One Markdown file per passage in ``<work_dir>/files`` (unchanged files keep their time stamps)."""
        folder = self.work_dir / FILES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {f"{p.id}.md": p.full_text for p in self.dataset.passages}
        for stale in folder.glob("*.md"):
            if stale.name not in wanted:
                stale.unlink()
        for name, text in wanted.items():
            path = folder / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
        return folder

    def query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, each text embedded once per run."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            self._vectors.update(zip(todo, self.embedder.embed(todo)))
        return np.asarray([self._vectors[t] for t in texts], dtype=np.float32)

    def vector(self, text: str) -> np.ndarray:
        return np.asarray(self.query_vectors([text])[0])

    def reference_store(self, index: str) -> Any:
        """The embedded store of one node-reference index (one of :data:`REF_INDEXES`), built on first use."""
        store = self._stores.get(index)
        if store is None:
            t0 = time.perf_counter()
            store, built = _open_reference_store(self, index)
            self._stores[index] = store
            self.index_seconds[index] = time.perf_counter() - t0
            self.index_built[index] = built
        return store

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        for kb in [*self._readers.values(), *self._kbs.values()]:
            kb.close()
        self._readers.clear()
        self._kbs.clear()


# ---------------------------------------------------------------------- reference indexes


def _inner_embedder(ctx: EvalContext) -> Any:
    """The model without the on-disk cache, so that each index's build time counts its own embedding."""
    return getattr(ctx.embedder, "inner", ctx.embedder)


def _fingerprint(ctx: EvalContext, index: str) -> str:
    h = hashlib.sha256()
    params = f"{index}|{PARENT_SIZE}|{SUB_SIZES}|{OVERLAP}|{N_QUESTIONS}|{ctx.embedder.model_name}|{ingest_code_hash()}"
    h.update(params.encode())
    for doc in passages_as_documents(ctx.dataset):
        h.update(b"\0" + doc.id.encode() + b"\0" + doc.text.encode())
    return h.hexdigest()


def reference_nodes(docs: Sequence[Document], index: str, embedder: Any) -> list[Any]:
    """The embedded nodes of one node-reference index over ``docs`` (see the module docstring)."""
    from kvgraph.ingest.references import chunk_references, embed_nodes, metadata_references, parent_nodes

    refs = chunk_references(docs, embedder.token_counter(), PARENT_SIZE, SUB_SIZES, OVERLAP)
    if index == "parents":
        nodes = parent_nodes(refs)
    elif index == "chunk_refs":
        nodes = refs
    elif index == "metadata_refs":
        parents = parent_nodes(refs)
        nodes = parents + metadata_references(parents, embedder, N_QUESTIONS)
    else:
        raise ValueError(f"unknown reference index {index!r}")
    embed_nodes(nodes, embedder)
    return nodes


def _open_reference_store(ctx: EvalContext, index: str) -> tuple[Any, bool]:
    from kvgraph.store import EmbeddedVectorStore

    path = ctx.work_dir / "refs" / index
    fingerprint = _fingerprint(ctx, index)
    if path.exists():
        store = EmbeddedVectorStore.open(path)
        if store.get_meta(_FINGERPRINT) == fingerprint:
            return store, False
        store.close()
        shutil.rmtree(path)  # built from other passages or settings: this folder is ours to rebuild
    nodes = reference_nodes(passages_as_documents(ctx.dataset), index, _inner_embedder(ctx))
    store = EmbeddedVectorStore.open(path)
    store.add(nodes)
    store.set_meta(_FINGERPRINT, fingerprint)  # last: an interrupted build is rebuilt next time
    return store, True


# ---------------------------------------------------------------------- rankers


class _StoreSearch:
    """A base retriever over one store whose query vectors come from the run's cache."""

    def __init__(self, ctx: EvalContext, store: Any, mode: str, filters: FilterSpec, alpha: float | None = None):
        self.ctx = ctx
        self.store = store
        self.mode = mode
        self.filters = filters
        self.alpha = alpha

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        from kvgraph.store import VectorStoreQuery

        res = self.store.query(
            VectorStoreQuery(
                query_embedding=None if self.mode == "sparse" else self.ctx.vector(query),
                query_str=query,
                similarity_top_k=k,
                filters=self.filters,
                mode=self.mode,
                alpha=self.alpha,
            )
        )
        return [NodeWithScore(node, float(score)) for node, score in zip(res.nodes, res.similarities)]


def _ranker(ctx: EvalContext, retriever: Any) -> Ranker:
    """Rank passages by their best node among the first ``k_max * FETCH_FACTOR`` the retriever returns."""
    fetch = ctx.k_max * FETCH_FACTOR
    passage_of = ctx.passage_of
    return lambda texts: [
        ranked_passages([h.node for h in retriever.retrieve(t, fetch)], ctx.k_max, passage_of) for t in texts
    ]


def kb_retriever(mode: str, alpha: float | None = None, settings: Mapping[str, str] | None = None) -> RetrieverFactory:
    """A passage-KB retriever: the store's ``mode`` search over the KB's chunks (``settings`` shape the chunks)."""

    def factory(ctx: EvalContext) -> Ranker:
        return _ranker(ctx, _StoreSearch(ctx, ctx.knowledge_base(settings).store, mode, None, alpha))

    return factory


def base_retriever(mode: str) -> RetrieverFactory:
    """``base``: the 1024-token parents searched directly."""

    def factory(ctx: EvalContext) -> Ranker:
        return _ranker(ctx, _StoreSearch(ctx, ctx.reference_store("parents"), mode, None))

    return factory


def recursive_retriever(index: str, mode: str, include_parents: bool = False) -> RetrieverFactory:
    """Search the reference nodes of ``index`` and return the parents they refer to."""

    def factory(ctx: EvalContext) -> Ranker:
        from kvgraph.ingest.references import search_filter
        from kvgraph.retrieve import RecursiveRetriever

        store = ctx.reference_store(index)
        return _ranker(ctx, RecursiveRetriever(_StoreSearch(ctx, store, mode, search_filter(include_parents)), store))

    return factory


# ---------------------------------------------------------------------- the product: kvgraph and graph


def setting_names() -> list[str]:
    """Every knowledge-base setting (:class:`kvgraph.config.Settings`)."""
    from kvgraph.config import Settings

    return [f.name for f in dataclasses.fields(Settings)]


def walk_parameters() -> dict[str, Any]:
    """The knowledge-vector-graph walk's options and their defaults (``seed_mode`` and the retriever's keywords)."""
    return {name: default for name, (default, _) in _walk_signature().items()}


def _walk_signature() -> dict[str, tuple[Any, bool]]:
    """Walk option -> (default, whether ``none`` is allowed), from :class:`KnowledgeGraphRetriever`'s signature."""
    from kvgraph.retrieve.graph import KnowledgeGraphRetriever

    params: dict[str, tuple[Any, bool]] = {"seed_mode": ("hybrid", False)}
    for name, p in inspect.signature(KnowledgeGraphRetriever.__init__).parameters.items():
        # objects (an entity extractor, per-edge weights) cannot be written as key=value
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("extractor", "edge_weights"):
            params[name] = (p.default, "None" in str(p.annotation))
    return params


def _literal(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _typed(spec: str, key: str, value: str, default: Any, nullable: bool = False) -> Any:
    """``value`` parsed like ``default`` (bool, int, float, str; ``none`` where the option may be None)."""
    parsed = _literal(value)
    ok = (
        (parsed is None and (default is None or nullable))
        or (isinstance(default, bool) and isinstance(parsed, bool))
        or (isinstance(default, int) and not isinstance(default, bool) and type(parsed) is int)
        or (isinstance(default, float) and type(parsed) in (int, float))
        or (isinstance(default, str) and isinstance(parsed, str))
        or (default is None and type(parsed) is int)  # hops=None by default elsewhere: an int or none
    )
    if not ok:
        want = "none or an integer" if default is None else type(default).__name__ + (" or none" if nullable else "")
        raise InvalidInputError(f"retriever {spec!r}: {key}={value!r} should be {want}")
    return float(parsed) if isinstance(default, float) else parsed


@dataclass
class ProductOptions:
    """A ``kvgraph``/``graph`` spec's options, sorted: settings (node-shaping and query), walk, graph build."""

    settings: dict[str, str]
    alpha: float | None = None
    walk: dict[str, Any] = field(default_factory=dict)
    extractor: str = "offline"

    @property
    def mode(self) -> str:
        return self.settings.get("mode", "")

    @property
    def node_settings(self) -> dict[str, str]:
        return {k: v for k, v in self.settings.items() if k not in QUERY_SETTINGS}


def product_options(spec: str, options: Mapping[str, str], graph: bool = False) -> ProductOptions:
    """Sort and check a product spec's options; every error names the spec and the option."""
    from kvgraph.config import load_settings

    known_settings = set(setting_names())
    walk_signature = _walk_signature()
    walk_defaults = {name: default for name, (default, _) in walk_signature.items()}
    options = dict(options)
    if graph:
        if options.get("mode", "graph") != "graph":
            raise InvalidInputError(f"retriever {spec!r}: graph always walks the graph; use kvgraph:mode=...")
        options["mode"] = "graph"
    walks = options.get("mode") == "graph"
    out = ProductOptions(settings={})
    for key, value in options.items():
        if key in known_settings:
            out.settings[key] = value.replace("+", ",")  # list settings: child_sizes=128+256
        elif key == "alpha" and not walks:
            out.alpha = float(_typed(spec, key, value, 0.5))
        elif key in walk_defaults or key == "extractor":
            if not walks:
                raise InvalidInputError(f"retriever {spec!r}: {key} is a graph-walk option (use graph:{key}=...)")
            if key == "extractor":
                out.extractor = value
            else:
                out.walk[key] = _typed(spec, key, value, *walk_signature[key])
        else:
            extra = ", ".join(sorted(walk_defaults)) if walks else "alpha"
            raise InvalidInputError(
                f"retriever {spec!r}: unknown option {key!r}; it takes knowledge-base settings "
                f"({', '.join(sorted(known_settings))}) and {extra}"
            )
    try:
        load_settings(None, out.settings, env={})  # the same checks as kvgraph.toml
    except InvalidInputError as e:
        raise InvalidInputError(f"retriever {spec!r}: {e}") from None
    from kvgraph.kb.graph import EXTRACTORS

    if out.extractor not in EXTRACTORS:
        raise InvalidInputError(f"retriever {spec!r}: extractor must be one of {', '.join(EXTRACTORS)}")
    return out


def product_retriever(options: Mapping[str, str], graph: bool = False, label: str = "kvgraph") -> RetrieverFactory:
    """The product's retrieval: ``kb.retriever()``, or ``kb.graph.build()`` + ``kb.graph.retriever()`` in graph mode."""
    # checked now, so that a bad option fails before a long run (the registry's option-less entries need no check)
    opts = product_options(label, options, graph) if options else ProductOptions({"mode": "graph"} if graph else {})

    def factory(ctx: EvalContext) -> Ranker:
        kb = ctx.knowledge_base(opts.node_settings)
        if opts.mode == "graph":
            ctx.ensure_graph(kb, opts.extractor)
        reader = ctx.reader(kb, opts.settings)
        if opts.mode == "graph":
            walk = dict(opts.walk)
            retriever: Any = reader.graph.retriever(seed_mode=str(walk.pop("seed_mode", "hybrid")), **walk)
        else:
            retriever = reader.retriever(alpha=opts.alpha)
        return _ranker(ctx, retriever)

    return factory


# ---------------------------------------------------------------------- the registry


RETRIEVERS: dict[str, RetrieverFactory] = {
    "kvgraph": product_retriever({}),
    "graph": product_retriever({}, graph=True, label="graph"),
    "dense": kb_retriever("dense"),
    "bm25": kb_retriever("sparse"),
    "hybrid": kb_retriever("hybrid"),  # reciprocal-rank fusion
    "hybrid_alpha": kb_retriever("hybrid", 0.5),  # min-max normalised scores, equal weights
    "base": base_retriever("dense"),
    "base_bm25": base_retriever("sparse"),
    "base_hybrid": base_retriever("hybrid"),
    "chunk_refs": recursive_retriever("chunk_refs", "dense"),
    "chunk_refs_hybrid": recursive_retriever("chunk_refs", "hybrid"),
    "chunk_refs_with_parents": recursive_retriever("chunk_refs", "dense", include_parents=True),
    "metadata_refs": recursive_retriever("metadata_refs", "dense"),
    "metadata_refs_hybrid": recursive_retriever("metadata_refs", "hybrid"),
    "metadata_refs_with_parents": recursive_retriever("metadata_refs", "dense", include_parents=True),
}
# Retrievers that never embed a query through the run's cache: with only these, the run skips embedding the queries.
LEXICAL = {"bm25", "base_bm25"}
PRODUCT = {"kvgraph", "graph"}


@dataclass(frozen=True)
class Configurable:
    """A retriever that takes options: ``build(options) -> factory``; ``takes_set``: ``--set`` applies to it."""

    build: Callable[[dict[str, str]], RetrieverFactory]
    takes_set: bool = False
    ignores_set: frozenset[str] = frozenset()  # --set keys that do not apply (graph's mode is always graph)


def _node_settings_only(spec: str, options: Mapping[str, str]) -> dict[str, str]:
    known = set(setting_names()) - QUERY_SETTINGS
    bad = [k for k in options if k not in known]
    if bad:
        raise InvalidInputError(
            f"retriever {spec!r} takes only settings that shape the chunks ({', '.join(sorted(known))}), "
            f"not {', '.join(bad)}; use kvgraph:... for query settings"
        )
    product_options(spec, options)  # value checks
    return {k: v.replace("+", ",") for k, v in options.items()}


def _reference_options(spec: str, options: Mapping[str, str], parents: bool) -> tuple[str, bool]:
    allowed = {"mode", "with_parents"} if parents else {"mode"}
    bad = [k for k in options if k not in allowed]
    if bad:
        raise InvalidInputError(
            f"retriever {spec!r} takes {' and '.join(sorted(allowed))} only, not {', '.join(bad)} "
            f"(its parents are {PARENT_SIZE} tokens: kvgraph.eval.retrievers.PARENT_SIZE)"
        )
    mode = options.get("mode", "dense")
    mode = {"bm25": "sparse"}.get(mode, mode)
    if mode not in ("dense", "sparse", "hybrid"):
        raise InvalidInputError(f"retriever {spec!r}: mode must be dense, sparse (bm25) or hybrid, not {mode!r}")
    with_parents = _typed(spec, "with_parents", options.get("with_parents", "false"), False)
    return mode, bool(with_parents)


def _reference_family(index: str) -> Configurable:
    def build(options: dict[str, str]) -> RetrieverFactory:
        mode, parents = _reference_options(index, options, parents=index != "parents")
        if index == "parents":
            return base_retriever(mode)
        return recursive_retriever(index, mode, include_parents=parents)

    return Configurable(build)


CONFIGURABLE: dict[str, Configurable] = {
    "kvgraph": Configurable(lambda o: product_retriever(o), takes_set=True),
    "graph": Configurable(
        lambda o: product_retriever(o, graph=True, label="graph"), takes_set=True, ignores_set=frozenset({"mode"})
    ),
    "dense": Configurable(lambda o: kb_retriever("dense", None, _node_settings_only("dense", o))),
    "bm25": Configurable(lambda o: kb_retriever("sparse", None, _node_settings_only("bm25", o))),
    "hybrid": Configurable(lambda o: kb_retriever("hybrid", None, _node_settings_only("hybrid", o))),
    "hybrid_alpha": Configurable(lambda o: kb_retriever("hybrid", 0.5, _node_settings_only("hybrid_alpha", o))),
    "base": _reference_family("parents"),
    "chunk_refs": _reference_family("chunk_refs"),
    "metadata_refs": _reference_family("metadata_refs"),
}


def resolve(spec: RetrieverSpec, defaults: Mapping[str, str] | None = None) -> tuple[str, RetrieverFactory]:
    """The report label and the factory of one spec; ``defaults`` are ``--set`` options (for ``kvgraph``/``graph``).

    Raises InvalidInputError for an unknown name (message starts "unknown retriever") or a bad option.
    """
    conf = CONFIGURABLE.get(spec.name)
    if conf is not None and conf.takes_set and defaults:
        spec = spec.merged({k: v for k, v in defaults.items() if k not in conf.ignores_set})
    if spec.options:
        if conf is None:
            if spec.name not in RETRIEVERS:
                raise InvalidInputError(f"unknown retriever(s) {[spec.name]}; available: {', '.join(RETRIEVERS)}")
            raise InvalidInputError(
                f"retriever {spec.name!r} takes no options (configurable: {', '.join(CONFIGURABLE)})"
            )
        return spec.label, conf.build(dict(spec.options))
    if spec.name not in RETRIEVERS:
        raise InvalidInputError(f"unknown retriever(s) {[spec.name]}; available: {', '.join(RETRIEVERS)}")
    return spec.name, RETRIEVERS[spec.name]
