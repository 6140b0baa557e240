"""Text analyzers for BM25: how a text becomes index terms.

An analyzer is named by a spec, ``plain`` or ``+``-joined options (``stem``, ``split``,
``stem+split``); the name is stored with the BM25 postings, so an index built with one analyzer
is never queried with another (a different name rebuilds the postings from the records).
:data:`DEFAULT_ANALYZER` (``stem``) is what the embedded store's BM25 uses; it was chosen on the
dev sets (docs/eval.md: stemming adds 1-4 points of BM25 hit@5 on Llama 2, HotpotQA and SQuAD,
identifier splitting nothing measurable on them).

* ``plain``: lower-cased ``\\w+`` runs minus a short English stop list (kvgraph's BM25 as it
  always was).
* ``stem``: each term reduced to its Snowball English stem (PyStemmer), so "tuning", "tuned"
  and "tunes" match; a query and a text meet on the stem.
* ``split``: identifiers are also indexed by their parts: ``getUserName`` gives ``getusername``,
  ``get``, ``user``, ``name``; ``max_seq_len`` gives ``max_seq_len``, ``max``, ``seq``, ``len``;
  ``HTTPServer2`` gives ``httpserver2``, ``http``, ``server2``. Digits stay with the word before
  them (``Llama2``, ``v2`` are one part). The whole token is kept, so an exact identifier still
  scores highest.
* ``join``: a hyphenated word is also indexed joined (``fine-tuning`` also gives ``finetuning``).
* ``stop``: the words of a request ("can you tell me about", "explain") are no terms, and in a
  question (:func:`query_analyzer`) neither is a two-word request for a kind of answer ("the key
  concepts of", "the main ideas of").

Pure functions; the stemmer is loaded on first use (``pip install PyStemmer``, in the base install).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from kvgraph.errors import InvalidInputError, MissingDependencyError

__all__ = [
    "ANALYZER_OPTIONS",
    "ANALYZER_VERSION",
    "DEFAULT_ANALYZER",
    "STOPWORDS",
    "analyzer",
    "canonical",
    "drop_request_phrases",
    "query_analyzer",
    "split_identifier",
]

DEFAULT_ANALYZER = "stem+split+join+stop"
# Bumped whenever an option's behaviour changes, so postings built by the old behaviour are rebuilt.
ANALYZER_VERSION = 2
ANALYZER_OPTIONS = ("stem", "split", "join", "stop")

_TOKEN = re.compile(r"\w+", re.UNICODE)
# Parts of an identifier: an upper-case run not followed by a lower-case letter (HTTP in HTTPServer),
# or a capitalised or lower-case word, each with the digits that follow it (Llama2, v2, cherry1 stay
# whole: a version or a counter is part of the name). Underscores separate parts.
_PART = re.compile(r"[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*|[0-9]+|[^\W\d_]+", re.UNICODE)

_STOPWORD_TEXT = (
    "a an and are as at be been but by for from had has have he her his i if in into is it its of on or our "
    "she so than that the their them then there these they this to was we were what when where which while "
    "who whom why will with would you your"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Words of a request that say nothing about the topic ("can you tell me about ..."): the ``stop`` option.
_REQUEST_TEXT = "about also any can could describe did do does explain give how me much my please should some tell us"
REQUEST_WORDS = frozenset(_REQUEST_TEXT.split())
# Two-word requests for a kind of answer ("the key concepts of X", "the main ideas of X"): the
# words name the answer's shape, not its topic, and "key" alone is a topic word in many corpora
# (API keys, car keys), so only the pair is dropped. Measured on the dev sets: docs/eval.md.
_REQUEST_HEADS = frozenset(["key", "main", "core", "central"])
_REQUEST_TAILS = frozenset(
    ["concept", "concepts", "idea", "ideas", "point", "points", "takeaway", "takeaways", "aspect", "aspects"]
)
_HYPHENS = ("-", "\u2010", "\u2011")  # hyphen-minus, hyphen, non-breaking hyphen
_HYPHENATED = re.compile("\\w+(?:[-\u2010\u2011]\\w+)+", re.UNICODE)


def canonical(spec: str) -> str:
    """The stored name of an analyzer spec (``split+stem`` -> ``stem+split``); InvalidInputError if unknown."""
    if not isinstance(spec, str):
        raise InvalidInputError(f"bm25 analyzer must be a string, got {type(spec).__name__}")
    spec = spec.strip().lower()
    if spec == "plain":
        return "plain"
    if spec == "":
        return DEFAULT_ANALYZER
    parts = [p.strip() for p in spec.split("+")]
    bad = [p for p in parts if p not in ANALYZER_OPTIONS]
    if bad or len(set(parts)) != len(parts):
        raise InvalidInputError(
            f"bm25 analyzer {spec!r}: use plain or options joined by '+' from {', '.join(ANALYZER_OPTIONS)} "
            "(e.g. stem+split)"
        )
    return "+".join(p for p in ANALYZER_OPTIONS if p in parts)


def split_identifier(token: str) -> list[str]:
    """The parts of a CamelCase / snake_case / digit-joined identifier, lower-cased; [] when it has one part."""
    parts = [p.lower() for p in _PART.findall(token)]
    return parts if len(parts) > 1 else []


def drop_request_phrases(tokens: list[str]) -> list[str]:
    """``tokens`` without two-word requests such as "key concepts" or "main ideas" (case-insensitive)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if i + 1 < len(tokens) and tokens[i].lower() in _REQUEST_HEADS and tokens[i + 1].lower() in _REQUEST_TAILS:
            i += 2
            continue
        out.append(tokens[i])
        i += 1
    return out


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[list[str]], list[str]]:
    try:
        import Stemmer
    except ImportError as e:  # pragma: no cover - PyStemmer is a base dependency
        raise MissingDependencyError("PyStemmer (for the stem BM25 analyzer)", "base") from e
    stem_words: Callable[[list[str]], list[str]] = Stemmer.Stemmer("english").stemWords
    return stem_words


