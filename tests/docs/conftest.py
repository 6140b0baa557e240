"""Reports, at the end of a run, how many documentation snippets ran and how many were skipped (and why)."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    snippets_test = sys.modules.get("test_snippets")
    if snippets_test is None or not snippets_test.TALLY["ran"]:
        return
    from doc_snippets import PAGES, extract

    tally = snippets_test.TALLY
    marked = [s for page in PAGES for s in extract(page)]
    skipped = [s for s in marked if s.kind == "skip"]
    outputs = [s for s in marked if s.kind == "output"]
    terminalreporter.section("documentation snippets")
    terminalreporter.write_line(
        f"{len(tally['ran'])} ran, {len(skipped) + len(tally['not run'])} skipped, "
        f"{len(outputs)} output blocks (README.md and docs/*.md)"
    )
    for s in skipped:
        terminalreporter.write_line(f"  skipped {s.where}: {s.reason}")
    for line in tally["not run"]:
        terminalreporter.write_line(f"  not run {line}")
    for line in tally["known failures"]:
        terminalreporter.write_line(f"  known failure {line}")
