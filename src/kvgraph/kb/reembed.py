"""Switch a knowledge base to another embedding model in one crash-safe operation.

Every stored node is embedded again with the new model into a new store built *beside* the old
one, in ``KB/reembed.tmp/``, together with the new settings file and, when the knowledge base has
a document graph, that graph rebuilt from the new vectors (offline and with cached LLM triples
only: no request is sent). Nothing the knowledge base reads changes until the new parts are
complete and a commit marker is written; then they are moved into place:

1. ``KB/store`` -> ``reembed.tmp/old-store``, then ``reembed.tmp/store`` -> ``KB/store`` (renames);
2. ``reembed.tmp/kvgraph.toml`` -> ``KB/kvgraph.toml`` and the graph files -> ``KB/doc-graph/``;
3. the marker is removed, then the staging folder.

A process killed at any point leaves either the old knowledge base (no marker: the staging
folder is discarded by the next writable open) or the new one (marker: the next open, read-only
or not, finishes the moves; each step checks what is already done, so finishing twice is
harmless). :func:`recover` is that next-open step; ``KnowledgeBase.open`` runs it first.

The old store's writer lock is held while it is read, so no ingest can slip in between; between
closing it and the switch, the lock is taken again and the store's generation compared with the
one that was copied: if another writer got in, the re-embed is abandoned (nothing lost).

The new store records the new model in ``embedding_model``, so the knowledge base keeps refusing
to mix two models. The graph node index (``KB/graph-index``, vectors of Cypher graph nodes) is
not re-embedded: it refuses searches with the new model and names the command that fixes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.config import CONFIG_FILE, load_settings, write_settings
from kvgraph.errors import InvalidInputError, KvgraphError, StoreLockedError
from kvgraph.fileio import atomic_write, fsync_dir
from kvgraph.kb.layout import CACHE_FILE, CHUNKING_META, DOC_GRAPH_DIR, STAGING_DIR, STORE_DIR, TRIPLES_CACHE
from kvgraph.locking import WriterLock

COMMIT_FILE = "COMMITTED"
LOCK_FILE = "reembed.lock"
NEW_STORE = "store"
OLD_STORE = "old-store"
BATCH = 256
GRAPH_FILES = ("graph.npz", "graph.json")
COPIED_META = (CHUNKING_META,)  # store meta that describes the nodes, not the vectors

Progress = Callable[[int, int], None]


@dataclass
class ReembedReport:
    """What a re-embed did."""

    path: str
    old_model: str | None
    new_model: str
    embedder: str
    nodes: int
    seconds: float
    doc_graph_rebuilt: bool = False
    changed: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------- locking


@contextmanager
def _kb_lock(kb_path: Path, blocking: bool) -> Iterator[bool]:
    """The knowledge base's re-embed lock (a flock the kernel drops when its holder dies); yields whether held."""
    fd = os.open(kb_path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- recovery


def recover(kb_path: str | os.PathLike[str], read_only: bool = False) -> str | None:
    """Finish or discard an interrupted re-embed of the knowledge base at ``kb_path``.

    Returns ``"finished"``, ``"discarded"`` or None (nothing to do, or a re-embed is running).
    A committed switch is finished by any open, since both the old and the half-moved state are
    unreadable without it; an uncommitted one is discarded only by a writable open.
    """
    path = Path(kb_path)
    staging = path / STAGING_DIR
    if not staging.exists():
        return None
    if (staging / COMMIT_FILE).exists():
        try:
            with _kb_lock(path, blocking=True):  # the re-embedding process may be moving files right now
                if (staging / COMMIT_FILE).exists():
                    _roll_forward(path, staging)
                    return "finished"
                return None
        except PermissionError:
            raise InvalidInputError(
                f"knowledge base {path}: a re-embed was interrupted after its commit and must be finished by a "
                "writable open (kvgraph --kb PATH stats, as a user who may write there)"
            ) from None
    if read_only:
        return None
    with _kb_lock(path, blocking=False) as held:
        if not held:  # a re-embed is running: its staging folder is not ours to remove
            return None
        if staging.exists() and not (staging / COMMIT_FILE).exists():
            shutil.rmtree(staging)
            return "discarded"
    return None


def _roll_forward(kb: Path, staging: Path) -> None:
    """Move the committed new parts into place; every step checks whether it was done already."""
    new_store, old_store, store = staging / NEW_STORE, staging / OLD_STORE, kb / STORE_DIR
    if new_store.exists():
        if store.exists() and not old_store.exists():
            os.rename(store, old_store)
        if not store.exists():
            os.rename(new_store, store)
        fsync_dir(kb)
    staged_config = staging / CONFIG_FILE
    if staged_config.exists():
        os.replace(staged_config, kb / CONFIG_FILE)
    staged_graph = staging / DOC_GRAPH_DIR
    if staged_graph.exists():
        (kb / DOC_GRAPH_DIR).mkdir(exist_ok=True)
        from kvgraph.docgraph.build import remove_unnamed_files
        from kvgraph.docgraph.names_file import names_files

        graph_dir = kb / DOC_GRAPH_DIR
        # The name vectors before the arrays and JSON that name them; each move only if not done yet.
        for name in [p.name for p in names_files(staged_graph)] + list(GRAPH_FILES):
            if (staged_graph / name).exists():
                os.replace(staged_graph / name, graph_dir / name)
        fsync_dir(graph_dir)
        remove_unnamed_files(
            graph_dir
        )  # the old name vectors, and a full build's adjacency (a re-embedded graph saves none)
    fsync_dir(kb)
    (staging / COMMIT_FILE).unlink()
    fsync_dir(staging)
    shutil.rmtree(staging)  # the old store; without the marker a leftover is discarded as uncommitted
    # The cache spared a re-run the vectors already computed, which are all in the store now; what
    # else it held (node references' sentences) is the old model's.
    from kvgraph.embed.cache import remove_cache_file

    remove_cache_file(kb / CACHE_FILE)


# ---------------------------------------------------------------------- re-embedding


def normalize_spec(spec: str) -> str:
    """An embedder spec with a model directory made absolute (``DIR`` alone means ``onnx-int8:DIR``)."""
    text = spec.strip()
    if text and Path(text).expanduser().is_dir():
        return f"onnx-int8:{Path(text).expanduser().resolve()}"
    kind, sep, arg = text.partition(":")
    if sep and kind in ("onnx", "onnx-int8", "onnx-fp32", "sentence-transformers") and Path(arg).expanduser().is_dir():
        return f"{kind}:{Path(arg).expanduser().resolve()}"
    return text


def reembed(
    kb_path: str | os.PathLike[str],
    embedder: str,
    *,
    threads: int = 0,
    progress: Progress | None = None,
    force: bool = False,
) -> ReembedReport:
    """Re-embed every node of the knowledge base at ``kb_path`` with ``embedder`` (a spec or a model directory).

    The knowledge base must not be open for writing elsewhere (the store's writer lock is taken).
    Without ``force``, a knowledge base already embedded with that model is left as it is.
    """
    from kvgraph.embed.cache import CachedEmbedder, EmbeddingCache
    from kvgraph.embed.factory import embedder_from_spec
    from kvgraph.store import EmbeddedVectorStore

    path = Path(kb_path)
    spec = normalize_spec(embedder)
    t0 = time.perf_counter()
    if not (path / STORE_DIR / "records.sqlite").exists():
        raise InvalidInputError(f"no knowledge base at {path}: nothing ingested to re-embed")
    recover(path)
    inner = embedder_from_spec(spec, threads=threads)
    if getattr(inner, "token_counter", None) is None:
        raise InvalidInputError(
            f"embedder {spec!r} has no local tokenizer to count chunk tokens; re-embed with a local model "
            "(a fine-tuned model directory, onnx-int8, onnx-fp32 or sentence-transformers)"
        )
    with _kb_lock(path, blocking=False) as held:
        if not held:
            raise StoreLockedError(f"{path}: another re-embed of this knowledge base is running")
        staging = path / STAGING_DIR
        old = EmbeddedVectorStore.open(path / STORE_DIR)  # takes the writer lock: no ingest meanwhile
        try:
            old_model = old.get_meta("embedding_model")
            if old_model == inner.model_name and not force:
                return ReembedReport(str(path), old_model, inner.model_name, spec, old.count(), 0.0, changed=False)
            if staging.exists():
                shutil.rmtree(staging)  # an earlier, uncommitted attempt (we hold the lock)
            staging.mkdir()
            cache = EmbeddingCache(path / CACHE_FILE)  # a re-run after a crash embeds only what is new
            try:
                model = CachedEmbedder(inner, cache)
                count = _copy_nodes(old, staging / NEW_STORE, model, inner.model_name, progress)
                graph_rebuilt = _stage_doc_graph(path, staging, model)
            finally:
                cache.close()
            generation = old.stats()["generation"]
        finally:
            old.close()
        settings = replace(load_settings(path, env={}), embedder=spec)
        write_settings(staging, settings)
        fsync_dir(staging)
        # The old store was closed (its close writes into it); take its lock again for the switch and
        # make sure nobody wrote in between.
        lock = WriterLock(path / STORE_DIR / "LOCK")
        try:
            lock.acquire()
        except StoreLockedError:
            shutil.rmtree(staging)
            raise StoreLockedError(
                f"{path}: another writer opened the knowledge base during the re-embed; nothing was changed, "
                "run it again when that writer is done"
            ) from None
        try:
            with EmbeddedVectorStore.open(path / STORE_DIR, read_only=True) as check:
                if check.stats()["generation"] != generation:
                    shutil.rmtree(staging)
                    raise KvgraphError(
                        f"{path}: documents changed during the re-embed; nothing was changed, run it again"
                    )
            atomic_write(staging / COMMIT_FILE, [json.dumps({"embedder": spec, "model": inner.model_name}).encode()])
            _roll_forward(path, staging)
        finally:
            lock.release()
    notes = []
    if (path / "graph-index" / "records.sqlite").exists():
        notes.append(
            "the graph node index (graph-index/) still holds vectors of the old model: index the labels again "
            "(kvgraph graph index LABEL ...)"
        )
    if os.environ.get("KVGRAPH_EMBEDDER"):
        notes.append("KVGRAPH_EMBEDDER is set and overrides the knowledge base's embedder: unset it")
    return ReembedReport(
        str(path),
        old_model,
        inner.model_name,
        spec,
        count,
        round(time.perf_counter() - t0, 3),
        doc_graph_rebuilt=graph_rebuilt,
        notes=notes,
    )


def _copy_nodes(old: Any, target: Path, model: Any, model_name: str, progress: Progress | None) -> int:
    """Every live node of ``old`` into a new store at ``target``, embedded with ``model``; returns the count."""
    from kvgraph.ingest.context import embedding_text
    from kvgraph.store import EmbeddedVectorStore

    st = old.stats()
    ids = old.ids()
    new = EmbeddedVectorStore.open(
        target,
        metric=old.metric,
        ann_threshold=st["ann_threshold"],
        ef_search=old.ef_search,
        ann_storage=st["ann_storage"],
        background_indexing=False,
    )
    try:
        for key in COPIED_META:
            value = old.get_meta(key)
            if value is not None:
                new.set_meta(key, value)
        new.set_meta("embedding_model", model_name)
        done = 0
        for start in range(0, len(ids), BATCH):
            nodes = [n for n in old.get(ids[start : start + BATCH]) if n is not None]
            # What ingest embedded: the chunk's context header (when it has one) and its text.
            vectors = np.asarray(model.embed([embedding_text(n) for n in nodes]), dtype=np.float32)
            new.add_arrays(
                [n.id for n in nodes],
                vectors,
                metadatas=[n.metadata for n in nodes],
                texts=[n.text for n in nodes],
                ref_doc_ids=[n.ref_doc_id for n in nodes],
                relationships=[n.relationships for n in nodes],
            )
            done += len(nodes)
            if progress is not None:
                progress(done, len(ids))
        new.checkpoint()
        return done
    finally:
        new.close()


def _stage_doc_graph(kb: Path, staging: Path, model: Any) -> bool:
    """Rebuild the document graph from the new vectors into the staging folder, if the knowledge base has one."""
    from kvgraph.docgraph.build import DocGraph, build_doc_graph
    from kvgraph.docgraph.triples import TripleExtractor
    from kvgraph.store import EmbeddedVectorStore

    graph_dir = kb / DOC_GRAPH_DIR
    if not (graph_dir / GRAPH_FILES[0]).exists():
        return False
    try:
        extractor = str(DocGraph.load(graph_dir).meta.get("extractor") or "offline")
    except KvgraphError:
        extractor = "offline"
    with EmbeddedVectorStore.open(staging / NEW_STORE, read_only=True) as store:
        chunking = json.loads(store.get_meta(CHUNKING_META) or "{}")
        role = {"role": "parent"} if chunking.get("references", "none") != "none" else None
        nodes = [n for n in store.get(store.ids(filters=role)) if n is not None]
    if not nodes:
        return False
    triples = None
    if extractor != "offline":  # cached triples only: a re-embed sends no LLM request
        triples = TripleExtractor(None, graph_dir / TRIPLES_CACHE).extract(nodes).triples
    vectors = np.stack([np.asarray(n.embedding, dtype=np.float32) for n in nodes])
    graph = build_doc_graph(nodes, vectors, embedder=model, triples=triples, offline_entities=extractor != "llm")
    graph.meta["extractor"] = extractor
    graph.save(staging / DOC_GRAPH_DIR)
    return True
