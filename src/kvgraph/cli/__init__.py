"""The ``kvgraph`` command line: one module per command group, each a thin layer over
:class:`kvgraph.kb.KnowledgeBase` (or the evaluation harness above it).

:mod:`~kvgraph.cli.main` is the root group and wires the others: :mod:`~kvgraph.cli.kb` (init,
ingest, sync, search, ask, stats, documents, delete), :mod:`~kvgraph.cli.graph`,
:mod:`~kvgraph.cli.store`, :mod:`~kvgraph.cli.eval` and :mod:`~kvgraph.cli.demo`.
"""

from kvgraph.cli.main import main

__all__ = ["main"]
