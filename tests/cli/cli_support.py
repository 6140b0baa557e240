"""Running ``kvgraph`` as a real process, for the CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

KVGRAPH = [sys.executable, "-m", "kvgraph.cli"]


def run(
    args: list[str],
    kb: Path,
    check: bool = True,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    drop: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """``kvgraph ARGS`` with ``KVGRAPH_KB=kb``, stdin (empty unless given) and captured output.

    ``drop`` removes variables from the environment (``COLUMNS``, set to 200 by default).
    """
    full_env = {**os.environ, "KVGRAPH_KB": str(kb), "COLUMNS": "200", **(env or {})}
    for name in ("KVGRAPH_LLM_BASE_URL", *drop):
        full_env.pop(name, None)
    proc = subprocess.run(
        [*KVGRAPH, *args], capture_output=True, text=True, env=full_env, timeout=120, input=stdin or ""
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kvgraph {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def results(proc: subprocess.CompletedProcess) -> list[dict]:
    """The rows of a command's JSON envelope."""
    return json.loads(proc.stdout)["results"]
