"""BM25 analyzers (kvgraph.store.analyzers) and the postings they are saved with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Node
from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery
from kvgraph.store.analyzers import DEFAULT_ANALYZER, analyzer, canonical, query_analyzer, split_identifier
from kvgraph.store.bm25 import BM25Index


def test_split_breaks_camel_snake_and_digit_identifiers_and_keeps_the_whole() -> None:
    assert split_identifier("getUserName") == ["get", "user", "name"]
    assert split_identifier("HTTPServer2") == ["http", "server2"]
    assert split_identifier("Llama2") == [] and split_identifier("w0") == []  # a counter stays with its word
    assert split_identifier("max_seq_len") == ["max", "seq", "len"]
    assert split_identifier("tokens") == []
    assert analyzer("split")("call getUserName now") == ["call", "getusername", "get", "user", "name", "now"]


def test_stem_join_and_stop_options() -> None:
    stem = analyzer("stem")
    assert stem("tuning tuned tunes") == ["tune", "tune", "tune"]
    joined = analyzer("stem+join")("Safety Fine-Tuning")
    assert set(joined) >= {"safeti", "fine", "tune", "finetun"}  # "fine-tuning" also indexed as "finetuning"
    assert analyzer("stem")("finetuning") == ["finetun"]
    assert analyzer("stop")("Can you tell me about reward models") == ["reward", "models"]
    # in a question, a two-word request for a kind of answer is dropped as a pair; "key" alone
    # stays a topic word, and texts keep the pair ("the key point is ..." is content)
    assert query_analyzer("stop")("the Key Concepts for safety") == ["safety"]
    assert query_analyzer("stop")("main ideas, key points") == []
    assert query_analyzer("stop")("a key for the car, the main road") == ["key", "car", "main", "road"]
    assert analyzer("stop")("the key concepts for safety") == ["key", "concepts", "safety"]
    assert query_analyzer("plain")("key concepts") == ["key", "concepts"]
    # without split the text is lower-cased before it is cut, as postings saved under analyzer
    # version 2 were: "İstanbul" lower-cases to "i" + a combining dot + "stanbul"
    for spec in ("plain", "stop"):
        assert analyzer(spec)("İstanbul") == query_analyzer(spec)("İstanbul") == ["stanbul"]
    assert analyzer("plain")("Can you tell me about reward models") == [
        "can",
        "tell",
        "me",
        "about",
        "reward",
        "models",
    ]


def test_canonical_names_and_errors() -> None:
    assert canonical("split+stem") == "stem+split"
    assert canonical("") == DEFAULT_ANALYZER
    with pytest.raises(InvalidInputError, match="bm25 analyzer 'porter'"):
        canonical("porter")
    with pytest.raises(InvalidInputError):
        canonical("stem+stem")


def test_postings_saved_with_another_analyzer_are_rebuilt() -> None:
    plain = BM25Index(analyzer_name="plain")
    plain.append(["fine-tuning the models", "running shoes"])
    arrays, meta = plain.to_arrays()
    assert meta["analyzer"] == "plain"
    assert BM25Index.from_arrays(arrays, meta, "plain").n == 2  # same analyzer: kept
    fresh = BM25Index.from_arrays(arrays, meta)  # the default analyzer: start over from the records
    assert fresh.n == 0 and fresh.analyzer_name == DEFAULT_ANALYZER
    legacy = {k: v for k, v in meta.items() if k != "analyzer"}  # saved before analyzers existed
    assert BM25Index.from_arrays(arrays, legacy).n == 0
    stemmed = BM25Index()
    stemmed.append(["fine-tuning the models"])
    arrays, meta = stemmed.to_arrays()
    assert BM25Index.from_arrays(arrays, meta).n == 1
    assert BM25Index.from_arrays(arrays, {**meta, "analyzer_version": 1}).n == 0  # the analyzer changed since


def test_store_bm25_matches_word_forms_and_compounds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    texts = ["We describe safety fine-tuning of chat models.", "The runner ran in the marathon.", "Unrelated text."]
    nodes = [Node(id=f"n{i}", text=t, embedding=rng.normal(size=8).tolist()) for i, t in enumerate(texts)]
    with EmbeddedVectorStore.open(tmp_path / "store") as store:
        store.add(nodes)
        for query, want in [("safety finetuning", "n0"), ("runners running", "n1"), ("chat model", "n0")]:
            res = store.query(VectorStoreQuery(query_str=query, mode="sparse", similarity_top_k=1))
            assert res.ids == [want], query
