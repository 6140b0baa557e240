"""Evaluation harness: dataset readers (:mod:`kvgraph.eval.datasets`), retrieval metrics
(:mod:`kvgraph.eval.metrics`) and answer metrics (:mod:`kvgraph.eval.answer_metrics`).

The modules are small and pure: readers turn a file format into one in-memory
:class:`~kvgraph.eval.datasets.EvalDataset`; metrics take ranked id lists or strings and return numbers.
"""
