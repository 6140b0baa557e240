"""Helpers for tests (import as ``from support import ...``; pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    """``$KVGRAPH_DATASETS``, else ``../shared/datasets`` beside the repository."""
    return Path(os.environ.get("KVGRAPH_DATASETS") or REPO_ROOT.parent / "shared" / "datasets")


def require_dataset(*parts: str) -> Path:
    """The path of a shared dataset file or folder; skips the calling test when it is absent."""
    path = datasets_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset {path} not found (set KVGRAPH_DATASETS)")
    return path
