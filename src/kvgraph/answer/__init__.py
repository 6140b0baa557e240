"""Answers with citations from retrieved nodes: extractive (offline, sentences quoted from the
sources) in :mod:`kvgraph.answer.extractive`, and written by an LLM (at once or streamed) in
:mod:`kvgraph.answer.synthesize`. Both number their sources ``[n]`` the same way.
"""
