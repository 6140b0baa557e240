"""The document graph: chunks, documents and the entities they mention, built from the stored
chunks for knowledge-vector-graph retrieval.

:mod:`~kvgraph.docgraph.extract` finds entities offline, :mod:`~kvgraph.docgraph.triples` asks an
LLM for subject-relation-object triples, :mod:`~kvgraph.docgraph.build` assembles and saves the
graph as arrays, :mod:`~kvgraph.docgraph.knn` finds nearest chunks and entity names without
comparing every pair, :mod:`~kvgraph.docgraph.incremental` updates a saved graph after ingest
instead of building it again, :mod:`~kvgraph.docgraph.cache` keeps one loaded graph per process
and save, and :mod:`~kvgraph.docgraph.ppr` walks it (bounded personalized PageRank). The walk that
serves queries is :mod:`kvgraph.retrieve.graph`.
"""