def analyzer(spec: str = DEFAULT_ANALYZER) -> Callable[[str], list[str]]:
    """The function ``text -> terms`` of an analyzer spec (see the module docstring), for texts."""
    return _analyzer(canonical(spec), query=False)


def query_analyzer(spec: str = DEFAULT_ANALYZER) -> Callable[[str], list[str]]:
    """The same for questions: with ``stop``, requests such as "key concepts" are no query terms.

    Only questions lose them: in a text, "the key point is..." is content, and the postings
    stay those of :func:`analyzer`.
    """
    return _analyzer(canonical(spec), query=True)


@lru_cache(maxsize=32)
def _analyzer(name: str, query: bool) -> Callable[[str], list[str]]:
    options = set(name.split("+"))
    split = "split" in options
    join = "join" in options
    phrases = query and "stop" in options
    stop = STOPWORDS | REQUEST_WORDS if "stop" in options else STOPWORDS
    stem_words = _stemmer() if "stem" in options else None

    def analyze(text: str) -> list[str]:
        # Without split, the text is lower-cased before it is cut (as postings saved by earlier
        # versions were made: "İstanbul" lower-cases to two runs); split needs the case to cut.
        tokens = _TOKEN.findall(text if split else text.lower())
        if phrases:
            tokens = drop_request_phrases(tokens)
        if split:
            terms: list[str] = []
            for raw in tokens:
                low = raw.lower()
                if low in stop:
                    continue
                terms.append(low)
                terms.extend(p for p in split_identifier(raw) if p not in stop)
        else:
            terms = [t for t in tokens if t not in stop]
        if join and any(h in text for h in _HYPHENS):
            # "fine-tuning" is also "finetuning": a question written either way finds the other
            terms.extend(re.sub(r"\W", "", m.group(0)).lower() for m in _HYPHENATED.finditer(text))
        return stem_words(terms) if stem_words is not None else terms

    return analyze
