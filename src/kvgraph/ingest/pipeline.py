"""The ingestion pipeline: files -> documents -> chunks -> embeddings -> store, incrementally.

Each file is one unit of work that commits on its own: its nodes replace the file's previous
nodes in one store commit, then the registry records the file's hash. An interrupted run
loses at most the file in flight, and the next run picks up where it stopped.

Every ingest and sync starts by cross-checking the registry with the store
(:func:`~kvgraph.ingest.registry.cross_check`): files whose chunks went missing from the store
are ingested again, and sync deletes orphaned chunks; each is a warning in the report.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kvgraph.embed.base import Embedder
from kvgraph.embed.cache import text_key
from kvgraph.errors import CorruptionError, InvalidInputError
from kvgraph.ingest.context import embedding_text
from kvgraph.ingest.loaders import (
    DEFAULT_MAX_FILE_BYTES,
    PART_CHARS,
    SkippedFile,
    check_file,
    display_path,
    file_key,
    load_file_batches,
    open_regular,
    path_from_display,
    walk,
)
from kvgraph.ingest.registry import NOT_INGESTED, FileRecord, Registry, cross_check
from kvgraph.schema import Document, Node

log = logging.getLogger(__name__)
# Vectors an ingest holds in memory from stored nodes for texts whose ids changed (a changed file's
# old documents, a sync's vanished files): at most this many bytes of them (256 MB: 174k at 384 dimensions).
LEND_BYTES = 256 << 20


class Splitter(Protocol):
    def split_many(self, docs: Iterable[Document]) -> list[Node]: ...


@dataclass
class IngestReport:
    files_seen: int = 0
    files_ingested: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    documents: int = 0  # pages for PDFs, sections for Markdown, else files
    chunks: int = 0
    tokens: int = 0
    embedded: int = 0  # texts that needed the model (chunks, and node references' sentences)
    seconds: float = 0.0
    skipped: list[SkippedFile] = field(default_factory=list)
    files_restored: int = 0  # ingested again because their chunks were missing from the store
    orphans_removed: int = 0  # chunks of documents the registry did not know, deleted by sync
    warnings: list[str] = field(default_factory=list)  # also logged

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "skipped"}
        d["seconds"] = round(self.seconds, 3)
        d["chunks_per_s"] = round(self.chunks_per_s, 1)
        d["skipped"] = [{"path": s.path, "reason": s.reason} for s in self.skipped]
        return d


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:  # never blocks on a FIFO swapped in after the walk
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Progress(Protocol):
    def start(self, total_files: int) -> None: ...
    def file_done(self, path: str, chunks: int) -> None: ...
    def chunks_embedded(self, n: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, total_files: int) -> None: ...
    def file_done(self, path: str, chunks: int) -> None: ...
    def chunks_embedded(self, n: int) -> None: ...
    def finish(self) -> None: ...


class Ingestor:
    """Runs ingestion for one knowledge base (the caller holds the store's writer lock)."""

    def __init__(
        self,
        store: Any,
        registry: Registry,
        embedder: Embedder,
        splitter: Splitter,
        progress: Progress | None = None,
        embed_batch: int = 64,
        force: bool = False,
        max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
        part_chars: int = PART_CHARS,
    ) -> None:
        """``force`` re-splits files even when unchanged (the chunking settings changed);
        files over ``max_file_bytes`` are skipped (setting ``max_file_mb``); a big file is read,
        embedded and stored in batches of about ``part_chars`` characters."""
        self.force = force
        self.part_chars = part_chars
        self.max_file_bytes = max_file_bytes
        self.store = store
        self.registry = registry
        self.embedder = embedder
        self.splitter = splitter
        self.progress = progress or NoProgress()
        self.embed_batch = embed_batch
        self.embedded = 0  # chunk texts this ingestor ran through the model
        # Stored vectors by the SHA-256 of their embedded text, for chunks whose ids changed: the
        # old documents of the file being ingested (a section or page inserted renumbers the ones
        # after it; a big file's first batch replaces all of them), and the files a sync found gone
        # (a moved or renamed file), read on the first miss. See embed_nodes.
        self._lent: dict[bytes, np.ndarray] = {}
        self._moved: dict[bytes, np.ndarray] = {}
        self._vanished: list[FileRecord] = []
        self._unreadable_warned = False

    # ------------------------------------------------------------------ files

    def ingest_paths(
        self,
        paths: Sequence[str | Path],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        remember_roots: bool = True,
    ) -> IngestReport:
        report = IngestReport()
        t0 = time.perf_counter()
        files = walk(
            list(paths),
            include=include or None,
            exclude=exclude or None,
            skipped=report.skipped,
            max_file_bytes=self.max_file_bytes,
        )
        if remember_roots:
            for p in paths:
                if (root := _root_key(p)) is not None:
                    self.registry.add_root(root, include or [], exclude or [])
        restore = self._reconcile(report, remove_orphans=False)
        walked = {_root_key(f) for f in files} if restore else set()
        self._run([*files, *(path_from_display(k) for k in restore if k not in walked)], report)
        self._count_restored(restore, report)
        report.seconds = time.perf_counter() - t0
        return report

    def restore(self) -> IngestReport:
        """Ingest again only the files whose chunks are missing from the store, and delete orphans (repair)."""
        report = IngestReport()
        t0 = time.perf_counter()
        restore = self._reconcile(report, remove_orphans=True)
        self._run([path_from_display(k) for k in restore], report)
        self._count_restored(restore, report)
        report.seconds = time.perf_counter() - t0
        return report

    def _reconcile(self, report: IngestReport, remove_orphans: bool) -> list[str]:
        """Cross-check the registry with the store; returns the files to ingest again (registry keys).

        Their registry records are marked not ingested first, so a crash does not forget them.
        """
        check = cross_check(self.store, self.registry)
        if check.ok:
            return []
        restore = [k for k in check.missing_files if path_from_display(k).exists()]
        for key in restore:
            self.registry.invalidate(key)
        for doc_id, missing in check.missing_documents.items():  # cannot be restored: keep what is left
            left = self.registry.documents().get(doc_id, 0) - missing
            if left > 0:
                self.registry.put_documents({doc_id: left})
            else:
                self.registry.forget_document(doc_id, 0)
        store_name = str(getattr(self.store, "path", "store"))
        lines = check.problems(str(self.registry.path), store_name)
        if remove_orphans and check.orphans:  # ingest leaves them; sync deletes them
            for doc_id in check.orphans:
                report.orphans_removed += int(self.store.delete_ref_doc(doc_id))
            lines.append(f"{check.orphan_note(store_name)}: deleted {report.orphans_removed}")
        for line in lines:
            report.warnings.append(line)
            log.warning("%s", line)
        return restore

    def _count_restored(self, restore: list[str], report: IngestReport) -> None:
        for key in restore:
            rec = self.registry.get(key)
            report.files_restored += bool(rec and rec.sha256 != NOT_INGESTED)

    def _run(self, files: Iterable[Path], report: IngestReport) -> None:
        files = list(files)
        before = self._model_texts()
        self.progress.start(len(files))
        try:
            for f in files:
                self._ingest_file(f, report)
        finally:
            self.progress.finish()
            report.embedded = self._model_texts() - before

    def _model_texts(self) -> int:
        """Texts run through the model so far: chunks here, sentences in a node-reference splitter."""
        misses = getattr(getattr(self.splitter, "embedder", None), "misses", 0)
        return self.embedded + (misses if isinstance(misses, int) else 0)

    def sync(self, extra_paths: Sequence[str | Path] = ()) -> IngestReport:
        """Re-check every known file and root: ingest new and changed files, drop vanished ones."""
        report = IngestReport()
        t0 = time.perf_counter()
        files: dict[str, Path] = {}
        for root, include, exclude in self.registry.roots():
            if path_from_display(root).exists():
                found = walk(
                    [path_from_display(root)],
                    include=include or None,
                    exclude=exclude or None,
                    skipped=report.skipped,
                    max_file_bytes=self.max_file_bytes,
                )
                for f in found:
                    files.setdefault(file_key(f), f)
        extra = list(extra_paths)
        for f in walk(extra, skipped=report.skipped, max_file_bytes=self.max_file_bytes) if extra else []:
            files.setdefault(file_key(f), f)
        for p in extra_paths:
            if (key := _root_key(p)) is not None:
                self.registry.add_root(key, [], [])
        restore = self._reconcile(report, remove_orphans=True)
        known = self.registry.all()
        vanished = []
        for rec in known:
            if not path_from_display(rec.path).exists():
                vanished.append(rec)
            else:
                files.setdefault(rec.path, path_from_display(rec.path))
        # New and changed files first, while the vanished files' chunks are still stored: a moved
        # file takes their vectors. A crash in between leaves those files listed; the next sync
        # removes them.
        self._vanished = vanished
        try:
            self._run(files.values(), report)
        finally:
            self._vanished, self._moved = [], {}
        for rec in vanished:
            self.remove_file(rec)
            report.files_removed += 1
        self._count_restored(restore, report)
        report.seconds = time.perf_counter() - t0
        return report

    def remove_file(self, rec: FileRecord) -> int:
        return remove_file(self.store, self.registry, rec)

    def _ingest_file(self, path: Path, report: IngestReport) -> None:
        report.files_seen += 1
        name = display_path(path)  # names that are not UTF-8 are shown (and stored) with \xNN escapes
        try:
            st = check_file(path, self.max_file_bytes)  # a regular file within the size limit, or skipped
            key = file_key(path)
        except InvalidInputError as e:
            report.skipped.append(SkippedFile(name, getattr(e, "reason", None) or str(e)))
            self.progress.file_done(name, 0)
            return
        rec = self.registry.get(key)
        if rec and not self.force and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            report.files_unchanged += 1
            self.progress.file_done(name, 0)
            return
        try:
            sha = file_sha256(path)
        except (OSError, InvalidInputError) as e:
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
            report.skipped.append(SkippedFile(name, f"cannot read: {reason}"))
            self.progress.file_done(name, 0)
            return
        if rec and not self.force and rec.sha256 == sha:
            self.registry.touch(key, st.st_size, st.st_mtime_ns)
            report.files_unchanged += 1
            self.progress.file_done(name, 0)
            return
        # A big file arrives in batches (parts of about a million characters), each split,
        # embedded and stored before the next is read, so memory does not grow with the file.
        # Every check that can refuse the file runs before the first batch: a bad file never
        # touches what is stored. The first batch replaces the file's previous documents, so their
        # vectors are read first (a later batch, or a renumbered section, finds its old text there).
        doc_ids: list[str] = []
        n_nodes = tokens = 0
        replace: Sequence[str] = rec.doc_ids if rec else ()
        if rec:
            self._lend(rec.doc_ids, self._lent)
        try:
            for docs in load_file_batches(path, max_file_bytes=self.max_file_bytes, part_chars=self.part_chars):
                nodes = self.add_documents(docs, replace_docs=replace)
                replace = ()
                doc_ids.extend(d.id for d in docs)
                n_nodes += len(nodes)
                tokens += sum(_tokens(n) for n in nodes)
                del nodes
        except InvalidInputError as e:
            if doc_ids:  # the file changed while it was read: drop the half, and retry next time
                for doc_id in doc_ids:
                    self.store.delete_ref_doc(doc_id)
                if rec:
                    self.registry.remove(key)
            report.skipped.append(SkippedFile(name, getattr(e, "reason", None) or str(e)))
            self.progress.file_done(name, 0)
            return
        finally:
            self._lent = {}
        self.registry.put(
            FileRecord(
                path=key,
                sha256=sha,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                doc_ids=doc_ids,
                n_nodes=n_nodes,
                n_tokens=tokens,
                ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        )
        report.files_ingested += 1
        report.documents += len(doc_ids)
        report.chunks += n_nodes
        report.tokens += tokens
        self.progress.file_done(name, n_nodes)

    # ------------------------------------------------------------------ documents

    def add_documents(self, docs: Sequence[Document], replace_docs: Iterable[str] = ()) -> list[Node]:
        """Split, embed and store documents; their previous nodes (and ``replace_docs``') are replaced."""
        nodes = self.splitter.split_many(docs)
        replace = list(dict.fromkeys([*replace_docs, *(d.id for d in docs)]))
        if not list(replace_docs) and self._unchanged(docs, nodes):
            return nodes  # same documents, same chunk ids: nothing to embed or write
        self.embed_nodes(nodes, self.progress.chunks_embedded)
        self.store.add(nodes, replace_docs=replace)
        return nodes

    def add_api_documents(self, docs: Sequence[Document]) -> list[Node]:
        """:meth:`add_documents` for documents given by the caller (not from a file), listed in the registry."""
        nodes = self.add_documents(docs)
        per_doc = Counter(n.ref_doc_id for n in nodes)
        self.registry.put_documents({d.id: per_doc.get(d.id, 0) for d in docs})
        return nodes

    def _unchanged(self, docs: Sequence[Document], nodes: Sequence[Node]) -> bool:
        """True when the store already holds exactly these chunk ids for these documents.

        Chunk ids hash the document id and the chunk text, so equal ids mean equal chunks.
        """
        stored = set(self.store.ids(doc_ids=[d.id for d in docs])) if docs else set()
        return bool(stored) and stored == {n.id for n in nodes}

    def embed_nodes(self, nodes: Sequence[Node], on_batch: Callable[[int], None] | None = None) -> None:
        """Embed the nodes that carry no embedding yet (extractive references come embedded).

        The store is the embedding cache, so no vector is kept twice (issue 17): a node the store
        holds with the same embedded text (same id, same context header) keeps its stored vector,
        and so does one whose embedded text a changed file's old documents, or a file a sync found
        gone, had under another id. The knowledge base's model is checked before any ingest, so a
        stored vector is the model's vector of that text. Stored vectors that cannot be read
        (damage: ``kvgraph check``) are embedded again instead; reuse never fails an ingest.
        """
        nodes = [n for n in nodes if n.embedding is None]
        for i in range(0, len(nodes), self.embed_batch):
            part = nodes[i : i + self.embed_batch]
            texts = [embedding_text(n) for n in part]  # the text, after its context header
            todo = self._reuse(part, texts)
            if todo:
                vecs = self.embedder.embed([texts[j] for j in todo])
                for j, v in zip(todo, vecs):
                    part[j].embedding = v
                self.embedded += len(todo)
            if on_batch:
                on_batch(len(part))

    def _reuse(self, part: Sequence[Node], texts: Sequence[str]) -> list[int]:
        """Give ``part`` the vectors already computed for their texts; returns the positions left to embed."""
        dim = self.embedder.dim
        try:
            stored: Sequence[Node | None] = self.store.get([n.id for n in part])
        except CorruptionError as e:
            self._cannot_reuse(e)
            stored = [None] * len(part)
        todo = []
        for j, (node, old, text) in enumerate(zip(part, stored, texts)):
            vec = old.embedding if old is not None and embedding_text(old) == text else None
            if vec is None and (self._lent or self._vanished or self._moved):
                if self._vanished:  # a sync's first miss: read the vanished files now
                    vanished, self._vanished = self._vanished, []
                    self._lend([d for rec in vanished for d in rec.doc_ids], self._moved)
                key = text_key(text)
                vec = self._lent.get(key)
                if vec is None:
                    vec = self._moved.get(key)
            if vec is not None and len(vec) == dim:
                node.embedding = np.asarray(vec, dtype=np.float32)
            else:
                todo.append(j)
        return todo

    def _lend(self, doc_ids: Sequence[str], into: dict[bytes, np.ndarray]) -> None:
        """Read the stored vectors of ``doc_ids``' nodes into ``into`` by embedded text, up to LEND_BYTES in all."""
        limit = LEND_BYTES // max(4 * self.embedder.dim, 1)
        try:
            for doc_id in doc_ids:
                for node in self.store.get_ref_doc(doc_id, with_embedding=True):
                    if len(self._lent) + len(self._moved) >= limit:
                        return
                    if node.embedding is not None:
                        into[text_key(embedding_text(node))] = np.asarray(node.embedding, dtype=np.float32)
        except CorruptionError as e:
            self._cannot_reuse(e)

    def _cannot_reuse(self, e: CorruptionError) -> None:
        if not self._unreadable_warned:
            self._unreadable_warned = True
            log.warning("stored vectors not reused (%s); embedding those chunks again", e)


def remove_file(store: Any, registry: Registry, rec: FileRecord) -> int:
    """Delete every node of every document a file produced, then forget the file."""
    removed = sum(store.delete_ref_doc(doc_id) for doc_id in rec.doc_ids)
    registry.remove(rec.path)
    return int(removed)


def _root_key(path: str | Path) -> str | None:
    """A root's registry key (resolved, display text), or None for a symlink loop (the walk reported it)."""
    try:
        return file_key(Path(path))
    except InvalidInputError:
        return None


def _tokens(n: Node) -> int:
    """Tokens of the document text a node covers; reference nodes restate their parent's text."""
    if n.metadata.get("role") in ("child", "summary", "question"):
        return 0
    v = n.metadata.get("n_tokens")
    return v if isinstance(v, int) else 0
