"""KnowledgeBase: one directory, the front door for the Python API, the CLI and the HTTP API.

The directory's layout is in :mod:`kvgraph.kb.layout`.
    graph/, graph-index/  the knowledge graph and its node vectors (see kvgraph.kb.graph)
    references-cache.jsonl  LLM-written summaries and questions (reference_writer = llm); safe to delete

Writers (ingest, sync, delete) take the store's single-writer lock; readers (search, ask,
stats) open read-only and can run while an ingest is in progress.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kvgraph.config import CONFIG_FILE, Settings, load_settings, validate, write_settings
from kvgraph.errors import CorruptionError, InvalidInputError, KvgraphError
from kvgraph.fileio import disk_full_errors
from kvgraph.filters import FilterSpec
from kvgraph.ingest.pipeline import Ingestor, IngestReport, Progress
from kvgraph.ingest.registry import Registry
from kvgraph.kb.layout import (
    CACHE_FILE,
    CHUNKING_META,
    REFERENCES_CACHE_FILE,
    REGISTRY_FILE,
    STORE_DIR,
    default_kb_path,
)
from kvgraph.schema import Answer, Document, Node, NodeWithScore

if TYPE_CHECKING:
    from kvgraph.answer.synthesize import Answerer, StreamingAnswer
    from kvgraph.embed.base import Embedder
    from kvgraph.embed.cache import EmbeddingCache
    from kvgraph.embed.onnx_build import PrepareProgress
    from kvgraph.ingest.reference_splitter import ReferenceSplitter
    from kvgraph.ingest.splitter import SentenceSplitter
    from kvgraph.kb.backends import KBStore
    from kvgraph.kb.conversations import Exchange, FollowUp
    from kvgraph.kb.graph import KBGraph
    from kvgraph.kb.integrity import KBCheck, RepairReport
    from kvgraph.llm.base import LLM
    from kvgraph.llm.openai_compat import OpenAICompatibleLLM
    from kvgraph.retrieve.base import Retriever
    from kvgraph.retrieve.rerank import Reranker
    from kvgraph.store.embedded import EmbeddedVectorStore

log = logging.getLogger(__name__)


class KnowledgeBase:
    """A knowledge base on disk. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, path: Path, settings: Settings, read_only: bool) -> None:  # use open()
        self.path = path
        self.settings = settings
        self.read_only = read_only
        self._store: KBStore | None = None
        self._registry: Registry | None = None
        self._embedder: Embedder | None = None
        self._cache: EmbeddingCache | None = None  # node references' sentences (_sentence_embedder)
        self._answerer: Answerer | None = None
        self._rerankers: dict[str, Reranker] = {}
        self._graph: KBGraph | None = None
        self._llm: OpenAICompatibleLLM | None = None
        self._llm_key: tuple[tuple[str, str], ...] | None = None
        self._llm_clients: list[OpenAICompatibleLLM] = []
        self._closed = False
        # Parts that could not be opened ("store", "registry"): using them raises the error; check() and
        # repair() still work (see kvgraph.kb.integrity).
        self.open_errors: dict[str, KvgraphError] = {}

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        **overrides: Any,
    ) -> KnowledgeBase:
        """Open (and on first use, create) the knowledge base at ``path``.

        ``overrides`` are settings (see :class:`kvgraph.config.Settings`) for this session only.
        A read-only open needs an existing knowledge base; where only a graph was imported
        (kvgraph graph import), using the store raises InvalidInputError saying nothing was ingested.
        """
        kb_path = Path(path) if path is not None else default_kb_path()
        from kvgraph.kb.reembed import recover

        recover(kb_path, read_only=read_only)  # a re-embed killed mid-switch is finished (or discarded) first
        if read_only:
            if not (kb_path / STORE_DIR).exists() and not _has_graph(kb_path) and not _on_servers(kb_path, overrides):
                if (kb_path / REGISTRY_FILE).exists():
                    raise _no_kb(kb_path)  # files were ingested: the store went missing
                raise InvalidInputError(
                    f"no knowledge base at {kb_path}: nothing ingested (kvgraph --kb {kb_path} ingest PATH) "
                    f"and no graph here yet (kvgraph --kb {kb_path} graph import FILE)"
                )
        else:
            _prepare_dir(kb_path)
        settings = load_settings(kb_path, overrides)
        if not read_only and not (kb_path / CONFIG_FILE).exists():
            write_settings(kb_path, load_settings(None, {k: v for k, v in overrides.items() if v is not None}, env={}))
        kb = cls(kb_path, settings, read_only)
        kb._open_store()
        return kb

    @staticmethod
    def supported_extensions() -> frozenset[str]:
        """The file extensions ingest reads (lower case, with the dot): ``.pdf``, ``.md``, ``.docx``...

        Word, PowerPoint and Excel files need ``pip install 'kvgraph[formats]'``; without it they
        are still listed, and skipped at ingest with a reason saying so.
        """
        from kvgraph.ingest.loaders import supported_extensions

        return supported_extensions()

    def _open_store(self) -> None:
        from kvgraph.kb.backends import is_remote_store, open_store
        from kvgraph.kb.integrity import reconcile_on_open

        self.open_errors = {}
        if self.read_only and not (self.path / STORE_DIR).exists() and not is_remote_store(self.settings):
            return  # nothing ingested yet (a graph-only knowledge base, or none): .store says so when used
        try:
            try:
                self._store = open_store(self.path, self.settings, self.read_only)
            except CorruptionError as e:
                self.open_errors["store"] = e
            try:
                self._registry = Registry(self.path / REGISTRY_FILE, read_only=self.read_only)
            except CorruptionError as e:
                self.open_errors["registry"] = e
        except PermissionError as e:
            raise InvalidInputError(f"knowledge base {self.path}: permission denied ({e.filename})") from None
        if self._store is not None and self._registry is not None:
            try:
                reconcile_on_open(self.store, self._registry, self.read_only)  # warns when they disagree
            except CorruptionError as e:  # a registry record that no longer decodes
                self._registry.close()
                self._registry = None
                self.open_errors["registry"] = e

    def close(self) -> None:
        """Close the store, the registry, the graph and any LLM client; the object is unusable after."""
        self._closed = True
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        for client in self._llm_clients:
            client.close()
        self._llm_clients.clear()
        self._llm = None
        self._llm_key = None
        self._rerankers.clear()  # their cached token vectors (up to ~50 MB)
        for obj in (self._store, self._registry, self._cache):
            if obj is not None:
                obj.close()
        self._store = self._registry = self._cache = None

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> None:
        """Reopen the store, the file registry and the graph so that a long-lived handle (a read-only
        one beside a writer, as in ``kvgraph serve``) sees everything committed since it opened.

        Loaded models, the answerer and LLM clients are kept. Call it from the thread that uses
        the handle, between requests.
        """
        self._require_open()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        for obj in (self._store, self._registry, self._cache):
            if obj is not None:
                obj.close()
        self._store = self._registry = self._cache = None
        self._open_store()

    # ------------------------------------------------------------------ parts

    @property
    def store(self) -> EmbeddedVectorStore:
        """The vector store of chunks (and node references): embedded, or on the server of ``store_uri``."""
        if self._store is None:
            self._require_open()
            raise self.open_errors.get("store") or _no_kb(self.path)
        # Typed as the embedded store for the modules written before other backends (kb.graph's
        # GraphHost, the integrations): a Postgres store has every member they use, which the
        # contract suite (tests/contract/) checks. Widen their annotations to KBStore to drop this.
        return cast("EmbeddedVectorStore", self._store)

    @property
    def registry(self) -> Registry:
        """Which files were ingested, with their hashes and documents."""
        if self._registry is None:
            self._require_open()
            raise self.open_errors.get("registry") or _no_kb(self.path)
        return self._registry

    def _require_open(self) -> None:
        if self._closed:
            raise KvgraphError(f"knowledge base {self.path} is closed")

    @property
    def graph(self) -> KBGraph:
        """The knowledge graph (:class:`~kvgraph.kb.graph.KBGraph`): Cypher, node index, graph questions."""
        if self._graph is None:
            from kvgraph.kb.graph import KBGraph

            self._graph = KBGraph(self)
        return self._graph

    @property
    def embedder(self) -> Embedder:
        """The configured embedder, loaded on first use (commands that do not embed never pay for it)."""
        if self._embedder is None:
            from kvgraph.embed.factory import embedder_from_spec

            # Not behind the embedding cache: an ingest takes the vectors of unchanged chunks from
            # the store (Ingestor.embed_nodes), so each is kept once, and questions are not written
            # anywhere. Only node references' sentences go through it (_sentence_embedder).
            self._embedder = embedder_from_spec(self.settings.embedder, threads=self.settings.embed_threads)
        return self._embedder

    def prepare_embedder(self, progress: Callable[[PrepareProgress], None] | None = None) -> bool:
        """Prepare the embedding model before the first embedding needs it (the ONNX file, once per machine).

        Returns True when it had to be prepared, reporting its steps to ``progress`` (see
        :meth:`kvgraph.embed.onnx.OnnxEmbedder.prepare`); False when it was ready, or when the
        embedder needs no preparation (a server, the hashing embedder). Interfaces call it first to
        say what the pause is about.
        """
        embedder: Any = self.embedder
        is_prepared = getattr(embedder, "is_prepared", None)
        if is_prepared is None or is_prepared():
            return False
        embedder.prepare(progress=progress)
        return True

    def _ingestor(self, progress: Progress | None) -> Ingestor:
        self.require_writable()
        self._check_model()
        self._drop_old_embedding_cache()
        self._rechunk_if_changed(progress)
        return Ingestor(
            self.store,
            self.registry,
            self.embedder,
            self._splitter(progress),
            progress=progress,
            max_file_bytes=self.settings.max_file_mb << 20,
        )

    def _drop_old_embedding_cache(self) -> None:
        """Delete the embedding cache of a version before 2026-12 (every chunk vector a second time,
        and every question): the store serves unchanged chunks now. This version's cache (a re-embed's
        vectors, node references' sentences: :mod:`kvgraph.embed.cache`) is marked and kept; so is a
        file that cannot be read (``kvgraph check`` reports it, ``kvgraph repair`` sets it aside)."""
        path = self.path / CACHE_FILE
        if not path.exists() or self._cache is not None:
            return
        from kvgraph.embed.cache import CACHE_FORMAT, cache_format, remove_cache_file

        found = cache_format(path)
        if found is not None and found < CACHE_FORMAT:
            remove_cache_file(path)
            log.info("%s: removed the embedding cache of an older version", path)

    def _sentence_embedder(self) -> Embedder:
        """The model behind an embedding cache, for node references: they embed every candidate
        sentence of a parent and keep a few, so the store cannot serve a changed file's sentences."""
        from kvgraph.embed.cache import CachedEmbedder, EmbeddingCache

        if self._cache is None:
            self._cache = EmbeddingCache(self.path / CACHE_FILE)
        return CachedEmbedder(self.embedder, self._cache)

    def _chunking(self) -> str:
        """The settings that shape the stored nodes, as canonical JSON (only those that apply)."""
        s = self.settings
        keys = {
            "none": ("chunk_size", "context_headers"),
            "chunk": ("parent_size", "child_sizes", "context_headers"),
            "metadata": ("parent_size", "n_questions", "reference_writer"),
            "both": ("parent_size", "child_sizes", "n_questions", "reference_writer", "context_headers"),
        }[s.references]
        layout: dict[str, Any] = {k: getattr(s, k) for k in ("references", "chunk_overlap", *keys)}
        from kvgraph.ingest.loaders.markdown import MIN_SECTION_CHARS

        layout["markdown_sections"] = f"merged-{MIN_SECTION_CHARS}"  # how Markdown files become documents
        return json.dumps(layout, sort_keys=True)

    def stored_references(self) -> str:
        """The references the stored nodes were built with (none, chunk, metadata, both)."""
        stored = self.store.get_meta(CHUNKING_META)
        return str(json.loads(stored).get("references", "none")) if stored else "none"

    def _rechunk_if_changed(self, progress: Progress | None) -> None:
        """Re-split every registered file when the chunking settings differ from the stored layout."""
        current = self._chunking()
        stored = self.store.get_meta(CHUNKING_META)
        if stored == current:
            return
        if stored is not None and self.registry.all():
            splitter = self._splitter(progress)
            Ingestor(
                self.store,
                self.registry,
                self.embedder,
                splitter,
                progress=progress,
                force=True,
                max_file_bytes=self.settings.max_file_mb << 20,
            ).sync()
            self._save_layout()
            self.store.set_meta(CHUNKING_META, current)
            self.graph.refresh()  # every chunk is new: a document graph built on the old ones is rebuilt
            return
        self._save_layout()
        self.store.set_meta(CHUNKING_META, current)

    def _save_layout(self) -> None:
        """Write the node-shaping settings to kvgraph.toml where they came from elsewhere (the environment,
        an argument of open()), once the stored nodes have that layout.

        The file then says how the stored nodes were built, so the next run without the variable does
        not silently split everything back (docs/configuration.md). Written before the layout marker:
        a crash in between only repeats the re-split.
        """
        layout = json.loads(self._chunking())
        on_file = load_settings(self.path, env={})
        changed = {k: v for k, v in layout.items() if hasattr(on_file, k) and getattr(on_file, k) != v}
        if not changed:
            return
        path = write_settings(self.path, dataclasses.replace(on_file, **changed))
        saved = ", ".join(f"{k} = {json.dumps(v)}" for k, v in changed.items())
        log.warning("%s: saved %s, the layout the stored nodes now have", path, saved)

    def _splitter(self, progress: Progress | None = None) -> SentenceSplitter | ReferenceSplitter:
        from kvgraph.ingest.splitter import SentenceSplitter

        counter_of = getattr(self.embedder, "token_counter", None)
        if counter_of is None:
            raise InvalidInputError(
                f"embedder {self.settings.embedder!r} has no local tokenizer to count chunk tokens; "
                "use a local model (onnx-int8, onnx-fp32, sentence-transformers)"
            )
        from kvgraph.ingest.loaders.markdown import MIN_SECTION_CHARS

        s = self.settings
        if s.references == "none":
            return SentenceSplitter(
                counter_of(),
                s.chunk_size,
                s.chunk_overlap,
                context_headers=s.context_headers,
                min_section_chars=MIN_SECTION_CHARS,
            )
        from kvgraph.ingest.reference_splitter import ReferenceSplitter

        llm = None
        if s.reference_writer == "llm" and s.references in ("metadata", "both"):
            from kvgraph.llm.base import require_llm

            llm = require_llm(self.llm(), "reference_writer = llm")
        return ReferenceSplitter(
            s.references,
            counter_of(),
            self._sentence_embedder(),
            parent_size=s.parent_size,
            sub_sizes=s.child_sizes,
            overlap=s.chunk_overlap,
            n_questions=s.n_questions,
            llm=llm,
            cache_path=self.path / REFERENCES_CACHE_FILE,
            # LLM-written references cost money and time: a progress display that can show it does
            progress=getattr(progress, "llm_progress", None) if llm is not None else None,
            context_headers=s.context_headers,
            min_section_chars=MIN_SECTION_CHARS,
        )

    def require_writable(self) -> None:
        """Raise unless the knowledge base was opened for writing."""
        if self.read_only:
            raise KvgraphError(f"knowledge base {self.path} was opened read-only")

    def _check_model(self) -> None:
        """Vectors from two different models in one store would make search meaningless."""
        model = self.embedder.model_name
        stored = self.store.get_meta("embedding_model")
        if stored is None:
            if not self.read_only:
                self.store.set_meta("embedding_model", model)
            return
        if stored != model:
            raise InvalidInputError(
                f"knowledge base {self.path} was embedded with {stored!r} but the configured embedder is "
                f"{model!r}; set embedder back in {self.path / CONFIG_FILE} or ingest into a new knowledge base"
            )

    # ------------------------------------------------------------------ writing

    def ingest(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        progress: Progress | None = None,
        engine: str = "local",
        address: str | None = None,
    ) -> IngestReport:
        """Ingest files and directories; unchanged files are skipped, changed ones replaced.

        ``engine="ray"`` loads, splits and embeds on the workers of a Ray cluster (``address``, or a
        local one) and commits here in batches (:mod:`kvgraph.ingest.distributed`).
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if engine not in ("local", "ray"):
            raise InvalidInputError(f"engine must be local or ray, got {engine!r}")
        if engine == "ray":
            from kvgraph.ingest.distributed import RayOptions, ingest_with_ray
            from kvgraph.kb.backends import ray_pipeline

            pipeline = ray_pipeline(self.settings)
            with disk_full_errors(self.path):
                self._ingestor(progress)  # the checks of a local ingest: writable, same model, same chunking
                report = ingest_with_ray(
                    self.store,
                    self.registry,
                    [Path(p) for p in paths],
                    pipeline,
                    include=include if include is not None else self.settings.include,
                    exclude=exclude if exclude is not None else self.settings.exclude,
                    max_file_bytes=self.settings.max_file_mb * 2**20,
                    progress=progress,
                    options=RayOptions(address=address),
                )
                if report.files_ingested:
                    self.graph.refresh()
                    self._save_search_caches()
            return report
        with disk_full_errors(self.path):
            ingestor = self._ingestor(progress)  # checks the knowledge base can take the files
            self.graph.prefetch()  # read the document graph while the files are processed
            report = ingestor.ingest_paths(
                [Path(p) for p in paths],
                include=include if include is not None else self.settings.include,
                exclude=exclude if exclude is not None else self.settings.exclude,
            )
            if report.files_ingested:
                self.graph.refresh()
                self._save_search_caches()
        return report

    def _save_search_caches(self) -> None:
        """Write the store's derived structures (BM25 postings, metadata columns, ids) after a batch.

        Otherwise a knowledge base that was only ingested has no BM25 cache, and every new reader
        process (``kvgraph search``, each server reader) rebuilds it from all the text before its
        first hybrid search: 0.7 s at 10k chunks, growing with the size. The update is incremental
        (only new chunks are analysed). Server backends keep their own indexes.
        """
        checkpoint = getattr(self.store, "checkpoint", None)
        if checkpoint is not None and not self.read_only:
            checkpoint()

    def add_documents(self, docs: Sequence[Document], progress: Progress | None = None) -> list[Node]:
        """Split, embed and store already-loaded documents (re-adding a document id replaces it)."""
        with disk_full_errors(self.path):
            ingestor = self._ingestor(progress)
            self.graph.prefetch()  # read the document graph while the documents are processed
            nodes = ingestor.add_api_documents(docs)  # listed in the registry too
            self.graph.refresh()
        return nodes

    def sync(self, paths: Sequence[str | os.PathLike[str]] = (), progress: Progress | None = None) -> IngestReport:
        """Bring the knowledge base up to date with its folders: new, changed and deleted files.

        A document graph (``kvgraph graph build``) is rebuilt when chunks changed; deleted chunks
        never come back from graph retrieval even before that (they are looked up in the store).
        """
        with disk_full_errors(self.path):
            ingestor = self._ingestor(progress)
            self.graph.prefetch()  # read the document graph while the folders are compared and processed
            report = ingestor.sync([Path(p) for p in paths])
            if report.files_ingested or report.files_removed or report.files_restored or report.orphans_removed:
                self.graph.refresh()
                self._save_search_caches()
        return report

    def delete(self, doc: str | os.PathLike[str]) -> int:
        """Delete a file (by path) or a document (by id) and every node derived from it."""
        from kvgraph.ingest.loaders import file_key
        from kvgraph.ingest.pipeline import remove_file

        self.require_writable()
        key = file_key(Path(doc))
        rec = self.registry.get(key)
        if rec is not None:  # a file: no model needed to delete it
            removed = remove_file(self.store, self.registry, rec)
            self.registry.remove_root(key)
            return removed
        removed = self.store.delete_ref_doc(str(doc))
        if removed == 0:
            raise InvalidInputError(f"{doc}: no such file or document in knowledge base {self.path}")
        self.registry.forget_document(str(doc), int(removed))  # or the next ingest would restore it
        return int(removed)

    def check(self) -> KBCheck:
        """Check every part of the knowledge base (``kvgraph check``): checksums, the registry against the
        store, caches, the document graph, the graph database. Reads only; see :mod:`kvgraph.kb.integrity`.
        """
        from kvgraph.kb.integrity import check_kb

        return check_kb(self.path)

    def repair(self, progress: Progress | None = None) -> RepairReport:
        """Rebuild every derived file and ingest again what is missing (``kvgraph repair``).

        Damaged files are set aside as ``<name>.damaged-<time>``, never deleted; the report lists
        what was done and what a check still finds (see :mod:`kvgraph.kb.integrity`).
        """
        from kvgraph.kb.integrity import repair_kb

        self.require_writable()
        with disk_full_errors(self.path):
            return repair_kb(self, lambda: self._ingestor(progress))

    def reembed(self, embedder: str, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Re-embed every node with ``embedder`` (a spec or a model directory) and switch to it atomically.

        The new store is built beside the old one and swapped in with the settings file (and the
        document graph, rebuilt from the new vectors): a crash leaves the old or the new knowledge
        base, never a mix (see :mod:`kvgraph.kb.reembed`). ``progress(done, total)`` counts nodes.
        Returns the report as a dict; the knowledge base stays open, now on the new model.
        """
        from kvgraph.kb.reembed import recover, reembed

        self.require_writable()
        self._check_model()  # refuse to start from a store whose vectors do not match its settings
        for obj in (self._store, self._registry, self._cache):
            if obj is not None:
                obj.close()
        if self._graph is not None:
            self._graph.close()
        self._store = self._registry = self._cache = None
        self._graph = self._embedder = self._answerer = None
        self._rerankers.clear()
        try:
            report = reembed(self.path, embedder, threads=self.settings.embed_threads, progress=progress)
        finally:
            try:
                recover(self.path)  # an error after the commit: finish the switch now
            finally:
                self.settings = load_settings(self.path, {**dataclasses.asdict(self.settings), "embedder": None})
                if (self.path / STORE_DIR).exists():  # never create an empty store in its place
                    self._open_store()
        return report.to_dict()

    # ------------------------------------------------------------------ reading

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: FilterSpec = None,
        mode: str | None = None,
        alpha: float | None = None,
    ) -> list[NodeWithScore]:
        """The ``k`` chunks that best match ``query`` (dense, sparse, hybrid or mmr).

        With node references in the store, the small nodes are searched and the parent chunks
        they point to are returned (as :class:`~kvgraph.retrieve.RetrievedNode`, whose ``path``
        says through which node); with ``rerank`` set, a second stage reorders the candidates.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string")
        k = k or self.settings.top_k
        if self.store.count() == 0:
            return []
        return list(self.retriever(filters=filters, mode=mode, alpha=alpha).retrieve(query, k))

    def retriever(
        self, filters: FilterSpec = None, mode: str | None = None, alpha: float | None = None, rerank: str | None = None
    ) -> Retriever:
        """The retrieval pipeline :meth:`search` runs: store query, references, reranking.

        ``rerank`` overrides the setting for this pipeline (``"none"``: the first stage alone, as
        graph mode takes its seeds)."""
        from kvgraph.filters import And, parse_filter
        from kvgraph.ingest.references import search_filter
        from kvgraph.retrieve import RecursiveRetriever, RerankingRetriever, StoreRetriever
        from kvgraph.retrieve.rerank import DEFAULT_FETCH_K
        from kvgraph.retrieve.tokens import FETCH_K as TOKENS_FETCH_K

        mode = mode or self.settings.mode
        embedder = None
        if mode != "sparse":
            self._check_model()
            embedder = self.embedder
        if mode == "graph":  # knowledge-vector-graph: hybrid seeds, then a walk over the document graph
            return self.graph.retriever(filters=filters)
        references = self.stored_references() != "none"
        if references:  # search the small nodes; parents are what recursion returns
            filters = And((parse_filter(filters), parse_filter(search_filter())))
        retriever: Retriever
        if mode == "hybrid" and alpha is None and embedder is not None:
            retriever = self._fusion_retriever(embedder, filters)
        else:  # an explicit alpha keeps the store's min-max fusion with that weight
            retriever = StoreRetriever(self.store, embedder, mode=mode, filters=filters, alpha=alpha)
        if references:
            retriever = RecursiveRetriever(retriever, self.store)
        rerank = self._rerank_spec(embedder, mode, rerank)
        if rerank != "none":
            fetch_k = self.settings.rerank_fetch_k or (TOKENS_FETCH_K if rerank == "tokens" else DEFAULT_FETCH_K)
            retriever = RerankingRetriever(retriever, self._reranker(rerank), fetch_k=fetch_k)
        return retriever

    def _rerank_spec(self, embedder: Embedder | None, mode: str, asked: str | None = None) -> str:
        """The reranker to run: ``auto`` is late interaction in dense and hybrid search when the
        question is embedded by a model that gives token vectors (the local ONNX one), and none
        otherwise (``mmr`` orders for diversity, which a relevance reranker would undo)."""
        spec = self.settings.rerank if asked is None else asked
        if asked is not None:
            validate(dataclasses.replace(self.settings, rerank=asked))  # the setting's own error for a bad value
        if spec != "auto":
            return spec
        tokens = embedder is not None and callable(getattr(embedder, "token_vectors", None))
        return "tokens" if tokens and mode in ("dense", "hybrid") else "none"

    def _fusion_retriever(self, embedder: Embedder, filters: FilterSpec) -> Retriever:
        """Hybrid search as the settings say: adaptive fusion, feedback, and LLM query expansion."""
        from kvgraph.retrieve.fusion import FusionRetriever

        s = self.settings
        fusion = FusionRetriever(
            self.store, embedder, filters, method=s.fusion, alpha=s.fusion_alpha, feedback=s.query_feedback
        )
        if s.query_expansion == "none":
            return fusion
        from kvgraph.retrieve.expansion import ExpandedRetriever

        return ExpandedRetriever(fusion, self.require_llm(f"query_expansion = {s.query_expansion}"), s.query_expansion)

    def _reranker(self, spec: str) -> Reranker:
        """One reranker per spec while the embedder stays the same: the offline ones keep their
        candidates' token or sentence vectors between questions."""
        reranker = self._rerankers.get(spec)
        if reranker is None:
            reranker = self._rerankers[spec] = self._new_reranker(spec)
        return reranker

    def _new_reranker(self, spec: str) -> Reranker:
        from kvgraph.retrieve import CrossEncoderReranker, MMRReranker

        if spec == "mmr":
            return MMRReranker(self.embedder)
        if spec == "sentences":
            from kvgraph.retrieve.sentences import SentenceReranker

            return SentenceReranker(self.embedder)
        if spec == "tokens":
            from kvgraph.ingest.context import embedding_text
            from kvgraph.retrieve.tokens import TokenReranker

            return TokenReranker(self.embedder, text_of=embedding_text)
        return CrossEncoderReranker(spec.split(":", 1)[1])

    def answerer(self) -> Answerer:
        """The configured answerer: an LLM when one is set up (or asked for), else extractive."""
        if self._answerer is None:
            from kvgraph.answer.extractive import ExtractiveAnswerer

            choice = self.settings.answerer
            llm = self.llm() if choice in ("auto", "llm") else None
            if choice == "llm" and llm is None:
                from kvgraph.llm.base import require_llm

                require_llm(None, "answerer = llm")
            if llm is not None:
                from kvgraph.answer.synthesize import LLMAnswerer

                self._answerer = LLMAnswerer(llm)
            else:
                self._answerer = ExtractiveAnswerer(
                    self.embedder,
                    max_sentences=self.settings.max_answer_sentences,
                    max_chars=self.settings.max_answer_chars,
                )
        return self._answerer

    def llm(self) -> LLM | None:
        """The LLM of the settings or the environment; None when none is configured (offline).

        One client per configuration, reused while the configuration stays the same and closed
        with the knowledge base.
        """
        env = {k: v for k, v in os.environ.items() if k.startswith(("KVGRAPH_LLM_", "OPENAI_"))}
        if self.settings.llm_base_url:
            env["KVGRAPH_LLM_BASE_URL"] = self.settings.llm_base_url
        if self.settings.llm_model:
            env["KVGRAPH_LLM_MODEL"] = self.settings.llm_model
        key = tuple(sorted(env.items()))
        if key != self._llm_key:
            from kvgraph.llm.openai_compat import llm_from_env

            self._llm = llm_from_env(env)
            self._llm_key = key
            if self._llm is not None:  # an answerer may still hold an earlier client: all close with the KB
                self._llm_clients.append(self._llm)
        return self._llm

    def require_llm(self, feature: str) -> LLM:
        """:meth:`llm`, or LLMUnavailableError saying how to configure one for ``feature``."""
        from kvgraph.llm.base import require_llm

        return require_llm(self.llm(), feature)

    def ask(
        self,
        question: str,
        k: int | None = None,
        filters: FilterSpec = None,
        mode: str | None = None,
    ) -> Answer:
        """Retrieve, then answer from the retrieved chunks with numbered citations."""
        answer: Answer = self.answerer().answer(question, self._context(question, k, filters, mode))
        return answer

    def ask_stream(
        self,
        question: str,
        k: int | None = None,
        filters: FilterSpec = None,
        mode: str | None = None,
    ) -> StreamingAnswer:
        """Like :meth:`ask`, as a :class:`~kvgraph.answer.synthesize.StreamingAnswer`: iterate it for text
        as the LLM writes it, then call ``.answer()``. The extractive answerer yields its text at once.
        """

        from kvgraph.answer.synthesize import LLMAnswerer, StreamingAnswer

        hits = self._context(question, k, filters, mode)
        answerer = self.answerer()
        if isinstance(answerer, LLMAnswerer):
            return answerer.stream(question, hits)
        done: Answer = answerer.answer(question, hits)
        return StreamingAnswer(iter([done.text]), lambda _text: done)

    def condense(self, message: str, history: Sequence[Exchange]) -> FollowUp:
        """The standalone question for a follow-up ``message`` after ``history`` (oldest turn first).

        With an LLM the model rewrites it from the conversation; offline the previous question's
        entities are appended (see :mod:`kvgraph.kb.conversations`). Pass the result's
        ``question`` to :meth:`ask` or :meth:`ask_stream`.
        """
        from kvgraph.kb.conversations import condense_question

        return condense_question(message, history, self.llm())

    def _context(self, question: str, k: int | None, filters: FilterSpec, mode: str | None) -> list[NodeWithScore]:
        hits = self.search(question, k=k, filters=filters, mode=mode)
        if self.settings.expand_neighbors:
            from kvgraph.retrieve import expand_neighbors

            hits = expand_neighbors(hits, self.store)
        return hits

    def documents(self) -> list[dict[str, Any]]:
        """The ingested files: path, hash, size, documents and tokens of each."""
        return [r.__dict__ for r in self.registry.all()]

    def stats(self) -> dict[str, Any]:
        """Counts, settings that shape the nodes, and disk use.

        ``documents`` counts those from files (``documents_from_files``) and those added with
        :meth:`add_documents` (``documents_added``); ``tokens`` are the ingested files'.
        """
        files = self.registry.all()
        st = self.store.stats()
        references = self.stored_references()
        from_files = {d for r in files for d in r.doc_ids}
        added = [d for d in self.store.doc_counts() if d not in from_files]  # add_documents, not a file
        return {
            "path": str(self.path),
            "files": len(files),
            "documents": len(from_files) + len(added),
            "documents_from_files": len(from_files),
            "documents_added": len(added),
            "chunks": self.store.count(),
            "tokens": sum(r.n_tokens for r in files),
            "embedder": self.settings.embedder,
            "embedding_model": self.store.get_meta("embedding_model"),
            "chunk_size": self.settings.chunk_size,
            "chunk_overlap": self.settings.chunk_overlap,
            "references": references,
            "nodes_by_role": self._nodes_by_role() if references != "none" else {},
            "rerank": self.settings.rerank,
            "dim": st.get("dim"),
            "ann_active": st.get("ann_active"),
            "disk_bytes": sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file()),
        }

    def _nodes_by_role(self) -> dict[str, int]:
        return {
            role: len(self.store.ids(filters={"role": role})) for role in ("parent", "child", "summary", "question")
        }


def _prepare_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"knowledge base path {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInputError(f"cannot create knowledge base directory {path}: {e.strerror or e}") from None
    if not path.is_dir():
        raise InvalidInputError(f"knowledge base path {path} exists and is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidInputError(f"knowledge base directory {path} is not writable")


def _has_graph(path: Path) -> bool:
    from kvgraph.graphdb.open import graph_path

    return graph_path(path).exists() or bool(os.environ.get("KVGRAPH_NEO4J_URI"))


def _on_servers(path: Path, overrides: dict[str, Any]) -> bool:
    """A knowledge base whose vectors or graph live on a server has no store/ or graph/ directory."""
    if not (path / CONFIG_FILE).exists():
        return False
    s = load_settings(path, overrides)
    return bool(s.store_uri or s.graph_uri)


def _no_kb(path: Path) -> KvgraphError:
    if (path / REGISTRY_FILE).exists() and not (path / STORE_DIR).exists():
        return CorruptionError(
            path / STORE_DIR,
            "missing, though the file registry lists ingested files: run kvgraph sync (or kvgraph repair) "
            "to ingest them again",
        )
    return InvalidInputError(f"no knowledge base at {path}: ingest documents first (kvgraph --kb {path} ingest PATH)")
