"""Adapters that let other frameworks use kvgraph's parts.

Each integration lives in its own module and imports its framework at module import time,
so ``import kvgraph`` never pulls one in; import the module you need, e.g.
``from kvgraph.integrations.llama_index import KvgraphVectorStore``.
"""
