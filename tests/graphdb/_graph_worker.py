"""Child-process side of the graph store's locking and crash tests (run with ``sys.executable``).

_graph_worker.py hold PATH
    Open PATH as the writer, print "ready <pid>", then wait for one stdin line and exit.
_graph_worker.py try-open PATH [ro]
    Try to open PATH (as writer, or read-only); print a JSON outcome.
_graph_worker.py import PATH ROUND N
    Open PATH as the writer and, in one transaction, add N nodes of round ROUND chained by
    NEXT edges; prints "begin ROUND" before and "committed ROUND" after. The parent kills it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def round_nodes(rnd: int, n: int) -> list[dict]:
    return [{"id": f"r{rnd}-{i}", "round": rnd, "text": f"node {i} of round {rnd} " + "x" * 40} for i in range(n)]


def main(argv: list[str]) -> None:
    from kvgraph.graphdb.ladybug import LadybugGraphStore

    mode, path = argv[0], argv[1]
    if mode == "hold":
        store = LadybugGraphStore.open(path)
        _out(f"ready {os.getpid()}")
        sys.stdin.readline()
        store.close()
    elif mode == "try-open":
        try:
            store = LadybugGraphStore.open(path, read_only=len(argv) > 2 and argv[2] == "ro")
        except Exception as e:
            _out(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
            return
        n = store.query("MATCH (n) RETURN count(n)").scalar()
        store.close()
        _out(json.dumps({"ok": True, "count": n}))
    elif mode == "import":
        rnd, n = int(argv[2]), int(argv[3])
        store = LadybugGraphStore.open(path)
        _out(f"begin {rnd}")
        # one import script: nodes and the edges between them in a single statement (one transaction)
        rows = round_nodes(rnd, n)
        with store.transaction():
            store.upsert_nodes("Item", rows)
            store.upsert_edges(
                "NEXT", [(f"Item:{a['id']}", f"Item:{b['id']}", {"round": rnd}) for a, b in itertools.pairwise(rows)]
            )
        _out(f"committed {rnd}")
        store.close()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
