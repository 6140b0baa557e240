"""The fenced snippets of README.md and docs/*.md, their markers, and a workspace to run them in.

A ```bash (or sh/shell) block is run by bash, a ```python block by this Python; a ```console block is a
session with its output and must be marked. The line right above a fence (blank lines allowed between)
may hold a marker:

- ``<!-- snippet: skip — REASON -->``: not run here, for the reason given (a reason is required);
- ``<!-- snippet: output -->``: what a command prints, not something to run;
- ``<!-- snippet: llm -->``: run with ``KVGRAPH_LLM_BASE_URL`` pointing at a loopback OpenAI-protocol
  server (kvgraph.testing.openai_server), as the reader would with their own LLM server.

The snippets of one page run in order in one directory, as a reader working through the page would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DOCS = REPO / "src" / "kvgraph" / "demo_data" / "docs"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

SHELL_LANGS = {"bash", "sh", "shell"}
RUN_LANGS = SHELL_LANGS | {"python"}
SESSION_LANGS = {"console"}  # a prompt and its output: must be marked

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<kind>[a-z]+)\s*(?:(?:\u2014|\u2013|--|-|:)\s*(?P<reason>.*?))?\s*-->\s*$")
MARKER_START = re.compile(r"^<!--\s*snippet\b")
KINDS = {"skip", "output", "llm"}
SNIPPET_TIMEOUT_S = 240


class MarkerError(ValueError):
    """A malformed or misplaced snippet marker, naming the page and line."""


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    kind: str  # "run", "skip", "output" or "llm"
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS and self.kind in {"run", "llm"}


def shown(page: Path) -> Path:
    """A page's path as the messages show it: relative to the repository when inside it."""
    return page.relative_to(REPO) if page.is_relative_to(REPO) else page


def extract(page: Path) -> list[Snippet]:
    """Every fenced block of ``page`` with its marker; raises MarkerError on a bad or orphan marker."""
    lines = page.read_text(encoding="utf-8").splitlines()
    rel = shown(page)
    snippets: list[Snippet] = []
    pending: tuple[int, str, str] | None = None  # (line, kind, reason) of a marker waiting for its fence
    i = 0
    while i < len(lines):
        text = lines[i]
        fence = FENCE.match(text)
        if MARKER_START.match(text.strip()):
            if pending is not None:
                raise MarkerError(f"{rel}:{pending[0]}: snippet marker not followed by a code block")
            found = MARKER.match(text.strip())
            if found is None or found["kind"] not in KINDS:
                raise MarkerError(f"{rel}:{i + 1}: unknown snippet marker {text.strip()!r} (kinds: {sorted(KINDS)})")
            reason = (found["reason"] or "").strip()
            if found["kind"] == "skip" and not reason:
                raise MarkerError(f"{rel}:{i + 1}: a skipped snippet needs a reason: <!-- snippet: skip — REASON -->")
            pending = (i + 1, found["kind"], reason)
        elif fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence[1]):
                end += 1
            kind, reason = ("run", "") if pending is None else (pending[1], pending[2])
            snippets.append(Snippet(page, i + 1, fence[2].lower(), "\n".join(lines[i + 1 : end]) + "\n", kind, reason))
            pending = None
            i = end
        elif text.strip() and pending is not None:
            raise MarkerError(f"{rel}:{pending[0]}: snippet marker not followed by a code block")
        i += 1
    if pending is not None:
        raise MarkerError(f"{rel}:{pending[0]}: snippet marker not followed by a code block")
    return snippets


def problems(snippets: list[Snippet]) -> list[str]:
    """Blocks that are neither run nor honestly marked."""
    out = []
    for s in snippets:
        if s.lang in SESSION_LANGS and s.kind not in {"output", "skip"}:
            out.append(f"{s.where}: a ```{s.lang} session is not run: mark it <!-- snippet: output --> or skip")
        if s.kind == "llm" and s.lang not in RUN_LANGS:
            out.append(f"{s.where}: <!-- snippet: llm --> on a ```{s.lang or 'text'} block, which is never run")
    return out


def make_workspace(root: Path, kb_template: Path, datasets: Path) -> tuple[Path, dict[str, str]]:
    """A page's directory and environment: ``docs/`` (the demo documents), ``paper.pdf``, ``kb`` (a knowledge
    base of them), a home with ``~/papers``, ``~/notes`` and ``~/mail``, ``../shared/datasets``, and a
    ``kvgraph`` on PATH that is this checkout's (``python -m kvgraph.cli``). Returns (cwd, env)."""
    work = root / "work"
    shutil.copytree(kb_template, work)
    shutil.copy(DEMO_DOCS / "home-network-handbook.pdf", work / "paper.pdf")
    home = root / "home"
    for folder, names in {
        "papers": ["home-network-handbook.pdf", "solar-maintenance.md"],
        "notes": ["rosetta-stone.txt", "sourdough.md"],
        "notes/drafts": ["sourdough.md"],
        "mail": ["honeybees.html"],
    }.items():
        (home / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(DEMO_DOCS / name, home / folder / name)
    (root / "shared").mkdir()
    (root / "shared" / "datasets").symlink_to(datasets)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kvgraph"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kvgraph.cli "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVGRAPH_", "PYTEST_", "COV_"))}
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        # the prepared ONNX model is shared with the test run (its cache is under the real home)
        KVGRAPH_CACHE_DIR=os.environ.get("KVGRAPH_CACHE_DIR") or str(Path.home() / ".cache" / "kvgraph"),
        HF_HUB_OFFLINE="1",
        COLUMNS="120",
        PYTHONUNBUFFERED="1",
    )
    if "KVGRAPH_DATASETS" in os.environ:
        env["KVGRAPH_DATASETS"] = os.environ["KVGRAPH_DATASETS"]
    return work, env


def run_snippet(snippet: Snippet, cwd: Path, env: dict[str, str], scripts: Path) -> subprocess.CompletedProcess[str]:
    """Run one snippet as a script (bash -e -o pipefail, or this Python) in ``cwd``."""
    scripts.mkdir(exist_ok=True)
    name = f"{snippet.page.stem}-{snippet.line}"
    if snippet.lang in SHELL_LANGS:
        script = scripts / f"{name}.sh"
        script.write_text(snippet.code, encoding="utf-8")
        argv = ["bash", "-e", "-o", "pipefail", str(script)]
    else:
        script = scripts / f"{name}.py"
        script.write_text(snippet.code, encoding="utf-8")
        argv = [sys.executable, str(script)]
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S, stdin=subprocess.DEVNULL
    )
