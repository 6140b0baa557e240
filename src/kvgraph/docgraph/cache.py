"""One loaded document graph per directory and process, read again only when a save replaced it.

Graph-mode queries need the graph and what the retriever derives from it (the sparse adjacency,
mention counts, the chunks titled with each entity; :meth:`DocGraph.derived`). Loading and
deriving cost far more than a walk (~0.2 s at 10k chunks), so :func:`shared_graph` keeps the
graph object of each directory for the life of the process and every knowledge-base handle and
retriever in it uses the same one.

Staleness: each call compares the identity of ``graph.npz`` and ``graph.json`` (inode,
size, modification time) with what they were when the graph was read; a save replaces both
files by rename (:meth:`DocGraph.save`), so any save by this or another process shows up as a
change and the graph is read again. A graph read again whose ``build`` id is the one held keeps
the held object (and its derived structures).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from kvgraph.docgraph.build import JSON_FILE, NPZ_FILE, DocGraph

Signature = tuple[tuple[int, int, int], ...]

_lock = threading.Lock()
_graphs: dict[Path, tuple[Signature, DocGraph]] = {}


def signature(directory: Path) -> Signature | None:
    """The identity of the saved graph's two files, None when either is missing."""
    out = []
    for name in (NPZ_FILE, JSON_FILE):
        try:
            st = os.stat(directory / name)
        except FileNotFoundError:
            return None
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def shared_graph(directory: str | os.PathLike[str]) -> DocGraph:
    """The saved graph in ``directory``, loaded once per process and save (see the module docstring).

    Raises InvalidInputError like :meth:`DocGraph.load` when there is none or it is damaged.
    """
    d = Path(directory).resolve()
    before = signature(d)
    with _lock:
        held = _graphs.get(d)
    if held is not None and before is not None and held[0] == before:
        return held[1]
    graph = DocGraph.load(d)
    if held is not None and graph.build is not None and graph.build == held[1].build:
        graph = held[1]  # the same save, touched (e.g. copied back): keep what was derived from it
    after = signature(d)
    if after is not None and after == before:  # else a save raced the read: the next call reads again
        with _lock:
            _graphs[d] = (after, graph)
    return graph


def remember(directory: str | os.PathLike[str], graph: DocGraph) -> None:
    """Hold ``graph``, just saved into ``directory``, as its shared graph (no read back)."""
    d = Path(directory).resolve()
    sig = signature(d)
    with _lock:
        if sig is None:
            _graphs.pop(d, None)
        else:
            _graphs[d] = (sig, graph)


def forget(directory: str | os.PathLike[str] | None = None) -> None:
    """Drop the held graph of ``directory`` (every directory's with None)."""
    with _lock:
        if directory is None:
            _graphs.clear()
        else:
            _graphs.pop(Path(directory).resolve(), None)
