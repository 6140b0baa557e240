"""Nothing lost silently: checking a whole knowledge base, and repairing what can be rebuilt.

:func:`check_kb` (``kvgraph check``, ``KnowledgeBase.check()``) reads every part through its own
read-only handle and reports, part by part, what is damaged:

* ``store/`` and ``graph-index/``: every checksum (vectors, node records, caches) and SQLite's
  structural check (:meth:`~kvgraph.store.integrity.IntegrityStore.scan`);
* ``documents.sqlite``: opens and passes SQLite's check;
* the registry against the store, document by document (:func:`~kvgraph.ingest.registry.cross_check`):
  chunks of ingested files that are missing, orphaned chunks;
* ``embed-cache.sqlite``: every cached vector against its checksum;
* ``doc-graph/``: loads (both files of one save, shapes consistent);
* ``graph/`` (Ladybug): opens and answers a query;
* the JSON Lines caches: lines that no longer parse (notes only: those entries are asked again).

:func:`repair_kb` (``kvgraph repair``, ``KnowledgeBase.repair()``) rebuilds everything derived and
re-ingests what is missing: a damaged registry is moved aside and rebuilt from the store; a
store whose records cannot be read is moved aside and started anew; damaged documents are
deleted; every cache and index is rebuilt; files whose chunks are missing are ingested again,
orphans deleted; damaged cached embeddings dropped; the document graph and the graph node
index rebuilt when they exist. Damaged files are kept beside the originals as
``<name>.damaged-<time>``, never deleted. The Cypher graph (``graph/``) is user data that cannot
be derived from anything else: repair reports it for a restore from a backup.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.config import load_settings
from kvgraph.errors import CorruptionError, InvalidInputError, KvgraphError
from kvgraph.ingest.pipeline import Ingestor, IngestReport
from kvgraph.ingest.registry import DocumentStore, Registry, adopt_store_documents, cross_check
from kvgraph.kb.backends import describe, is_remote_store, open_store
from kvgraph.kb.layout import CACHE_FILE, DOC_GRAPH_DIR, REFERENCES_CACHE_FILE, REGISTRY_FILE, STORE_DIR, TRIPLES_CACHE
from kvgraph.store import EmbeddedVectorStore

log = logging.getLogger(__name__)

GRAPH_INDEX_DIR = "graph-index"
GRAPH_DIR = "graph"


@dataclass
class PartCheck:
    """One part of a knowledge base, checked: ``problems`` make ``kvgraph check`` fail, ``notes`` do not."""

    part: str
    path: str
    present: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class KBCheck:
    """Every part of a knowledge base, checked."""

    path: str
    parts: list[PartCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts)

    def problems(self) -> list[str]:
        return [line for p in self.parts for line in p.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "parts": [
                {
                    "part": p.part,
                    "path": p.path,
                    "present": p.present,
                    "ok": p.ok,
                    "problems": p.problems,
                    "notes": p.notes,
                    **p.details,
                }
                for p in self.parts
            ],
        }


class _NoStore:
    """The cross-check's view of a store that is not there: no chunks."""

    def count(self) -> int:
        return 0

    def doc_counts(self) -> dict[str, int]:
        return {}

    def documents(self) -> dict[str, tuple[int, str | None]]:
        return {}


# ----------------------------------------------------------------------------- on open


def reconcile_on_open(store: DocumentStore, registry: Registry, read_only: bool) -> None:
    """The cheap cross-check every open runs: per-document counts, and only when the totals differ.

    A writable open first makes a new registry (the old one was lost) or one from an older
    version know every document in the store, so that nothing is mistaken for an orphan.
    A reader logs missing chunks as warnings; a writer only at debug level, since the ingest or
    sync it runs repairs them and warns in its report (``kvgraph check`` always names them).
    """
    if not read_only and (registry.created or registry.upgraded) and store.count():
        adopted = adopt_store_documents(store, registry)
        if adopted["files"]:
            log.warning(
                "%s was missing: rebuilt from the store (%d files, ingested again by the next sync)",
                registry.path,
                adopted["files"],
            )
    check = cross_check(store, registry)
    # a reader warns; a writer's ingest or sync repairs it and warns in its report (debug here: said once)
    say = log.debug if not read_only else log.warning
    for line in check.problems(str(registry.path), str(getattr(store, "path", "the store"))):
        say("%s", line)


