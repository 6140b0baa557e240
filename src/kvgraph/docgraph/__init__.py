"""The document graph: chunks, documents and the entities they mention, built from the stored
chunks for knowledge-vector-graph retrieval.

:mod:`~kvgraph.docgraph.extract` finds entities offline, :mod:`~kvgraph.docgraph.triples` asks an
LLM for subject-relation-object triples, :mod:`~kvgraph.docgraph.build` assembles and saves the
graph as arrays, and :mod:`~kvgraph.docgraph.ppr` walks it (bounded personalized PageRank). The
walk that serves queries is :mod:`kvgraph.retrieve.graph`.
"""
