"""The ``kvgraph`` command line: one module per command group, each a thin layer over
:class:`kvgraph.kb.KnowledgeBase` (or the evaluation harness above it).

:mod:`~kvgraph.cli.main` is the root group and wires the others: :mod:`~kvgraph.cli.kb` (init,
ingest, sync, search, ask, stats, documents, delete), :mod:`~kvgraph.cli.graph`,
:mod:`~kvgraph.cli.store`, :mod:`~kvgraph.cli.eval` and :mod:`~kvgraph.cli.demo`. What they share
(global options, ``-h``, the JSON envelope, exit statuses, progress) is in :mod:`~kvgraph.cli.common`;
every command's help examples are in :mod:`~kvgraph.cli.examples`.
"""

from kvgraph.cli.main import main

__all__ = ["main"]