# ----------------------------------------------------------------------------- check


def check_kb(path: str | os.PathLike[str]) -> KBCheck:
    """Check every part of the knowledge base at ``path`` (read-only; see the module docstring)."""
    kb = Path(path)
    if not kb.is_dir():
        raise InvalidInputError(f"no knowledge base at {kb}")
    result = KBCheck(str(kb))
    settings = load_settings(kb)
    store: Any
    if is_remote_store(settings):  # vectors on a server: its own checks apply; still compared with the registry
        store_part = PartCheck("store", describe(settings, kb)["store"])
        store_part.notes.append("the vectors are on a server: its checksums are not checked here")
        try:
            store = open_store(kb, settings, read_only=True)
        except KvgraphError as e:
            store_part.problems.append(str(e))
            store = None
    else:
        store_part, store = _check_store(kb / STORE_DIR, "store")
    result.parts.append(store_part)
    try:
        registry_part, registry = _check_registry(kb / REGISTRY_FILE)
        result.parts.append(registry_part)
        if registry is not None and (store is not None or not store_part.present):
            result.parts.append(_check_agreement(store, registry, kb))
        if registry is not None:
            registry.close()
    finally:
        if store is not None:
            store.close()
    result.parts.append(_check_embed_cache(kb / CACHE_FILE))
    result.parts.append(_check_doc_graph(kb / DOC_GRAPH_DIR))
    result.parts.append(_check_graph(kb))
    index_part, index = _check_store(kb / GRAPH_INDEX_DIR, "graph index")
    if index is not None:
        index.close()
    result.parts.append(index_part)
    for name, file in (
        ("references cache", kb / REFERENCES_CACHE_FILE),
        ("triples cache", kb / DOC_GRAPH_DIR / TRIPLES_CACHE),
    ):
        result.parts.append(_check_jsonl(name, file))
    return result


def _check_store(path: Path, part: str) -> tuple[PartCheck, EmbeddedVectorStore | None]:
    out = PartCheck(part, str(path))
    if not path.exists():
        out.present = False
        return out, None
    try:
        store = EmbeddedVectorStore.open(path, read_only=True)
    except KvgraphError as e:
        out.problems.append(str(e))
        return out, None
    try:
        damage = store.scan()
    except KvgraphError as e:
        out.problems.append(str(e))
        return out, store
    out.problems += damage.problems()
    out.details = {
        "chunks": store.count(),
        "vector_rows": damage.vector_rows,
        "damaged_documents": sorted(damage.documents),
    }
    if damage.unchecked:
        out.notes.append(f"{damage.unchecked} node record(s) written before checksums existed: not checked")
    return out, store


def _check_registry(path: Path) -> tuple[PartCheck, Registry | None]:
    out = PartCheck("registry", str(path))
    if not path.exists():
        out.present = False
        return out, Registry(path, read_only=True)  # an empty view: nothing registered
    try:
        registry = Registry(path, read_only=True)
    except KvgraphError as e:
        out.problems.append(str(e))
        return out, None
    try:
        out.problems += [f"{path}: {p}" for p in registry.quick_check()]
        out.details = {"files": len(registry.all()), "roots": len(registry.roots()), "api": len(registry.documents())}
    except KvgraphError as e:
        registry.close()
        out.problems.append(str(e))
        return out, None
    return out, registry


