"""Training pairs: one record type for both halves of fine-tuning, stored as JSON Lines.

A :class:`TrainingPair` is a query and what it should find or produce:

- the retriever half uses ``query`` -> ``positive`` (the chunk text that answers it, and an
  optional hard ``negative``);
- the LLM half uses ``query`` -> ``answer`` (the response to learn), with ``positive`` as the
  chunk the question was written from when there is one.

``doc_id`` names the document the positive came from, so that a split can keep a document on
one side; ``source`` says which generator made the pair (``ict``, ``heading``, ``link``,
``labelled``, ``llm``, ``file``), so that sources can be measured apart.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError

SOURCES = ("ict", "heading", "link", "labelled", "llm", "file")


@dataclass(frozen=True)
class TrainingPair:
    """A query and its target: the ``positive`` chunk (retriever) and/or the ``answer`` (LLM)."""

    query: str
    positive: str = ""
    answer: str = ""
    source: str = "file"
    doc_id: str = ""
    positive_id: str = ""
    negative: str = ""

    def to_dict(self) -> dict[str, str]:
        """The non-empty fields (``query`` always)."""
        return {k: v for k, v in asdict(self).items() if v or k == "query"}


_FIELDS = {f.name for f in fields(TrainingPair)}
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_query(text: str) -> str:
    """The key two questions share when they are the same up to case, accents, punctuation and spacing."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", folded).split())


def save_pairs(pairs: Iterable[TrainingPair], path: str | os.PathLike[str]) -> Path:
    """Write ``pairs`` as JSONL, atomically (a crash leaves the old file whole)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for pair in pairs:
                f.write(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_pairs(path: str | os.PathLike[str]) -> list[TrainingPair]:
    """Read a pairs JSONL file; a bad line raises InvalidInputError naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: pairs file not found")
    pairs: list[TrainingPair] = []
    with p.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise InvalidInputError(f"{p}:{n}: not valid JSON ({e})") from None
            pairs.append(pair_from_dict(record, f"{p}:{n}"))
    return pairs


def pair_from_dict(record: Any, where: str) -> TrainingPair:
    """A pair from its JSON object; unknown keys are an error (a typo would lose data silently)."""
    if not isinstance(record, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {unknown}; known: {', '.join(sorted(_FIELDS))}")
    for key, value in record.items():
        if not isinstance(value, str):
            raise InvalidInputError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    query = record.get("query", "")
    if not query.strip():
        raise InvalidInputError(f"{where}: field 'query' is missing or empty")
    return TrainingPair(**record)


def pair_stats(pairs: Sequence[TrainingPair]) -> dict[str, Any]:
    """Counts of a set of pairs: by source, documents, with positives / answers / negatives, mean lengths."""
    n = len(pairs)
    return {
        "pairs": n,
        "documents": len({p.doc_id for p in pairs if p.doc_id}),
        "by_source": dict(sorted(Counter(p.source for p in pairs).items())),
        "with_positive": sum(1 for p in pairs if p.positive),
        "with_answer": sum(1 for p in pairs if p.answer),
        "with_negative": sum(1 for p in pairs if p.negative),
        "mean_query_words": round(sum(len(p.query.split()) for p in pairs) / n, 1) if n else 0.0,
        "mean_positive_words": round(sum(len(p.positive.split()) for p in pairs) / n, 1) if n else 0.0,
    }
