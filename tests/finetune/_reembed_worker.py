"""A child process that re-embeds a knowledge base and says what it is doing, so the parent can kill it anywhere.

    python _reembed_worker.py KB SPEC DELAY

Prints ``embedded <done>/<total>`` as batches finish and ``step <name>`` before every rename of the
switch (each followed by a DELAY-second pause, so a kill can land between two renames), then
``done``. The renames are delayed only inside kvgraph.kb.reembed; the process is real and is
killed with SIGKILL.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import kvgraph.kb.reembed as reembed_module
from kvgraph.kb import KnowledgeBase


def main() -> None:
    kb_path, spec, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    reembed_module.BATCH = 8  # several batches even for a small knowledge base

    def announced(name: str) -> Any:
        real = getattr(os, name)

        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            print(f"step {name} {Path(src).name} -> {Path(dst).name}", flush=True)
            time.sleep(delay)
            return real(src, dst, *args, **kwargs)

        return call

    slow_os = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    slow_os.rename = announced("rename")
    slow_os.replace = announced("replace")
    reembed_module.os = slow_os  # type: ignore[assignment]
    print("ready", flush=True)
    with KnowledgeBase.open(kb_path) as kb:
        kb.reembed(spec, progress=lambda done, total: print(f"embedded {done}/{total}", flush=True))
    print("done", flush=True)


if __name__ == "__main__":
    main()