def _check_agreement(store: DocumentStore | None, registry: Registry, kb: Path) -> PartCheck:
    out = PartCheck("registry and store", str(kb))
    check = cross_check(store if store is not None else _NoStore(), registry, full=True)
    if registry.created and check.stored:
        out.problems.append(
            f"{registry.path}: missing or empty while the store holds {check.stored} chunk(s); "
            "run kvgraph repair (or any writable command) to rebuild it from the store"
        )
        return out
    out.problems += check.problems(str(registry.path), str(kb / STORE_DIR))
    note = check.orphan_note(str(kb / STORE_DIR))
    if note:
        out.notes.append(note)
    out.details = check.to_dict()
    return out


def _check_embed_cache(path: Path) -> PartCheck:
    from kvgraph.embed.cache import EmbeddingCache

    out = PartCheck("embedding cache", str(path))
    if not path.exists():
        out.present = False
        return out
    cache = EmbeddingCache(path, read_only=True)
    try:
        found = cache.check()
    except CorruptionError as e:
        out.problems.append(str(e))
        return out
    finally:
        cache.close()
    out.details = {"rows": found["rows"]}
    if found["damaged"]:
        out.problems.append(
            f"{path}: {found['damaged']} cached embedding(s) fail their checksum (never reused: they are "
            "computed again); kvgraph repair drops them"
        )
    out.problems += [f"{path}: {p}" for p in found["sqlite"]]
    if found["unchecked"]:
        out.notes.append(f"{found['unchecked']} cached embedding(s) from an older version: never reused")
    return out


def _check_doc_graph(directory: Path) -> PartCheck:
    from kvgraph.docgraph.build import JSON_FILE, NPZ_FILE, DocGraph

    out = PartCheck("document graph", str(directory))
    if not (directory / NPZ_FILE).exists() and not (directory / JSON_FILE).exists():
        out.present = False
        return out
    try:
        graph = DocGraph.load(directory)
        out.details = {"nodes": graph.n_nodes, "edges": len(graph.src)}
    except KvgraphError as e:
        out.problems.append(str(e))
        return out
    saved = graph.adjacency_file
    if saved is not None:  # derived data: a damaged file is not used (the walk builds its own)
        try:
            saved.map()
        except (OSError, ValueError) as e:
            again = " and saves it again" if graph.adjacency_worth_saving() else ""
            out.notes.append(f"saved adjacency not used ({e}); the next graph query builds it from the edges{again}")
    return out


def _check_graph(kb: Path) -> PartCheck:
    out = PartCheck("graph", str(kb / GRAPH_DIR))
    if os.environ.get("KVGRAPH_NEO4J_URI"):
        out.present = False
        out.notes.append("the graph is on a Neo4j server (KVGRAPH_NEO4J_URI): not checked here")
        return out
    if not (kb / GRAPH_DIR).exists():
        out.present = False
        return out
    from kvgraph.graphdb.open import open_graph_store

    try:
        graph = open_graph_store(kb, read_only=True)
        try:
            schema = graph.schema()
            out.details = {"labels": len(getattr(schema, "node_labels", []) or [])}
        finally:
            graph.close()
    except Exception as e:  # a damaged embedded database fails in its own ways: report, do not crash
        out.problems.append(
            f"{kb / GRAPH_DIR}: the graph database does not open ({type(e).__name__}: {e}); "
            "restore it from a backup or import the graph again"
        )
    return out


def _check_jsonl(part: str, path: Path) -> PartCheck:
    out = PartCheck(part, str(path))
    if not path.exists():
        out.present = False
        return out
    bad = lines = 0
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    out.details = {"lines": lines}
    if bad:
        out.notes.append(
            f"{bad} line(s) do not parse (cut short by a crash, or damaged): those results are asked again"
        )
    return out


# ----------------------------------------------------------------------------- repair


@dataclass
class RepairReport:
    """What :func:`repair_kb` did, and what it could not fix."""

    path: str
    actions: list[str] = field(default_factory=list)
    ingest: dict[str, Any] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)  # problems a check still finds afterwards

    @property
    def ok(self) -> bool:
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "actions": self.actions,
            "ingest": self.ingest,
            "remaining": self.remaining,
        }


