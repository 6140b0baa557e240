"""Every backend behind one fixture: the contract tests run once per backend.

``vector_backend`` opens stores of one backend (the embedded store in a tmp dir; Postgres +
pgvector in a fresh schema of a real server, dropped after the test); ``graph_backend`` opens
graph stores (Ladybug in a tmp dir; a real Bolt server, ArcadeDB by default, emptied first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.servers import VectorBackend, bolt_uri

VECTOR_BACKENDS = ["embedded", "postgres"]
GRAPH_BACKENDS = ["ladybug", "bolt"]


@pytest.fixture(params=VECTOR_BACKENDS)
def vector_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorBackend]:
    backend = VectorBackend(request.param, tmp_path)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(params=GRAPH_BACKENDS)
def graph_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``open(read_only=False)`` → a graph store of this backend; a Bolt server is emptied first."""
    opened: list[Any] = []

    def open_graph(read_only: bool = False) -> Any:
        if request.param == "ladybug":
            from kvgraph.graphdb.ladybug import LadybugGraphStore

            store = LadybugGraphStore.open(tmp_path / "graph", read_only=read_only)
        else:
            from kvgraph.graphdb.open import open_bolt_store

            store = open_bolt_store(bolt_uri(), read_only=read_only)
        opened.append(store)
        return store

    if request.param == "bolt":
        from kvgraph.graphdb.open import open_bolt_store

        with open_bolt_store(bolt_uri(), read_only=False) as s:
            s.query("MATCH (n) DETACH DELETE n", read_only=False)
    open_graph.backend = request.param  # type: ignore[attr-defined]
    try:
        yield open_graph
    finally:
        for store in opened:
            store.close()
