"""Fixtures of the server tests: servers that stop after each test, the sample knowledge base once
per session (documents ingested, document graph built and exported to Cypher), and copies of it for
tests that change it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'kvgraph[server]'")

from server_support import LOGGERS, SAMPLES, LogCapture, RunningServer, start

from kvgraph.kb import KnowledgeBase


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start servers (``serve(kb_path, api_key=..., ...)``); each stops after the test."""
    started: list[RunningServer] = []

    def run(kb_path: Path, **config: Any) -> RunningServer:
        s = start(kb_path, **config)
        started.append(s)
        return s

    try:
        yield run
    finally:
        for s in started:
            s.stop()
        for name in LOGGERS:
            for h in list(logging.getLogger(name).handlers):
                if isinstance(h, LogCapture):
                    logging.getLogger(name).removeHandler(h)


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample documents ingested, with the document graph built and exported to the Cypher graph."""
    path = tmp_path_factory.mktemp("server") / "kb"
    with KnowledgeBase.open(path) as kb:
        kb.ingest([SAMPLES])
        kb.graph.build(export=True)
    return path


@pytest.fixture
def kb_copy(sample_kb: Path, tmp_path: Path) -> Path:
    """A copy of ``sample_kb`` that a test may change."""
    target = tmp_path / "kb"
    shutil.copytree(sample_kb, target)
    return target