def set_aside(path: Path) -> Path:
    """Rename a damaged file or folder to ``<name>.damaged-<time>`` (with its SQLite side files); the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.rename(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.rename(side, target.with_name(target.name + suffix))
    return target


def repair_store(store: EmbeddedVectorStore, actions: list[str]) -> bool:
    """Repair an open, writable store in place; False when it must be set aside instead (SQLite damage).

    Damaged documents are deleted (their files are ingested again afterwards), damaged rows purged
    from the vector file, and every cache and index rebuilt.
    """
    damage = store.scan()
    if damage.sqlite or damage.vector_file:
        actions.append(f"{store.path}: {damage.sqlite[0] if damage.sqlite else damage.vector_file}")
        return False
    if damage.damaged_nodes:
        removed = sum(store.delete_ref_doc(d) for d in damage.documents)
        loose = [i for i, d in damage.damaged_nodes.items() if d is None]
        removed += store.delete(loose) if loose else 0
        docs = sorted(damage.documents)
        actions.append(
            f"{store.path}: deleted {removed} node(s) of {len(docs)} damaged document(s) "
            f"({', '.join(docs[:3])}{' ...' if len(docs) > 3 else ''})"
        )
    if damage.vector_segments or damage.damaged_nodes:
        store.vacuum()  # the damaged rows are dead now: a new vector file without them
        actions.append(f"{store.path}: vector file rewritten without the damaged rows")
    rebuilt = store.rebuild_caches()
    actions.append(f"{store.path}: caches and indexes rebuilt ({', '.join(rebuilt) or 'none needed'})")
    return True


def registry_damaged(path: Path) -> bool:
    """True when the registry file exists and fails to open or SQLite's check."""
    if not path.exists():
        return False
    try:
        registry = Registry(path, read_only=True)
    except CorruptionError:
        return True
    try:
        registry.all()  # every record decodes
        registry.roots()
        return bool(registry.quick_check())
    except CorruptionError:
        return True
    finally:
        registry.close()


def salvage_roots(old: Path) -> list[tuple[str, list[str], list[str]]]:
    """The root folders a damaged registry still lists, if that table can be read at all."""
    try:
        db = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT path, include, exclude FROM roots").fetchall()
        finally:
            db.close()
        return [(str(p), json.loads(i), json.loads(e)) for p, i, e in rows]
    except (sqlite3.DatabaseError, ValueError, TypeError):
        return []


def repair_embed_cache(path: Path, actions: list[str]) -> None:
    """Drop damaged cached embeddings; set aside a cache file that cannot be read."""
    from kvgraph.embed.cache import EmbeddingCache

    if not path.exists():
        return
    cache = EmbeddingCache(path)
    try:
        found = cache.check(drop_damaged=True)
        if found["dropped"]:
            actions.append(f"{path}: dropped {found['dropped']} damaged or unchecked cached embedding(s)")
        if not found["sqlite"]:
            return
        why = found["sqlite"][0]
    except CorruptionError as e:
        why = str(e)
    finally:
        cache.close()
    aside = set_aside(path)
    actions.append(f"{path}: unreadable ({why}); set aside as {aside.name}, embeddings are cached anew")


