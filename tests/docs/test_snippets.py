"""Every ```bash and ```python snippet of README.md and docs/*.md runs, so the docs cannot drift from the code.

The snippets of a page run in order in one fresh directory (doc_snippets.make_workspace: the demo documents
as ``docs/``, ``paper.pdf``, a knowledge base ``kb``, ``~/papers``, ``~/notes``, ``~/mail``), with
``kvgraph`` being this checkout's. Snippets that cannot run here carry ``<!-- snippet: skip — REASON -->``;
those that need an LLM carry ``<!-- snippet: llm -->`` and talk to a loopback OpenAI-protocol server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from doc_snippets import (
    DEMO_DOCS,
    PAGES,
    REPO,
    MarkerError,
    Snippet,
    extract,
    make_workspace,
    problems,
    run_snippet,
)

from kvgraph.testing.openai_server import FakeOpenAIServer
from support import datasets_root

# what the page tests ran, and what they could not run here (filled as they run, for conftest.py's summary)
TALLY: dict[str, list[str]] = {"ran": [], "not run": [], "known failures": []}

# Snippets that fail because of a known bug outside the docs, by (page, first line of the snippet): the page's
# test is an xfail while they fail, and fails once they pass, so that the entry is removed with the fix.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def scripted_llm(messages: list[dict[str, Any]]) -> str:
    """Replies an LLM could give to what the snippets ask: Cypher for text-to-Cypher prompts, no triples for
    the triple extractor, and otherwise an answer that cites its first source."""
    prompt = "\n".join(str(m.get("content", "")) for m in messages).lower()
    if "rows (" in prompt:  # the rows a query returned, to be put in words
        return "There are 5 open tickets."
    if "cypher" in prompt:
        return "MATCH (t:Task) WHERE toLower(t.status) = 'open' RETURN count(t) AS open_tickets"
    if "triple" in prompt:
        return "[]"
    return "Here is what the sources say. [1]"


@pytest.fixture(scope="module")
def kb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``docs/`` (the demo documents) and ``kb/``, a knowledge base of them, ingested once."""
    root = tmp_path_factory.mktemp("snippet-template")
    shutil.copytree(DEMO_DOCS, root / "docs")
    subprocess.run(
        [sys.executable, "-m", "kvgraph.cli", "--kb", "kb", "--quiet", "ingest", "docs"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return root


def test_markers_are_well_formed_and_every_session_is_marked() -> None:
    found: list[str] = []
    snippets: list[Snippet] = []
    for page in PAGES:
        try:
            snippets += extract(page)
        except MarkerError as e:
            found.append(str(e))
    found += problems(snippets)
    assert not found, "\n".join(found)
    runnable = [s for s in snippets if s.runs]
    skipped = [s for s in snippets if s.kind == "skip"]
    assert runnable and all(s.reason for s in skipped)
    assert any(s.lang == "python" for s in runnable) and any(s.lang == "bash" for s in runnable)


def test_a_bad_marker_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    cases = {
        "<!-- snippet: skip -->\n```bash\nls\n```\n": "needs a reason",
        "<!-- snippet: skip — why -->\n\nSome text.\n```bash\nls\n```\n": "not followed by a code block",
        "<!-- snippet: later — maybe -->\n```bash\nls\n```\n": "unknown snippet marker",
    }
    for text, message in cases.items():
        page.write_text(text, encoding="utf-8")
        with pytest.raises(MarkerError, match=message):
            extract(page)
    page.write_text("<!-- snippet: skip — needs a GPU -->\n\n```python\nimport torch\n```\n", encoding="utf-8")
    (snippet,) = extract(page)
    assert (snippet.kind, snippet.reason, snippet.runs) == ("skip", "needs a GPU", False)
    page.write_text("```console\n$ kvgraph stats\n```\n", encoding="utf-8")
    assert "session is not run" in problems(extract(page))[0]


def pages_with_runnable_snippets() -> list[Path]:
    """Pages with at least one snippet to run (a page with a bad marker is kept: its test reports it)."""
    out = []
    for page in PAGES:
        try:
            if any(s.runs for s in extract(page)):
                out.append(page)
        except MarkerError:
            out.append(page)
    return out


RUN_PAGES = pages_with_runnable_snippets()


# ~35 s for all pages on 2 loaded cores (README.md 10 s, retrieval.md 10 s): not marked slow, so ./dev test runs it
@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(REPO)) for p in RUN_PAGES])
def test_snippets_of_the_page_run(
    page: Path,
    tmp_path: Path,
    kb_template: Path,
    start_openai_server: Callable[..., FakeOpenAIServer],
) -> None:
    runnable = [s for s in extract(page) if s.runs]
    cwd, env = make_workspace(tmp_path, kb_template, datasets_root())
    failures, known = [], []
    for s in runnable:
        if "shared/datasets" in s.code and not datasets_root().exists():
            TALLY["not run"].append(f"{s.where}: shared datasets not found at {datasets_root()}")
            continue
        snippet_env = dict(env)
        if s.kind == "llm":
            server = start_openai_server(reply=scripted_llm)
            snippet_env.update(KVGRAPH_LLM_BASE_URL=server.base_url, KVGRAPH_LLM_MODEL="test-model")
        proc = run_snippet(s, cwd, snippet_env, tmp_path / "scripts")
        TALLY["ran"].append(s.where)
        bug = KNOWN_FAILURES.get((page.name, s.code.splitlines()[0]))
        if proc.returncode != 0 and bug is not None:
            known.append(f"{s.where}: {bug}")
        elif proc.returncode != 0:
            output = proc.stdout[-3000:] + proc.stderr[-3000:]
            failures.append(f"--- {s.where} ({s.lang}) exited {proc.returncode}\n{output}")
        elif bug is not None:
            failures.append(f"--- {s.where} now runs: remove its entry from KNOWN_FAILURES ({bug})")
    assert not failures, "\n".join(failures)
    if known:
        TALLY["known failures"] += known
        pytest.xfail("; ".join(known))
