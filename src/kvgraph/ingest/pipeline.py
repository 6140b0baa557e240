"""The ingestion pipeline: files -> documents -> chunks -> embeddings -> store, incrementally.

Each file is one unit of work that commits on its own: its nodes replace the file's previous
nodes in one store commit, then the registry records the file's hash. An interrupted run
loses at most the file in flight, and the next run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kvgraph.embed.base import Embedder
from kvgraph.errors import InvalidInputError
from kvgraph.ingest.loaders import SkippedFile, load_file, walk
from kvgraph.ingest.registry import FileRecord, Registry
from kvgraph.schema import Document, Node


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
    embedded: int = 0  # chunks that needed the model (the rest came from the embedding cache)
    seconds: float = 0.0
    skipped: list[SkippedFile] = field(default_factory=list)

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
    with open(path, "rb") as f:
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
    ) -> None:
        """``force`` re-splits files even when unchanged (the chunking settings changed)."""
        self.force = force
        self.store = store
        self.registry = registry
        self.embedder = embedder
        self.splitter = splitter
        self.progress = progress or NoProgress()
        self.embed_batch = embed_batch

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
        files = walk(list(paths), include=include or None, exclude=exclude or None)
        if remember_roots:
            for p in paths:
                self.registry.add_root(str(Path(p).resolve()), include or [], exclude or [])
        self._run(files, report)
        report.seconds = time.perf_counter() - t0
        return report

    def _run(self, files: Iterable[Path], report: IngestReport) -> None:
        files = list(files)
        misses = getattr(self.embedder, "misses", None)
        self.progress.start(len(files))
        try:
            for f in files:
                self._ingest_file(f, report)
        finally:
            self.progress.finish()
            after = getattr(self.embedder, "misses", None)
            report.embedded = after - misses if misses is not None and after is not None else report.chunks

    def sync(self, extra_paths: Sequence[str | Path] = ()) -> IngestReport:
        """Re-check every known file and root: ingest new and changed files, drop vanished ones."""
        report = IngestReport()
        t0 = time.perf_counter()
        files: dict[str, Path] = {}
        for root, include, exclude in self.registry.roots():
            if Path(root).exists():
                for f in walk([root], include=include or None, exclude=exclude or None):
                    files.setdefault(str(f.resolve()), f)
        for f in walk(list(extra_paths)) if extra_paths else []:
            files.setdefault(str(f.resolve()), f)
        for p in extra_paths:
            self.registry.add_root(str(Path(p).resolve()), [], [])
        known = self.registry.all()
        for rec in known:
            if not Path(rec.path).exists():
                self.remove_file(rec)
                report.files_removed += 1
            else:
                files.setdefault(rec.path, Path(rec.path))
        self._run(files.values(), report)
        report.seconds = time.perf_counter() - t0
        return report

    def remove_file(self, rec: FileRecord) -> int:
        return remove_file(self.store, self.registry, rec)

    def _ingest_file(self, path: Path, report: IngestReport) -> None:
        report.files_seen += 1
        key = str(path.resolve())
        try:
            st = path.stat()
        except OSError as e:
            report.skipped.append(SkippedFile(str(path), f"cannot stat: {e.strerror or e}"))
            self.progress.file_done(str(path), 0)
            return
        rec = self.registry.get(key)
        if rec and not self.force and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            report.files_unchanged += 1
            self.progress.file_done(str(path), 0)
            return
        try:
            sha = file_sha256(path)
        except OSError as e:
            report.skipped.append(SkippedFile(str(path), f"cannot read: {e.strerror or e}"))
            self.progress.file_done(str(path), 0)
            return
        if rec and not self.force and rec.sha256 == sha:
            self.registry.touch(key, st.st_size, st.st_mtime_ns)
            report.files_unchanged += 1
            self.progress.file_done(str(path), 0)
            return
        try:
            docs = load_file(path)
        except InvalidInputError as e:
            reason = getattr(e, "reason", None) or str(e)
            report.skipped.append(SkippedFile(str(path), reason))
            self.progress.file_done(str(path), 0)
            return
        nodes = self.add_documents(docs, replace_docs=rec.doc_ids if rec else ())
        tokens = sum(_tokens(n) for n in nodes)
        self.registry.put(
            FileRecord(
                path=key,
                sha256=sha,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                doc_ids=[d.id for d in docs],
                n_nodes=len(nodes),
                n_tokens=tokens,
                ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        )
        report.files_ingested += 1
        report.documents += len(docs)
        report.chunks += len(nodes)
        report.tokens += tokens
        self.progress.file_done(str(path), len(nodes))

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

    def _unchanged(self, docs: Sequence[Document], nodes: Sequence[Node]) -> bool:
        """True when the store already holds exactly these chunk ids for these documents.

        Chunk ids hash the document id and the chunk text, so equal ids mean equal chunks.
        """
        stored = set(self.store.ids(doc_ids=[d.id for d in docs])) if docs else set()
        return bool(stored) and stored == {n.id for n in nodes}

    def embed_nodes(self, nodes: Sequence[Node], on_batch: Callable[[int], None] | None = None) -> None:
        """Embed the nodes that carry no embedding yet (extractive references come embedded)."""
        nodes = [n for n in nodes if n.embedding is None]
        for i in range(0, len(nodes), self.embed_batch):
            part = nodes[i : i + self.embed_batch]
            vecs = self.embedder.embed([n.text for n in part])
            for n, v in zip(part, vecs):
                n.embedding = v
            if on_batch:
                on_batch(len(part))


def remove_file(store: Any, registry: Registry, rec: FileRecord) -> int:
    """Delete every node of every document a file produced, then forget the file."""
    removed = sum(store.delete_ref_doc(doc_id) for doc_id in rec.doc_ids)
    registry.remove(rec.path)
    return int(removed)


def _tokens(n: Node) -> int:
    """Tokens of the document text a node covers; reference nodes restate their parent's text."""
    if n.metadata.get("role") in ("child", "summary", "question"):
        return 0
    v = n.metadata.get("n_tokens")
    return v if isinstance(v, int) else 0
