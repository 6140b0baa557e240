"""Checking a store against its own checksums, without stopping at the first problem.

Every committed byte that matters has a checksum in the records database: vector rows per
segment (``segments``), each node's text, metadata, document id and relationships (``nodes.crc``),
and every derived cache file (its own header). :meth:`IntegrityStore.scan` checks them all and
says what is damaged, row by row and document by document, so that a knowledge base can delete
exactly those documents and ingest their files again (``kvgraph repair``);
:meth:`IntegrityStore.verify` raises on the first problem (``kvgraph store check``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvgraph.errors import CorruptionError
from kvgraph.fileio import read_arrays
from kvgraph.store.records import row_intact
from kvgraph.store.search import SearchStore


@dataclass
class StoreDamage:
    """What :meth:`IntegrityStore.scan` found; ``ok`` when nothing."""

    path: str
    vector_rows: int = 0
    records: int = 0  # live node rows checked
    unchecked: int = 0  # rows written before checksums existed (nothing to check them against)
    vector_file: str | None = None  # the vector file is unreadable or too short
    vector_segments: list[tuple[int, int]] = field(default_factory=list)  # (first row, rows) that fail
    damaged_nodes: dict[str, str | None] = field(default_factory=dict)  # node id -> its document id
    sqlite: list[str] = field(default_factory=list)  # SQLite's own quick_check findings
    caches: dict[str, str] = field(default_factory=dict)  # cache file -> what is wrong with it

    @property
    def ok(self) -> bool:
        return not (self.vector_file or self.vector_segments or self.damaged_nodes or self.sqlite or self.caches)

    @property
    def documents(self) -> set[str]:
        """Ids of the documents that lost a node's text, metadata or vector."""
        return {d for d in self.damaged_nodes.values() if d is not None}

    def problems(self) -> list[str]:
        """One line per problem, naming the file and the rows or nodes."""
        out = []
        if self.vector_file:
            out.append(self.vector_file)
        for start, count in self.vector_segments:
            out.append(f"{self.path}: vector rows {start}..{start + count - 1} no longer match their checksum")
        if self.damaged_nodes:
            ids = sorted(self.damaged_nodes)
            shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            out.append(f"{self.path}/records.sqlite: {len(ids)} node(s) damaged (text, metadata or vector): {shown}")
        out += [f"{self.path}/records.sqlite: {p}" for p in self.sqlite[:5]]
        out += [f"{self.path}/cache/{name}: {why}" for name, why in sorted(self.caches.items())]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "vector_rows": self.vector_rows,
            "records": self.records,
            "unchecked_records": self.unchecked,
            "problems": self.problems(),
            "damaged_documents": sorted(self.documents),
        }


class IntegrityStore(SearchStore):
    """``scan()`` and ``verify()``: every checksum of the store, checked."""

    def verify(self) -> dict[str, Any]:
        """Check every checksum (vector file, node records, caches); raise CorruptionError naming a damaged file."""
        return self._read(self._verify)

    def scan(self) -> StoreDamage:
        """Check every checksum and report all that is damaged instead of raising at the first problem."""
        return self._read(self._scan)

    def _verify(self) -> dict[str, Any]:
        self._vf.verify(self._segments)  # raises at the first damaged segment, naming its rows
        self._verified = self._n
        damage = self._scan(vectors=False)
        if not damage.ok:
            where, _, what = damage.problems()[0].partition(": ")
            raise CorruptionError(where, f"{what}; run kvgraph repair (a knowledge base) or restore it from a backup")
        return {
            "vector_rows": self._n,
            "segments": len(self._segments),
            "records": damage.records,
            "unchecked_records": damage.unchecked,
            "caches": self._cache_names(),
        }

    def _scan(self, vectors: bool = True) -> StoreDamage:
        damage = StoreDamage(str(self.path), vector_rows=self._n)
        try:
            damage.vector_segments = self._vf.damaged(self._segments) if vectors else []
        except CorruptionError as e:
            damage.vector_file = str(e)
        damage.sqlite = self._records.quick_check()
        rows = self._records.all_rows()
        for row in rows:
            damage.records += 1
            if row[7] is None:
                damage.unchecked += 1
            elif not row_intact(row):
                damage.damaged_nodes[row[1]] = row[4]
        # the nodes whose vectors were in a damaged segment lost them too
        for start, count in damage.vector_segments:
            live = np.flatnonzero(self._live.view[start : start + count]) + start
            for row in self._records.rows_by_slots(live.tolist()).values():
                damage.damaged_nodes.setdefault(row[1], row[4])
        for name in self._cache_names():
            try:
                read_arrays(self.path / "cache" / name)
            except CorruptionError as e:
                damage.caches[name] = str(e).rpartition(": ")[2]
        return damage

    def _cache_names(self) -> list[str]:
        cache = self.path / "cache"
        return sorted(p.name for p in cache.glob("*.kvg")) if cache.exists() else []

    def documents(self) -> dict[str, tuple[int, str | None]]:
        """Each document id in the store: its live node count and the file it came from (``file_path``), if any."""

        def read() -> dict[str, tuple[int, str | None]]:
            out: dict[str, tuple[int, str | None]] = {}
            for doc_id, count, metadata in self._records.doc_sources():
                try:
                    path = json.loads(metadata).get("file_path")
                except (ValueError, AttributeError):
                    path = None  # damaged metadata: the checksum check names the node
                out[doc_id] = (count, path if isinstance(path, str) else None)
            return out

        return self._read(read)

    def doc_counts(self) -> dict[str, int]:
        """Live nodes per document id (one indexed read, no scan of the text)."""
        return self._read(self._records.doc_counts)
