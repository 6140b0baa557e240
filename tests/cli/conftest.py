"""The CLI tests' shared knowledge base: four small documents, ingested once through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import run

from kbdocs import make_docs


@pytest.fixture(scope="session")
def kb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(knowledge base, its documents folder); tests only read it."""
    root = tmp_path_factory.mktemp("cli")
    docs = make_docs(root)
    kb = root / "kb"
    report = json.loads(run(["ingest", str(docs), "--json"], kb).stdout)
    assert report["files_ingested"] == 4 and report["chunks"] >= 5
    return kb, docs
