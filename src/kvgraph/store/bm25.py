"""BM25 over node text, maintained incrementally.

Postings are kept as a compressed-sparse-row block for the slots indexed so far plus
an append-only tail for newer slots; the tail is merged into the block once it is
large. Deleted slots are masked at query time through the store's live mask, and
document frequencies, the document count and the average length are computed over
live slots only, so scores match a BM25 index rebuilt from the live nodes.
Scoring is a pure function over numpy arrays (Lucene's BM25 variant). Texts and queries
become terms through an analyzer (:mod:`kvgraph.store.analyzers`, Snowball stems by default);
postings saved with another analyzer are discarded on load and rebuilt from the records.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from kvgraph.store.analyzers import ANALYZER_VERSION, DEFAULT_ANALYZER, analyzer, canonical, query_analyzer
from kvgraph.store.analyzers import STOPWORDS as _STOPWORDS
from kvgraph.store.growable import GrowableArray

# Tokenising is the analyzers' (kvgraph.store.analyzers): an index uses DEFAULT_ANALYZER ("stem")
# unless told otherwise, and saves its analyzer's name with the postings.
STOPWORDS = _STOPWORDS


def tokenize(text: str) -> list[str]:
    """The ``plain`` analyzer (lower-cased word runs minus stop words), without stemming."""
    return analyzer("plain")(text)


def idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def term_scores(tf: np.ndarray, doc_len: np.ndarray, avgdl: float, k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """The saturated term-frequency part of BM25 for one term's postings."""
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / max(avgdl, 1e-9)))


class BM25Index:
    MERGE_AT = 500_000  # tail postings before merging into the CSR block

    def __init__(self, k1: float = 1.5, b: float = 0.75, analyzer_name: str = DEFAULT_ANALYZER) -> None:
        self.k1, self.b = k1, b
        # Texts and queries go through the same analyzer; its name is saved with the postings.
        self.analyzer_name = canonical(analyzer_name)
        self._analyze = analyzer(self.analyzer_name)
        self._analyze_query = query_analyzer(self.analyzer_name)
        self.vocab: dict[str, int] = {}
        self.n = 0  # slots covered
        self.doc_len = GrowableArray(np.float32, 0)
        # CSR block: postings of term t are slots[indptr[t]:indptr[t+1]]
        self.indptr = np.zeros(1, dtype=np.int64)
        self.slots = np.zeros(0, dtype=np.int64)
        self.tfs = np.zeros(0, dtype=np.float32)
        self.tail_terms = GrowableArray(np.int64, 0)
        self.tail_slots = GrowableArray(np.int64, 0)
        self.tail_tfs = GrowableArray(np.float32, 0)

    def append(self, texts: list[str]) -> None:
        terms: list[int] = []
        slots: list[int] = []
        tfs: list[int] = []
        lens = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            tokens = self._analyze(text)
            lens[i] = len(tokens)
            for tok, c in Counter(tokens).items():
                tid = self.vocab.get(tok)
                if tid is None:
                    tid = self.vocab[tok] = len(self.vocab)
                terms.append(tid)
                slots.append(self.n + i)
                tfs.append(c)
        self.doc_len.extend(lens)
        self.n += len(texts)
        self.tail_terms.extend(np.asarray(terms, dtype=np.int64))
        self.tail_slots.extend(np.asarray(slots, dtype=np.int64))
        self.tail_tfs.extend(np.asarray(tfs, dtype=np.float32))
        if len(self.tail_terms) >= self.MERGE_AT:
            self.merge()

    def merge(self) -> None:
        if not len(self.tail_terms):
            return
        n_terms = len(self.vocab)
        old_terms = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        terms = np.concatenate([old_terms, self.tail_terms.view])
        slots = np.concatenate([self.slots, self.tail_slots.view])
        tfs = np.concatenate([self.tfs, self.tail_tfs.view])
        order = np.argsort(terms, kind="stable")
        self.slots, self.tfs = slots[order], tfs[order]
        self.indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=n_terms), out=self.indptr[1:])
        self.tail_terms = GrowableArray(np.int64, 0)
        self.tail_slots = GrowableArray(np.int64, 0)
        self.tail_tfs = GrowableArray(np.float32, 0)

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        if tid + 1 < len(self.indptr):
            a, b = self.indptr[tid], self.indptr[tid + 1]
            slots, tfs = self.slots[a:b], self.tfs[a:b]
        else:
            slots, tfs = self.slots[:0], self.tfs[:0]
        if len(self.tail_terms):
            sel = self.tail_terms.view == tid
            if sel.any():
                slots = np.concatenate([slots, self.tail_slots.view[sel]])
                tfs = np.concatenate([tfs, self.tail_tfs.view[sel]])
        return slots, tfs

    def scores(self, query: str, live: np.ndarray, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) of allowed live slots matching a query term, unsorted.

        Collection statistics (document count, frequencies, average length) come from all
        live slots, so a filter narrows the results without changing any score.
        """
        tids = sorted({self.vocab[t] for t in self._analyze_query(query) if t in self.vocab})
        if not tids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        live = live[: self.n]
        n_docs = int(live.sum())
        if n_docs == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        doc_len = self.doc_len.view
        avgdl = float(doc_len[live].mean())
        all_slots, all_scores = [], []
        for tid in tids:
            slots, tfs = self._postings(tid)
            keep = live[slots]
            slots, tfs = slots[keep], tfs[keep]
            if not len(slots):
                continue
            w = idf(np.array([len(slots)], dtype=np.float64), n_docs)[0]
            all_slots.append(slots)
            all_scores.append(w * term_scores(tfs, doc_len[slots], avgdl, self.k1, self.b))
        if not all_slots:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if allowed is not None:
            allowed = allowed[: self.n]
            kept = [allowed[s] for s in all_slots]
            all_slots = [s[k] for s, k in zip(all_slots, kept)]
            all_scores = [s[k] for s, k in zip(all_scores, kept)]
        slots = np.concatenate(all_slots)
        scores = np.concatenate(all_scores).astype(np.float32)
        uniq, inv = np.unique(slots, return_inverse=True)
        summed = np.bincount(inv, weights=scores, minlength=len(uniq)).astype(np.float32)
        return uniq, summed

    # ---- persistence ------------------------------------------------------------------

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.merge()
        arrays: dict[str, np.ndarray] = {
            "indptr": self.indptr,
            "slots": self.slots,
            "tfs": self.tfs,
            "doc_len": self.doc_len.view,
        }
        meta = {
            "n": self.n,
            "vocab": list(self.vocab),
            "k1": self.k1,
            "b": self.b,
            "analyzer": self.analyzer_name,
            "analyzer_version": ANALYZER_VERSION,
        }
        return arrays, meta

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], analyzer_name: str = DEFAULT_ANALYZER
    ) -> BM25Index:
        """The saved index, or an empty one (rebuilt from the records by the caller, which appends
        every row it does not cover) when it was built with another analyzer than ``analyzer_name``."""
        saved = str(meta.get("analyzer", "plain"))  # postings saved before analyzers existed are plain
        version = int(meta.get("analyzer_version", 1))
        if canonical(analyzer_name) != saved or (saved != "plain" and version != ANALYZER_VERSION):
            return cls(meta["k1"], meta["b"], analyzer_name)
        idx = cls(meta["k1"], meta["b"], saved)
        idx.vocab = {t: i for i, t in enumerate(meta["vocab"])}
        idx.n = int(meta["n"])
        idx.indptr, idx.slots, idx.tfs = arrays["indptr"], arrays["slots"], arrays["tfs"]
        idx.doc_len = GrowableArray.from_array(arrays["doc_len"], 0)
        return idx
