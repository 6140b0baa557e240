"""Fusion and query settings are query-time options of the product retrievers (no new knowledge base)."""

from __future__ import annotations

import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.eval.retrievers import product_options


def test_fusion_settings_reuse_the_knowledge_base_and_headers_do_not() -> None:
    opts = product_options(
        "kvgraph",
        {
            "fusion": "rrf",
            "fusion_alpha": "0.5",
            "query_feedback": "rm3",
            "rerank": "sentences",
            "context_headers": "false",
        },
    )
    assert opts.node_settings == {"context_headers": "false"}  # only the header changes what is stored
    assert opts.settings["fusion_alpha"] == "0.5"


def test_bad_fusion_options_name_the_spec() -> None:
    with pytest.raises(InvalidInputError, match=r"kvgraph:fusion_alpha=2.*fusion_alpha"):
        product_options("kvgraph:fusion_alpha=2", {"fusion_alpha": "2"})
