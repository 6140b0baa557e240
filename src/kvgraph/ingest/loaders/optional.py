"""Format libraries that are an optional extra: a clear skip reason instead of an ImportError.

Word, PowerPoint and Excel files are read by python-docx, python-pptx and openpyxl, which with
lxml and Pillow weigh about 45 MB installed; they come with ``pip install 'kvgraph[formats]'``.
Without them such a file is skipped with a reason naming the extra, and nothing else changes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from kvgraph.ingest.loaders.files import UnreadableFileError

__all__ = ["FORMATS_EXTRA", "import_format_library"]

FORMATS_EXTRA = "kvgraph[formats]"


def import_format_library(path: Path, module: str, package: str) -> ModuleType:
    """Import ``module`` (from the PyPI package ``package``), or raise UnreadableFileError saying
    which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnreadableFileError(
            path,
            f"reading {path.suffix.lower() or 'these'} files needs {package}, which is not installed: "
            f"pip install '{FORMATS_EXTRA}'",
        ) from None
