"""Any query string, whatever its characters, gives results or a clear error through kb.search.

Queries come from hypothesis: arbitrary Unicode including NUL, control characters and lone
surrogates, and bytes that are not UTF-8 decoded the way Python decodes file names and
command-line arguments (``errors="surrogateescape"``). Each is searched in every mode, with
and without a filter built from the same string.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgraph.errors import KvgraphError
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document
from kvgraph.text import replace_surrogates

QUERIES = st.one_of(
    st.text(min_size=1, max_size=40),
    st.binary(min_size=1, max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.sampled_from(["\x00", "a\x00b", "\udcff", "caf\udce9", "\ud800\udc00", "\ufffe", "\u202e", " \t\n"]),
)


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    path: Path = tmp_path_factory.mktemp("q") / "kb"
    with KnowledgeBase.open(path) as writer:
        writer.add_documents(
            [
                Document(id="a", text="Lighthouses guide ships along rocky coasts.", metadata={"lang": "en"}),
                Document(id="b", text="Der Leuchtturm steht am Hafen.", metadata={"lang": "de", "n": 2**63}),
                Document(id="c", text="Caf\u00e9 au lait \u2014 a drink.", metadata={"lang": "fr", "n": -1}),
            ]
        )
    with KnowledgeBase.open(path, read_only=True) as reader:
        yield reader


def search_or_clear_error(kb: KnowledgeBase, query: str, mode: str) -> None:
    for filters in (None, {"lang": {"$text_match": query}}, {"$or": [{"lang": query}, {"n": {"$gte": 2**63}}]}):
        try:
            hits = kb.search(query, k=3, mode=mode, filters=filters)
        except KvgraphError as exc:  # a clear, one-line error naming what is wrong
            message = str(exc)
            assert message and "\n" not in message.strip(), message
            message.encode("utf-8", "surrogateescape")
            continue
        assert isinstance(hits, list) and len(hits) <= 3
        for hit in hits:
            assert hit.node.id in {n for n in kb.store.ids()}


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(query=QUERIES)
def test_any_query_string_sparse(kb: KnowledgeBase, query: str) -> None:
    search_or_clear_error(kb, query, "sparse")


# Lone surrogates and undecodable bytes reach the tokenizer as replacement characters (check_query).
@pytest.mark.parametrize("mode", ["dense", "hybrid", "mmr"])
@SETTINGS
@given(query=QUERIES)
def test_any_query_string_embedding_modes(kb: KnowledgeBase, mode: str, query: str) -> None:
    search_or_clear_error(kb, query, mode)


@SETTINGS
@given(query=QUERIES)
def test_replace_surrogates_makes_any_string_encodable(query: str) -> None:
    cleaned = replace_surrogates(query)
    cleaned.encode("utf-8")  # would raise on a lone surrogate
    assert len(cleaned) == len(query)
    for before, after in zip(query, cleaned):  # surrogates become U+FFFD, nothing else changes
        assert after == ("\ufffd" if 0xD800 <= ord(before) <= 0xDFFF else before)
    assert replace_surrogates(os.fsdecode(b"caf\xe9")) == "caf\ufffd"
