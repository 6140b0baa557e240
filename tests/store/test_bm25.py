"""BM25 scores checked against a from-scratch reference implementation.

The reference is Lucene's BM25 written out directly from the formula over the tokenized
*live* documents::

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(d, q) = sum over distinct query terms t in d of
                  idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))

with k1 = 1.5, b = 0.75, N the number of live documents and avgdl their mean token count.
Tokenization is kvgraph's own ``tokenize`` (tested separately below), so the comparison is
about scoring and index maintenance: deletes, upserts, filters, merges, caches, vacuum.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgraph.store import EmbeddedVectorStore, VectorStoreQuery
from kvgraph.store.bm25 import BM25Index, tokenize

K1, B = 1.5, 0.75
DIM = 4


def ref_bm25(docs: dict[Any, str], query: str) -> dict[Any, float]:
    """Scores of every document containing at least one query term."""
    toks = {d: tokenize(text) for d, text in docs.items()}
    n = len(toks)
    if n == 0:
        return {}
    avgdl = sum(len(t) for t in toks.values()) / n
    out: dict[Any, float] = {}
    for term in set(tokenize(query)):
        df = sum(1 for t in toks.values() if term in t)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for d, t in toks.items():
            tf = t.count(term)
            if tf:
                norm = 1 - B + B * len(t) / avgdl
                out[d] = out.get(d, 0.0) + idf * tf * (K1 + 1) / (tf + K1 * norm)
    return out


def assert_scores(got: dict[Any, float], want: dict[Any, float], context: str = "") -> None:
    assert set(got) == set(want), f"{context}: matched {sorted(got)}, reference {sorted(want)}"
    keys = sorted(want)
    assert np.allclose([got[k] for k in keys], [want[k] for k in keys], rtol=1e-4, atol=1e-6), (
        f"{context}: scores {[got[k] for k in keys]} != reference {[want[k] for k in keys]}"
    )


# ---- tokenize -------------------------------------------------------------------------------


def test_tokenize_lowercases_and_splits_on_non_word_characters() -> None:
    assert tokenize("Hello, WORLD! hello-world") == ["hello", "world", "hello", "world"]
    assert tokenize("snake_case v2.0") == ["snake_case", "v2", "0"]


def test_tokenize_removes_stopwords_after_lowercasing() -> None:
    assert tokenize("The cat AND the Hat is on it") == ["cat", "hat"]
    assert tokenize("the of and") == []
    assert tokenize("") == []


def test_tokenize_keeps_unicode_words() -> None:
    assert tokenize("Café naïve STRASSE Straße 東京 Ωmega") == ["café", "naïve", "strasse", "straße", "東京", "ωmega"]


# ---- corpora --------------------------------------------------------------------------------

# Word frequencies differ a lot (so document frequencies and idf vary); case and punctuation
# vary so tokenization matters; stopwords count neither as terms nor towards document length.
WORDS = [
    "apple",
    "apple",
    "apple",
    "banana",
    "banana",
    "cherry",
    "date",
    "elder",
    "fig",
    "kiwi",
    "Apple",
    "BANANA",
    "the",
    "and",
    "of",
]
QUERY_WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "kiwi", "durian", "the", "Apple"]

TEXTS = st.lists(st.sampled_from(WORDS), max_size=12).flatmap(
    lambda ws: st.sampled_from([" ", ", ", ". "]).map(lambda sep: sep.join(ws))
)
QUERIES = st.lists(st.sampled_from(QUERY_WORDS), min_size=1, max_size=3, unique=True).map(" ".join)


# ---- BM25Index directly ---------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(st.lists(TEXTS, min_size=1, max_size=6), min_size=1, max_size=5),
    merge_after=st.lists(st.booleans(), min_size=5, max_size=5),
    merge_at=st.sampled_from([1, 3, 8, 500_000]),
    dead=st.sets(st.integers(0, 29)),
    allowed=st.sets(st.integers(0, 29)),
    queries=st.lists(QUERIES, min_size=1, max_size=4),
    roundtrip=st.booleans(),
)
def test_index_matches_reference(
    batches: list[list[str]],
    merge_after: list[bool],
    merge_at: int,
    dead: set[int],
    allowed: set[int],
    queries: list[str],
    roundtrip: bool,
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BM25Index, "MERGE_AT", merge_at)
        idx = BM25Index()
        texts: list[str] = []
        for i, batch in enumerate(batches):
            idx.append(batch)
            texts += batch
            if merge_after[i]:
                idx.merge()
            if roundtrip and i == 0:  # persisted after the first batch, then extended
                arrays, meta = idx.to_arrays()
                idx = BM25Index.from_arrays({k: np.array(v) for k, v in arrays.items()}, meta)
    assert idx.n == len(texts)
    live = np.array([i not in dead for i in range(len(texts))])
    allow = np.array([i in allowed for i in range(len(texts))])
    live_docs = {i: t for i, t in enumerate(texts) if live[i]}
    for q in queries:
        want = ref_bm25(live_docs, q)
        slots, scores = idx.scores(q, live)
        assert len(set(slots.tolist())) == len(slots)
        assert_scores(dict(zip(slots.tolist(), scores.tolist())), want, q)
        # a restriction narrows the results but every score stays the same
        slots, scores = idx.scores(q, live, allow)
        assert_scores(dict(zip(slots.tolist(), scores.tolist())), {d: s for d, s in want.items() if allow[d]}, q)


def test_index_hand_example() -> None:
    # N = 3, avgdl = (2 + 1 + 3) / 3 = 2. "apple": df = 2, idf = ln(1 + 1.5/2.5) = ln 1.6.
    # doc 0 "apple pie" tf=1, |d|=2: 1*2.5 / (1 + 1.5*(0.25 + 0.75*2/2)) = 2.5/2.5 = 1
    # doc 2 "apple apple tart" tf=2, |d|=3: 2*2.5 / (2 + 1.5*(0.25 + 0.75*3/2)) = 5/4.0625
    idx = BM25Index()
    idx.append(["apple pie", "tart", "apple apple tart"])
    slots, scores = idx.scores("Apple", np.ones(3, dtype=bool))
    got = dict(zip(slots.tolist(), scores.tolist()))
    assert got.keys() == {0, 2}
    assert got[0] == pytest.approx(math.log(1.6), rel=1e-5)
    assert got[2] == pytest.approx(math.log(1.6) * 5 / 4.0625, rel=1e-5)


# ---- through the store ----------------------------------------------------------------------


class Harness:
    """A real store plus the model of what it should contain (id -> (text, group))."""

    def __init__(self, path: Path, seed: int = 0) -> None:
        self.path = path
        self.rng = np.random.default_rng(seed)
        self.store = EmbeddedVectorStore.open(path, dim=DIM)
        self.model: dict[str, tuple[str, int]] = {}

    def upsert(self, docs: dict[str, tuple[str, int]]) -> None:
        ids = list(docs)
        self.store.add_arrays(
            ids,
            self.rng.normal(size=(len(ids), DIM)),
            texts=[docs[i][0] for i in ids],
            metadatas=[{"grp": docs[i][1]} for i in ids],
        )
        self.model.update(docs)

    def delete(self, ids: list[str]) -> None:
        assert self.store.delete(ids) == len(set(ids) & set(self.model))
        for i in ids:
            self.model.pop(i, None)

    def reopen(self, checkpoint: bool) -> None:
        if checkpoint:
            self.store.checkpoint()
        self.store.close()
        self.store = EmbeddedVectorStore.open(self.path, dim=DIM)

    def sparse(self, query: str, filters: Any = None) -> dict[str, float]:
        k = max(len(self.model), 1)
        res = self.store.query(VectorStoreQuery(mode="sparse", query_str=query, similarity_top_k=k, filters=filters))
        assert len(res.ids) == len(set(res.ids))
        assert all(a >= b for a, b in itertools.pairwise(res.similarities)), "not sorted best first"
        return dict(zip(res.ids, res.similarities))

    def check(self, query: str, groups: list[int] | None = None) -> None:
        want = ref_bm25({i: text for i, (text, _) in self.model.items()}, query)
        assert_scores(self.sparse(query), want, query)
        if groups is not None:
            narrowed = {i: s for i, s in want.items() if self.model[i][1] in groups}
            assert_scores(self.sparse(query, {"grp": {"$in": groups}}), narrowed, f"{query} with grp in {groups}")

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "store")
    yield h
    h.close()


IDS = st.sampled_from([f"d{i}" for i in range(20)])
DOCS = st.dictionaries(IDS, st.tuples(TEXTS, st.integers(0, 2)), min_size=1, max_size=10)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), DOCS),
        st.tuples(st.just("delete"), st.lists(IDS, min_size=1, max_size=5, unique=True)),
        st.tuples(st.just("reopen"), st.booleans()),
        st.tuples(st.just("vacuum"), st.none()),
        st.tuples(st.just("query"), st.none()),  # builds the index mid-way, so later writes extend it
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=DOCS,
    ops=OPS,
    queries=st.lists(QUERIES, min_size=1, max_size=3),
    groups=st.lists(st.integers(0, 2), min_size=1, max_size=2, unique=True),
    merge_at=st.sampled_from([2, 7, 500_000]),
)
def test_store_sparse_scores_match_reference(
    first: dict[str, tuple[str, int]],
    ops: list[tuple[str, Any]],
    queries: list[str],
    groups: list[int],
    merge_at: int,
) -> None:
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as d:
        mp.setattr(BM25Index, "MERGE_AT", merge_at)
        h = Harness(Path(d) / "store")
        try:
            h.upsert(first)
            for kind, arg in ops:
                if kind == "upsert":
                    h.upsert(arg)
                elif kind == "delete":
                    h.delete(arg)
                elif kind == "reopen":
                    h.reopen(checkpoint=arg)
                elif kind == "vacuum":
                    h.store.vacuum()
                else:
                    h.check(queries[0])
            assert h.store.count() == len(h.model)
            for q in queries:
                h.check(q, groups)
            # the same live documents indexed from scratch give the same scores
            fresh = Harness(Path(d) / "fresh")
            try:
                if h.model:
                    fresh.upsert(dict(h.model))
                for q in queries:
                    assert_scores(h.sparse(q), fresh.sparse(q), f"{q}: incremental vs fresh index")
            finally:
                fresh.close()
        finally:
            h.close()


def test_deleting_a_document_changes_statistics(harness: Harness, tmp_path: Path) -> None:
    harness.upsert(
        {
            "a": ("apple pie", 0),
            "b": ("apple banana", 0),
            "c": ("cherry cherry cherry cake", 1),
            "d": ("banana bread", 1),
        }
    )
    before = harness.sparse("apple")
    harness.check("apple banana cherry")
    harness.delete(["c"])
    after = harness.sparse("apple")
    # N and avgdl changed, so the surviving documents' scores changed too ...
    assert after.keys() == before.keys() == {"a", "b"}
    assert not np.isclose(after["a"], before["a"], rtol=1e-4)
    # ... exactly as if "c" had never been added.
    fresh = Harness(tmp_path / "fresh")
    fresh.upsert({k: v for k, v in harness.model.items()})
    assert_scores(after, fresh.sparse("apple"), "apple after delete")
    assert_scores(harness.sparse("cherry banana"), fresh.sparse("cherry banana"), "after delete")
    assert "c" not in harness.sparse("cherry")
    fresh.close()


def test_upsert_replaces_text(harness: Harness) -> None:
    harness.upsert({"a": ("apple pie", 0), "b": ("banana split", 0)})
    assert set(harness.sparse("apple")) == {"a"}
    harness.upsert({"a": ("kiwi tart", 1)})
    assert harness.sparse("apple") == {}  # the old text no longer matches
    assert set(harness.sparse("kiwi")) == {"a"}
    harness.check("kiwi banana apple", groups=[1])
    assert harness.store.count() == 2


def test_filter_narrows_without_changing_scores(harness: Harness) -> None:
    harness.upsert({f"d{i}": (("apple " * (i % 3 + 1)) + "banana" * (i % 2), i % 3) for i in range(12)})
    everything = harness.sparse("apple banana")
    only = harness.sparse("apple banana", {"grp": 1})
    assert set(only) == {f"d{i}" for i in range(12) if i % 3 == 1}
    for i, score in only.items():
        assert score == pytest.approx(everything[i], rel=1e-6)


def test_merge_then_cache_then_vacuum(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BM25Index, "MERGE_AT", 3)
    harness.upsert({f"d{i}": (f"apple {'banana ' * i} cherry{i % 4}", i % 2) for i in range(10)})
    harness.check("apple banana cherry1", groups=[0])  # the index is built and merged here
    harness.upsert({f"e{i}": (f"banana kiwi {'fig ' * i}", 1) for i in range(5)})  # appended to a merged block
    harness.check("banana fig apple", groups=[1])
    harness.delete([f"d{i}" for i in range(0, 10, 3)])
    harness.check("banana fig apple cherry1")
    harness.reopen(checkpoint=True)
    assert (harness.path / "cache" / "bm25.kvg").exists()
    harness.check("banana fig apple cherry1", groups=[0])
    harness.upsert({"d1": ("durian", 0)})  # upsert after loading the cached index
    harness.check("durian apple kiwi", groups=[0])
    before = harness.sparse("banana fig apple durian")
    stats = harness.store.vacuum()
    assert stats["rows"] == len(harness.model)
    harness.check("banana fig apple durian", groups=[0, 1])
    assert_scores(harness.sparse("banana fig apple durian"), before, "vacuum")
    harness.reopen(checkpoint=False)  # close() persists the caches as well
    harness.check("banana fig apple durian cherry2", groups=[1])


@pytest.mark.parametrize("query", ["durian", "the and of", "THE", "zzz qqq", "!!!"])
def test_query_without_known_terms_returns_nothing(harness: Harness, query: str) -> None:
    harness.upsert({"a": ("apple pie", 0), "b": ("the banana", 0)})
    assert harness.sparse(query) == {}
    assert harness.sparse(query, {"grp": 0}) == {}


def test_empty_store_sparse_query(harness: Harness) -> None:
    assert harness.sparse("apple") == {}
    harness.upsert({"a": ("apple", 0)})
    harness.delete(["a"])
    assert harness.sparse("apple") == {}