def repair_kb(kb: Any, ingestor: Callable[[], Ingestor]) -> RepairReport:
    """Repair the knowledge base ``kb`` (an open, writable ``KnowledgeBase``); see the module docstring.

    ``ingestor`` builds the ingestor that ingests missing files again.
    """
    path: Path = kb.path
    report = RepairReport(str(path))
    actions = report.actions
    store_dir, registry_file = path / STORE_DIR, path / REGISTRY_FILE
    # 1. The store: repaired in place, or set aside when it cannot be read (a new one is opened below).
    store_error = kb.open_errors.get("store")
    if store_error is not None:
        actions.append(f"{store_dir}: cannot be read ({store_error})")
    embedded = isinstance(kb.store, EmbeddedVectorStore) if store_error is None else True
    if not embedded:
        actions.append("the vectors are on a server: repair covers the files in the knowledge base folder")
    elif store_error is not None or (store_dir.exists() and not repair_store(kb.store, actions)):
        actions.append(f"{store_dir}: set aside as {set_aside(store_dir).name}; a new store is built")
    # 2. The registry: set aside when damaged; the next open rebuilds it from the store.
    rebuilt = kb.open_errors.get("registry") is not None or registry_damaged(registry_file)
    roots: list[tuple[str, list[str], list[str]]] = []
    if rebuilt:
        aside = set_aside(registry_file)
        roots = salvage_roots(aside)
        actions.append(
            f"{registry_file}: damaged; set aside as {aside.name}, rebuilt from the store "
            f"({len(roots)} root folder(s) salvaged)"
        )
    repair_embed_cache(path / CACHE_FILE, actions)
    kb.refresh()  # opens what was set aside anew; a new registry learns the store's documents
    for root, include, exclude in roots:
        kb.registry.add_root(root, include, exclude)
    # 3. Ingest again what is missing and delete orphans; after a rebuilt registry, check every file (sync).
    restored: IngestReport = ingestor().sync() if rebuilt else ingestor().restore()
    report.ingest = restored.to_dict()
    actions += restored.warnings  # what was missing, and which API documents must be added again
    if restored.files_restored or restored.files_ingested or restored.orphans_removed:
        actions.append(
            f"ingested {max(restored.files_restored, restored.files_ingested)} file(s) again "
            f"({restored.chunks} chunks); deleted {restored.orphans_removed} orphaned chunk(s)"
        )
    # 4. What is derived from the store and the graph.
    _repair_graph_index(kb, path / GRAPH_INDEX_DIR, actions)
    _repair_doc_graph(kb, path / DOC_GRAPH_DIR, actions)
    report.remaining = check_kb(path).problems()
    return report


def _repair_doc_graph(host: Any, directory: Path, actions: list[str]) -> None:
    from kvgraph.docgraph.build import JSON_FILE, NPZ_FILE

    if not (directory / NPZ_FILE).exists() and not (directory / JSON_FILE).exists():
        return
    if not (directory / NPZ_FILE).exists():  # only the JSON of a first save that never finished
        (directory / JSON_FILE).unlink()
        actions.append(f"{directory}: removed {JSON_FILE} of an unfinished first build")
        return
    try:
        host.graph.refresh()
        actions.append(f"{directory}: document graph rebuilt from the store")
    except KvgraphError as e:
        aside = set_aside(directory / NPZ_FILE)
        (directory / JSON_FILE).unlink(missing_ok=True)
        actions.append(f"{directory}: could not rebuild the document graph ({e}); old arrays set aside as {aside.name}")


def _repair_graph_index(host: Any, path: Path, actions: list[str]) -> None:
    """Rebuild a damaged graph node index from the graph, with the labels and properties it recorded."""
    part, index = _check_store(path, "graph index")
    manifest: dict[str, Any] = {}
    if index is not None:
        try:
            manifest = json.loads(index.get_meta("node_index") or "{}")
        except (KvgraphError, ValueError):
            manifest = {}
        index.close()
    if not part.present or part.ok:
        return
    aside = set_aside(path)
    host.refresh()  # closes the old index (now set aside); index_nodes opens a new one
    if not manifest:
        actions.append(
            f"{path}: damaged; set aside as {aside.name}. Its labels could not be read: "
            "index them again (kvgraph graph index LABEL PROPERTY ...)"
        )
        return
    for label, spec in manifest.items():
        host.graph.index_nodes(label, spec.get("text_properties") or [], key=spec.get("key"))
    actions.append(f"{path}: damaged; set aside as {aside.name} and indexed again ({', '.join(manifest)})")
