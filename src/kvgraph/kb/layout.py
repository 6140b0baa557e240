"""Where a knowledge base keeps its parts on disk; cheap to import (no storage engine loads).

Layout of a knowledge-base directory::

    kvgraph.toml            settings (see kvgraph.config)
    store/                  the embedded vector store (chunks, vectors, BM25, ANN index)
    documents.sqlite        which files were ingested, their hashes and the documents they produced
    embed-cache.sqlite      vectors the store does not hold, by (model, text hash): a re-embed's
                            until it finishes, node references' candidate sentences; safe to delete
    reembed.tmp/            a re-embed's new store and graph before they replace the old ones
    references-cache.jsonl  LLM-written summaries and questions (reference_writer = llm); safe to delete
    graph/                  the Cypher graph (embedded Ladybug)
    graph-index/            vectors of graph nodes' text properties (a kvgraph vector store)
    doc-graph/              the document graph's arrays, and triples.jsonl (the LLM triple cache)
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_KB = ".kvgraph"
STORE_DIR = "store"
REGISTRY_FILE = "documents.sqlite"
CACHE_FILE = "embed-cache.sqlite"
STAGING_DIR = "reembed.tmp"
REFERENCES_CACHE_FILE = "references-cache.jsonl"
DOC_GRAPH_DIR = "doc-graph"
TRIPLES_CACHE = "triples.jsonl"  # LLM triple extraction results, inside DOC_GRAPH_DIR
# The settings that decide how documents become nodes; stored with the store so that changing
# any of them re-chunks every file on the next ingest or sync instead of mixing two layouts.
CHUNKING_META = "chunking"


def default_kb_path() -> Path:
    """``$KVGRAPH_KB``, else ``./.kvgraph``."""
    return Path(os.environ.get("KVGRAPH_KB") or DEFAULT_KB)
